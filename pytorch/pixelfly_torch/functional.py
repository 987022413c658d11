"""Autograd Functions over the native operators (``torch.ops.pixelfly``), and the masked-dense
reference they must agree with.

``pixelfly_linear`` is PixelflyLinear's whole forward and backward in two native calls (the engine's
math, native/src/engine/pixelfly_linear.cc): the gate, the low-rank term and the block-sparse
product are fused so that no M×out temporary is made beyond the output. ``dense_linear`` is
``F.linear`` on the project's own dense GEMM: the honest dense baseline, so that a better GEMM is
never counted as a sparse gain.
"""
import torch
import torch.nn.functional as F

from .extension import ops

__all__ = ["pixelfly_linear", "dense_linear", "masked_dense_weight", "masked_dense_linear", "autocast_bf16"]


def _ops_for(x, precision):
    """The forward and backward operators for x's device: CUDA ones run on torch's current stream."""
    if x.is_cuda:
        stream = torch.cuda.current_stream(x.device).cuda_stream
        return (lambda *a: ops.cuda_pixelfly_linear_forward(*a, stream)), (lambda *a: ops.cuda_pixelfly_linear_backward(*a, stream))
    return (lambda *a: ops.pixelfly_linear_forward(*a, precision)), (lambda *a: ops.pixelfly_linear_backward(*a, precision))


class _PixelflyLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, blocks, bias, lr_weight1, lr_weight2, gate_weight, gate_bias, index, out_features, precision):
        forward, _ = _ops_for(x, precision)
        y, saved = forward(x, blocks, index, out_features, bias, lr_weight1, lr_weight2, gate_weight, gate_bias)
        # index stays on the host (the CUDA operators schedule from it) and is not saved as a tensor
        # of the graph: it never changes for a layer.
        ctx.index, ctx.precision = index, precision
        ctx.save_for_backward(x, blocks, bias, lr_weight1, lr_weight2, gate_weight, gate_bias, *saved)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, blocks, bias, lr1, lr2, gw, gb, *saved = ctx.saved_tensors
        _, backward = _ops_for(x, ctx.precision)
        grads = backward(dy.contiguous(), x, blocks, ctx.index, bias, lr1, lr2, gw, gb, saved, ctx.needs_input_grad[0])
        dx, dblocks, dbias, dlr1, dlr2, dgw, dgb = grads
        return dx, dblocks, dbias, dlr1, dlr2, dgw, dgb, None, None, None


def autocast_bf16(x):
    """Inside ``torch.autocast("cpu", dtype=torch.bfloat16)``: the products run in bf16 on the fp32
    weights, as autocast runs ``F.linear`` (the native operators are not on autocast's lists, so the
    layer asks itself)."""
    return not x.is_cuda and torch.is_autocast_cpu_enabled() and torch.get_autocast_cpu_dtype() == torch.bfloat16


def _rows(x, features):
    """x as a contiguous [rows × features] matrix (a view when it already is one)."""
    return x.reshape(-1, features).contiguous()


def pixelfly_linear(x, blocks, index, out_features, bias=None, lr_weight1=None, lr_weight2=None, gate_weight=None,
                    gate_bias=None):
    """``(1 − g)·(x·Wᵀ) + g·((x·Vᵀ)·Uᵀ) + bias`` with ``g = sigmoid(x·gate_weightᵀ + gate_bias)`` per row, on the
    native operators; x is ``[..., in_features]``. Without the low-rank tensors it is the block-sparse
    product alone (rank 0).

    float32 tensors get fp32 products. bfloat16 tensors (a model.to(torch.bfloat16)) get bf16 products
    (inputs in bf16, fp32 accumulation) on the CPU's bf16 kernels, with the gate and mixing in fp32 and
    the output rounded to bfloat16, like torch's bf16 F.linear; their gradients come back in bfloat16.
    Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` the products are bf16 on fp32 weights, whose
    gradients stay fp32, and the output is bfloat16, as autocast's F.linear.
    """
    in_features = x.shape[-1]
    params = [blocks, bias, lr_weight1, lr_weight2, gate_weight, gate_bias]
    autocast = autocast_bf16(x)
    precision = "bf16" if x.dtype == torch.bfloat16 or autocast else "fp32"
    if precision == "bf16":  # the layer's math runs on fp32 copies; the products round them to bf16 again
        x = x.float()
        params = [p if p is None else p.float() for p in params]  # fp32 weights (autocast) pass as they are
    y = _PixelflyLinear.apply(_rows(x, in_features), *[p if p is None else p.contiguous() for p in params], index,
                              out_features, precision)
    y = y.reshape(*x.shape[:-1], out_features)
    return y.to(torch.bfloat16) if precision == "bf16" else y


class _DenseLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return ops.dense_forward(x, weight, bias)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dy = dy.contiguous()
        dx = ops.dense_backward_data(dy, weight) if ctx.needs_input_grad[0] else None
        dw = ops.dense_backward_weight(dy, x) if ctx.needs_input_grad[1] else None
        db = dy.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db


def dense_linear(x, weight, bias=None):
    """``F.linear`` on the project's dense GEMM (the kernels' OpenBLAS-class fp32 product)."""
    y = _DenseLinear.apply(_rows(x, x.shape[-1]), weight.contiguous(), None if bias is None else bias.contiguous())
    return y.reshape(*x.shape[:-1], weight.shape[0])


def masked_dense_weight(blocks, kept, block_rows, block_cols, out_features, in_features):
    """The dense weight (out_features × in_features) whose kept blocks are ``blocks`` (``kept``: their
    row-major positions in the block grid), zero elsewhere; differentiable in ``blocks``."""
    b = blocks.shape[-1]
    w = blocks.new_zeros(block_rows * block_cols, b, b).index_copy(0, kept, blocks)
    w = w.view(block_rows, block_cols, b, b).permute(0, 2, 1, 3).reshape(block_rows * b, block_cols * b)
    return w[:out_features, :in_features]


def masked_dense_linear(x, weight, bias=None, lr_weight1=None, lr_weight2=None, gate_weight=None, gate_bias=None):
    """The same layer in plain PyTorch ops on a masked dense weight: any device and dtype, no speedup."""
    out = F.linear(x, weight)
    if lr_weight1 is not None:
        low = F.linear(F.linear(x, lr_weight1), lr_weight2)
        out = torch.lerp(out, low, torch.sigmoid(F.linear(x, gate_weight, gate_bias)))
    return out if bias is None else out + bias

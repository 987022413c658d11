"""``PixelflyLinear``: the authors' ``SparseLRLinear`` (Dao, Chen et al., "Pixelated Butterfly", ICLR 2022)
as a drop-in replacement for ``nn.Linear``:

    out = lerp(sparse(x), low_rank(x), sigmoid(gate(x))) + bias

* ``sparse``: a block-sparse weight whose blocks follow a flat block butterfly layout
  (``layout.py``: the same mask and block order as the Pixelfly core, the native engine and its
  checkpoints);
* ``low_rank(x) = (x · lr_weight1ᵀ) · lr_weight2ᵀ`` with rank ``rank`` (0 disables it and the gate);
* ``gate``: ``nn.Linear(in_features, 1)``, one mixing weight per token.

On CPU float32 and bfloat16 tensors (bf16 products on the CPU's bf16 kernels) and on CUDA float32
tensors the layer runs on the project's kernels (``functional.pixelfly_linear``); elsewhere (other
dtypes, devices without native operators, or no extension) on a masked dense weight with plain
PyTorch ops, which computes the same function. Every parameter is used in every
forward and the index tables are buffers derived from the config, so the module works unchanged
under ``DistributedDataParallel`` and FSDP, ``torch.save``/``load`` and ``model.to(...)``.
State-dict keys are the engine's tensor names, so ``load_engine_weights`` reads a weight export.
"""
import math

import torch
import torch.nn as nn

from . import extension
from .functional import autocast_bf16, masked_dense_linear, masked_dense_weight, pixelfly_linear
from .layout import PixelflyConfigError, _require_int, block_index, flat_block_butterfly_layout

__all__ = ["PixelflyLinear", "config_kwargs"]

# Plan JSON (core's PixelflyConfig, camelCase) → PixelflyLinear keyword arguments.
_PLAN_KEYS = {"block": "block", "butterflySize": "butterfly_size", "nFactors": "n_factors", "rank": "rank",
              "globalSize": "global_size", "shuffle": "shuffle"}


def config_kwargs(config):
    """PixelflyLinear keyword arguments from a plan's config (camelCase, as ``pixelfly analyze --json``
    writes it) or from keyword-style names; unknown keys are an error naming them."""
    out = {}
    for key, value in dict(config).items():
        name = _PLAN_KEYS.get(key, key)
        if name not in _PLAN_KEYS.values():
            raise PixelflyConfigError(key, f"is not a Pixelfly config key (expected {', '.join(_PLAN_KEYS)})")
        out[name] = value
    return out


class _Sparse(nn.Module):
    def __init__(self, nnz, block, **factory):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(nnz, block, block, **factory))


class _LowRank(nn.Module):
    def __init__(self, in_features, out_features, rank, **factory):
        super().__init__()
        self.lr_weight1 = nn.Parameter(torch.empty(rank, in_features, **factory))
        self.lr_weight2 = nn.Parameter(torch.empty(out_features, rank, **factory))


def _native(x, params):
    """Whether the layer's products run on the native operators. Under CPU autocast the input is often
    bf16 already (another product's output) while the weights stay fp32: the products are bf16 either
    way, so that pair runs native too, not on the masked-dense path."""
    if x.dtype == torch.bfloat16 and params[0].dtype == torch.float32 and autocast_bf16(x):
        return extension.native_for(*params) and x.device == params[0].device
    return extension.native_for(x, *params)


class PixelflyLinear(nn.Module):
    """Drop-in replacement for ``nn.Linear(in_features, out_features, bias)``: see the module doc."""

    def __init__(self, in_features, out_features, bias=True, *, block=32, butterfly_size=16, n_factors=2,
                 rank=0, global_size=0, shuffle=False, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        _require_int("rank", rank, 0)
        layout = flat_block_butterfly_layout(out_features, in_features, block, butterfly_size, n_factors, global_size, shuffle)
        self.in_features, self.out_features = in_features, out_features
        self.block, self.butterfly_size, self.n_factors = block, butterfly_size, n_factors
        self.rank, self.global_size, self.shuffle = rank, global_size, bool(shuffle)
        self.block_rows, self.block_cols = layout.shape
        # Derived from the config, so not saved: checkpoints hold only weights, like the engine's.
        # uint8, not bool: DistributedDataParallel broadcasts buffers and gloo has no bool type.
        self.register_buffer("layout", layout.to(device=device, dtype=torch.uint8), persistent=False)
        # Row-major positions of the kept blocks (the masked-dense path).
        self.register_buffer("kept_blocks", layout.flatten().nonzero().flatten().to(device=device), persistent=False)
        # The native operators' index stays on the host whatever the module's device (the CUDA
        # operators schedule from it): a plain attribute, not a buffer, so .to() leaves it.
        self.index = block_index(layout)
        self.sparse = _Sparse(int(layout.sum()), block, **factory)
        if rank > 0:
            self.low_rank = _LowRank(in_features, out_features, rank, **factory)
            self.gate = nn.Linear(in_features, 1, **factory)
        else:
            self.low_rank = None
            self.gate = None
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.reset_parameters()
        if extension.ops is None:
            extension.warn_fallback()

    @property
    def density(self):
        """Kept blocks / blocks of the padded block grid."""
        return self.sparse.weight.shape[0] / (self.block_rows * self.block_cols)

    def config(self):
        """The layer's Pixelfly config as keyword arguments (``PixelflyLinear(in, out, **config())``)."""
        return {"block": self.block, "butterfly_size": self.butterfly_size, "n_factors": self.n_factors, "rank": self.rank,
                "global_size": self.global_size, "shuffle": self.shuffle}

    @torch.no_grad()
    def reset_parameters(self):
        """The engine's initialisation (the authors' BlockSparseLinear and LowRank(init='svd'))."""
        if self.sparse.weight.is_meta:
            return  # a layer on the meta device has sizes, no values (a model sized without building it)
        b = self.block
        out_p, in_p = self.block_rows * b, self.block_cols * b
        bound = 1.0 / math.sqrt(in_p)
        dense = torch.empty(out_p, in_p).uniform_(-bound, bound)
        # Each block-row is scaled so its output variance matches the dense layer's.
        kept_per_row = self.layout.sum(1).clamp(min=1).to(dense.dtype).cpu()
        dense *= torch.sqrt(self.block_cols / kept_per_row).repeat_interleave(b)[:, None]
        dense[self.out_features:, :] = 0
        dense[:, self.in_features:] = 0
        self.sparse.weight.copy_(self._blocks_of(dense))
        if self.rank > 0:
            bound = 1.0 / math.sqrt(self.in_features)
            d = torch.empty(self.out_features, self.in_features).uniform_(-bound, bound)
            u, s, vh = torch.linalg.svd(d, full_matrices=False)
            root = s[: self.rank].sqrt()
            self.low_rank.lr_weight2.copy_(u[:, : self.rank] * root)
            self.low_rank.lr_weight1.copy_(root[:, None] * vh[: self.rank])
            self.gate.reset_parameters()
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.out_features)
            self.bias.uniform_(-bound, bound)

    def _blocks_of(self, padded):
        """The kept blocks of a padded (out_p × in_p) dense matrix, in block order."""
        b = self.block
        blocks = padded.reshape(self.block_rows, b, self.block_cols, b).permute(0, 2, 1, 3).reshape(-1, b, b)
        return blocks[self.kept_blocks.cpu()]

    def dense_weight(self):
        """The masked dense weight (out_features × in_features), differentiable in the kept blocks."""
        return masked_dense_weight(self.sparse.weight, self.kept_blocks, self.block_rows, self.block_cols,
                                   self.out_features, self.in_features)

    def _low_rank_params(self):
        if self.rank == 0:
            return None, None, None, None
        return self.low_rank.lr_weight1, self.low_rank.lr_weight2, self.gate.weight, self.gate.bias

    def forward(self, x):
        low = self._low_rank_params()
        params = (self.sparse.weight, self.bias, *low)
        if _native(x, params):
            return pixelfly_linear(x, self.sparse.weight, self.index, self.out_features, self.bias, *low)
        return masked_dense_linear(x, self.dense_weight(), self.bias, *low)

    @classmethod
    @torch.no_grad()
    def from_dense(cls, linear, config):
        """A PixelflyLinear that starts from a trained dense layer (``nn.Linear``, a Hugging Face ``Conv1D``,
        or a pointwise convolution; see ``sparsify.linear_map``) and ``config`` (a plan's config or keyword
        names).

        The kept blocks are copied from the dense weight W; the low-rank factors are the truncated SVD of
        what the mask drops (W − S); the gate starts at 0.5 for every token (weight 0, bias 0) with both
        branches doubled, so the layer computes exactly ``S·x + L·x + bias``, the best the mask and rank
        allow. ``layer.init_error`` is the relative error ‖W − S − L‖ / ‖W‖ (Frobenius), which falls as
        the rank grows; with rank 0 it is ‖W − S‖ / ‖W‖.
        """
        from .sparsify import linear_map  # sparsify imports this module

        weight, bias = linear_map(linear)
        w = weight.detach().to(torch.float32).cpu()
        out_f, in_f = w.shape
        kw = config_kwargs(config)
        layer = cls(in_f, out_f, bias=bias is not None, **kw)
        b = layer.block
        padded = torch.zeros(layer.block_rows * b, layer.block_cols * b)
        padded[:out_f, :in_f] = w
        mask = layer.layout.cpu().bool().repeat_interleave(b, 0).repeat_interleave(b, 1)[:out_f, :in_f]
        kept = w * mask
        residual = w - kept
        scale = 1.0
        approx = kept
        if layer.rank > 0:
            u, s, vh = torch.linalg.svd(residual.double(), full_matrices=False)
            r = min(layer.rank, s.numel())
            root = (2.0 * s[:r]).sqrt()
            lr2 = torch.zeros(out_f, layer.rank, dtype=torch.float64)
            lr1 = torch.zeros(layer.rank, in_f, dtype=torch.float64)
            lr2[:, :r] = u[:, :r] * root
            lr1[:r] = root[:, None] * vh[:r]
            layer.low_rank.lr_weight2.copy_(lr2)
            layer.low_rank.lr_weight1.copy_(lr1)
            layer.gate.weight.zero_()
            layer.gate.bias.zero_()
            scale = 2.0
            approx = kept + (u[:, :r] * s[:r]) @ vh[:r]
        layer.sparse.weight.copy_(layer._blocks_of(padded) * scale)
        if bias is not None:
            layer.bias.copy_(bias.detach().to(torch.float32).cpu())
        norm = float(w.double().norm())
        layer.init_error = float((w.double() - approx.double()).norm()) / norm if norm > 0 else 0.0
        return layer.to(device=weight.device, dtype=weight.dtype)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"block={self.block}, butterfly_size={self.butterfly_size}, n_factors={self.n_factors}, rank={self.rank}, "
                f"global_size={self.global_size}, shuffle={self.shuffle}, density={self.density:.3f}")

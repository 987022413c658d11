"""Pixelfly attention: softmax(QKᵀ·scale)·V computed only on the kept blocks of a flat block butterfly
layout over the T×T score matrix, plus, optionally, the authors' low-rank term for the scores the
layout drops (Scatterbrain: Performer random features). The method, its equations (A1)–(A5) and the
choices: native/src/kernels/ATTENTION.md.

- ``attention_layout`` builds a head's score layout exactly as the core does (core/attention.ts
  ``attentionLayout``: the authors' ``FlatBlockButterflySparsityConfig.make_layout`` over T padded
  to whole blocks, then the causal cut), or as the authors' attention module does for a shorter
  sequence: the layout of ``max_seq_length`` sliced to the first ceil(T/block) blocks.
- ``pixelfly_attention(q, k, v, layout, causal)`` is the sparse part on the native kernels (the same
  C++ as the engine's attention cores; ``torch.ops.pixelfly.attention_forward/backward``) for CPU
  float32 / bfloat16 tensors, and on ``attention_reference`` (a masked dense softmax, T×T memory,
  no speedup) anywhere else.
- ``PerformerFeatures`` and ``pixelfly_attention(..., features=...)`` add the low-rank term.
- ``PixelflyAttention`` is the module to put in a model: q, k, v of shape [batch, heads, T, head_dim].
"""
import math

import torch
import torch.nn as nn

from . import extension
from .extension import ops
from .layout import PixelflyConfigError, block_index, flat_block_butterfly_layout

__all__ = ["ATTENTION_BLOCK_SIZES", "AttentionLayout", "PerformerFeatures", "PixelflyAttention", "attention_layout",
           "attention_reference", "pixelfly_attention"]

#: Score-block sizes the attention kernels implement (core/attention.ts ATTENTION_BLOCK_SIZES).
ATTENTION_BLOCK_SIZES = (16, 32, 64, 128)
#: Block of dense attention's layout (core/attention.ts DENSE_ATTENTION_BLOCK).
DENSE_ATTENTION_BLOCK = 64


class AttentionLayout:
    """A head's score layout over T tokens: ``mask`` (n×n bool, n = ceil(T/block), True = the block of
    scores is computed), its block index for the native operators, and ``density``: kept blocks over
    the blocks dense attention computes on the same grid (all, or the lower triangle when causal)."""

    def __init__(self, T, block, mask, causal):
        n = mask.shape[0]
        if causal:
            mask = mask & torch.ones(n, n, dtype=torch.bool).tril()
        self.T, self.block, self.mask, self.causal = T, block, mask, causal
        self.index = block_index(mask)
        dense = n * (n + 1) // 2 if causal else n * n
        self.density = int(mask.sum()) / dense
        # The blocks the low-rank term covers (A4): allowed by causality, not kept.
        allowed = torch.ones(n, n, dtype=torch.bool)
        self.complement = (allowed.tril() if causal else allowed) & ~mask

    def __repr__(self):
        return f"AttentionLayout(T={self.T}, block={self.block}, causal={self.causal}, density={self.density:.3f})"


def _butterfly_mask(T, block, butterfly_size, n_factors, global_size):
    try:
        return flat_block_butterfly_layout(T, T, block, butterfly_size, n_factors, global_size)
    except PixelflyConfigError as e:
        # The layout's messages speak of a weight's features; here both sides are the context.
        message = str(e)[len(e.param) + 2:].replace("out_features", "the context").replace("in_features", "the context")
        raise PixelflyConfigError(f"attention.{e.param}", message) from None


def attention_layout(T, causal=False, block=DENSE_ATTENTION_BLOCK, butterfly_size=None, n_factors=None, global_size=0,
                     max_seq_length=None):
    """The score layout of T tokens. Without ``butterfly_size`` it is dense attention's (every block of
    ``block``, the lower triangle when causal). With it, the flat block butterfly of
    (butterfly_size, n_factors, global_size) over the padded context — the core's ``attentionLayout``
    — or, given ``max_seq_length`` ≥ T, the layout of max_seq_length sliced to T's blocks, as the
    authors' attention does for shorter sequences (the two agree at T = max_seq_length)."""
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise PixelflyConfigError("attention.T", f"must be a positive integer, got {T!r}")
    if block not in ATTENTION_BLOCK_SIZES:
        raise PixelflyConfigError("attention.block", f"must be one of {', '.join(map(str, ATTENTION_BLOCK_SIZES))}, got {block!r}")
    n = -(-T // block)
    if butterfly_size is None:
        return AttentionLayout(T, block, torch.ones(n, n, dtype=torch.bool), causal)
    if n_factors is None:
        n_factors = butterfly_size.bit_length() - 1
    full = T if max_seq_length is None else max_seq_length
    if full < T:
        raise PixelflyConfigError("attention.max_seq_length", f"{full} is below the sequence's {T} tokens")
    mask = _butterfly_mask(full, block, butterfly_size, n_factors, global_size)[:n, :n].contiguous()
    return AttentionLayout(T, block, mask, causal)


def layout_from_spec(T, spec, causal):
    """The layout of a core / engine attention spec ({"kind": "dense"} or {"kind": "pixelfly", "block",
    "butterflySize", "nFactors", "globalSize"?}), as the engine builds it."""
    if spec is None or spec.get("kind", "dense") == "dense":
        return attention_layout(T, causal)
    return attention_layout(T, causal, spec["block"], spec["butterflySize"], spec["nFactors"], spec.get("globalSize", 0))


def attention_reference(q, k, v, layout, scale=None):
    """(o, lse) of the sparse attention (A2) by a masked dense softmax: any device and dtype, differentiable,
    a T×T score matrix in memory. The kernels are checked against it; it is also their fallback."""
    T, b = q.shape[-2], layout.block
    allowed = layout.mask.repeat_interleave(b, 0).repeat_interleave(b, 1)[:T, :T].to(q.device)
    if layout.causal:
        allowed = allowed & torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~allowed, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    return torch.matmul(torch.exp(scores - lse.unsqueeze(-1)), v), lse


class _AttentionCore(torch.autograd.Function):
    """The native sparse attention: (o, lse) forward; backward takes gradients on both (A3 with dlse)."""

    @staticmethod
    def forward(ctx, q, k, v, index, block, causal, scale):
        ctx.set_materialize_grads(False)  # an unused lse needs no zero gradient
        o, lse = ops.attention_forward(q, k, v, index, block, causal, scale)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.meta = (index, block, causal, scale)
        return o, lse

    @staticmethod
    def backward(ctx, do, dlse):
        q, k, v, o, lse = ctx.saved_tensors
        index, block, causal, scale = ctx.meta
        do = torch.zeros_like(o) if do is None else do.contiguous()
        dq, dk, dv = ops.attention_backward(q, k, v, o, lse, do, None if dlse is None else dlse.contiguous(),
                                            index, block, causal, scale)
        return dq, dk, dv, None, None, None, None


def _heads_ok(t):
    return t.dim() == 4 and (t.stride(3) == 1 or t.shape[3] == 1)


def _sparse_part(q, k, v, layout, scale):
    """(o, lse) of (A2): native on CPU (or meta) float32 / bfloat16 tensors, the reference elsewhere."""
    if not extension.native_for(q, k, v) or q.device.type not in ("cpu", "meta"):
        extension.warn_fallback()
        return attention_reference(q, k, v, layout, scale)
    dtype = q.dtype
    q, k, v = (t.float() if dtype == torch.bfloat16 else t for t in (q, k, v))
    q, k, v = (t if _heads_ok(t) else t.contiguous() for t in (q, k, v))
    o, lse = _AttentionCore.apply(q, k, v, layout.index, layout.block, layout.causal, float(scale))
    return (o.to(dtype), lse) if dtype == torch.bfloat16 else (o, lse)


def _gaussian_orthogonal(rows, cols, generator=None):
    """Performer's Gaussian orthogonal random matrix (rows × cols): stacked blocks of orthonormal rows
    (QR of Gaussian matrices), each row scaled by the norm of a Gaussian vector (the authors'
    ``gaussian_orthogonal_random_matrix`` with scaling 0)."""
    blocks = []
    for _ in range(-(-rows // cols)):
        g = torch.randn(cols, cols, generator=generator)
        q, _ = torch.linalg.qr(g)
        blocks.append(q.t())
    w = torch.cat(blocks)[:rows]
    return torch.randn(rows, cols, generator=generator).norm(dim=1, keepdim=True) * w


class PerformerFeatures(nn.Module):
    """Positive random features φ with E[φ(q)·φ(k)] = exp(scale·q·k) (A5): the authors' ``SBPerformerFeatures``
    (cosh features of a Gaussian orthogonal projection drawn once, kept as a buffer, not trained).
    ``features`` is m, the feature count (even: m/2 projections, each used with both signs)."""

    def __init__(self, head_dim, features, scale=None, generator=None):
        super().__init__()
        if isinstance(features, bool) or not isinstance(features, int) or features < 2 or features % 2:
            raise PixelflyConfigError("attention.features", f"must be an even integer >= 2, got {features!r}")
        self.head_dim, self.features = head_dim, features
        self.scale = head_dim ** -0.5 if scale is None else scale
        self.register_buffer("projection", _gaussian_orthogonal(features // 2, head_dim, generator))

    def _projected(self, x):
        w = self.projection.to(x.dtype) * math.sqrt(self.scale)
        dash = torch.matmul(x, w.t())
        dash = torch.cat([dash, -dash], dim=-1)
        diag = x.square().sum(-1, keepdim=True) * (self.scale / 2)
        return dash - diag - math.log(self.features) / 2

    def queries(self, q):
        """(φ', log scale [..., T, 1]): φ(q) = φ'·e^scale, the scale per query (its largest feature)."""
        log_phi = self._projected(q)
        shift = log_phi.amax(-1, keepdim=True).detach()
        return torch.exp(log_phi - shift), shift

    def keys(self, k):
        """(φ', log scale [..., 1, 1]): φ(k) = φ'·e^scale, one scale per head (the largest over keys and features)."""
        log_phi = self._projected(k)
        shift = log_phi.amax(dim=(-1, -2), keepdim=True).detach()
        return torch.exp(log_phi - shift), shift


def _with_low_rank(q, k, v, layout, o_sparse, lse, features):
    """(A1) from the sparse part's (o, lse) and the low-rank estimate over the blocks the layout does not
    keep (A4): block-level sums of φ(k)·vᵀ, so no T×T array and O(T·m·d) work beyond the sparse part."""
    out_dtype = q.dtype
    if out_dtype == torch.bfloat16:  # the features' exponentials in fp32
        q, k, v = q.float(), k.float(), v.float()
    B, H, T, D = q.shape
    b = layout.block
    n = layout.mask.shape[0]
    pad = n * b - T
    qf, q_scale = features.queries(q)
    kf, k_scale = features.keys(k)
    m = qf.shape[-1]

    def pad_rows(t):  # [..., T, c] → [..., n·b, c], zero rows after T
        return torch.nn.functional.pad(t, (0, 0, 0, pad)) if pad else t

    kf_blocks = pad_rows(kf).reshape(B, H, n, b, m)  # padded keys have φ' = 0: they add nothing
    v_blocks = pad_rows(v).reshape(B, H, n, b, D)
    kv = torch.einsum("bhnjm,bhnjd->bhnmd", kf_blocks, v_blocks)  # Σ_{j ∈ block} φ'(k_j) v_jᵀ
    ksum = kf_blocks.sum(3)
    comp = layout.complement.to(device=q.device, dtype=kf.dtype)
    kv_c = torch.einsum("xy,bhymd->bhxmd", comp, kv)  # per query block: the sums over its dropped key blocks
    ksum_c = torch.einsum("xy,bhym->bhxm", comp, ksum)
    qf_blocks = pad_rows(qf).reshape(B, H, n, b, m)
    u = torch.einsum("bhxim,bhxmd->bhxid", qf_blocks, kv_c).reshape(B, H, n * b, D)[:, :, :T]
    z = torch.einsum("bhxim,bhxm->bhxi", qf_blocks, ksum_c).reshape(B, H, n * b)[:, :, :T]
    # Rows whose query block drops no key block have no low-rank part (log 0 = -inf, gradients kept finite).
    has = (layout.complement.any(1).repeat_interleave(b)[:T]).to(q.device).expand_as(z)
    log_scale = (q_scale + k_scale).squeeze(-1)
    lr_log = torch.where(has, torch.log(torch.where(has, z, torch.ones_like(z))) + log_scale, torch.full_like(z, float("-inf")))
    log_norm = torch.logaddexp(lse.to(z.dtype), lr_log)
    w_sparse = torch.exp(lse.to(z.dtype) - log_norm).unsqueeze(-1)
    w_low = torch.exp(log_scale - log_norm).unsqueeze(-1)
    return (w_sparse * o_sparse.to(z.dtype) + w_low * u).to(out_dtype)


def pixelfly_attention(q, k, v, layout, causal=None, scale=None, features=None, return_lse=False):
    """Pixelfly attention of q, k, v [batch, heads, T, head_dim] (any strides with contiguous features):
    softmax over the scores of ``layout``'s kept blocks (A2), plus, with ``features`` (a
    ``PerformerFeatures``), the low-rank term for the dropped ones (A1). ``layout`` is an
    ``AttentionLayout`` for T, or a dict of ``attention_layout``'s keyword arguments (built per call:
    keep the layout, or use ``PixelflyAttention``, in a training loop). ``causal`` must agree with the
    layout's when given. ``return_lse``: also the sparse part's log-sum-exp [batch, heads, T]."""
    if q.dim() != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q, k, v: expected three [batch, heads, T, head_dim] tensors of one shape, got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    T = q.shape[2]
    if isinstance(layout, dict):
        layout = attention_layout(T, bool(causal), **layout)
    if layout.T != T:
        raise ValueError(f"layout: built for T = {layout.T}, the tensors have T = {T}")
    if causal is not None and bool(causal) != layout.causal:
        raise ValueError(f"causal={causal} disagrees with the layout's causal={layout.causal}")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if features is not None and not math.isclose(features.scale, scale, rel_tol=1e-6):
        raise ValueError(f"features: estimate exp({features.scale:g}·q·k), the attention's scale is {scale:g}")
    o, lse = _sparse_part(q, k, v, layout, scale)
    if features is not None:
        o = _with_low_rank(q, k, v, layout, o, lse, features)
    return (o, lse) if return_lse else o


class PixelflyAttention(nn.Module):
    """The attention core of a transformer block on a flat block butterfly score layout: a drop-in for
    ``softmax(q·kᵀ/√d + causal mask)·v`` on q, k, v of shape [batch, heads, T, head_dim].

    ``max_seq_length`` is the longest context; a shorter sequence uses the first blocks of its layout
    (as the authors' attention). ``butterfly_size`` defaults to the largest power of two ≤ the
    context's blocks, ``n_factors`` to all of its factors (log2 butterfly_size), ``global_size`` to 0
    (the first global_size tokens attend to, and are attended by, every token). ``features`` > 0 adds
    the low-rank term with that many Performer features (the authors' sparse + low-rank attention);
    0 keeps the sparse part only, which is what the engine trains. No dropout on the attention weights.
    """

    def __init__(self, head_dim, max_seq_length, block=DENSE_ATTENTION_BLOCK, butterfly_size=None, n_factors=None,
                 global_size=0, features=0, causal=False, scale=None):
        super().__init__()
        if isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int) or max_seq_length < 1:
            raise PixelflyConfigError("attention.max_seq_length", f"must be a positive integer, got {max_seq_length!r}")
        if block not in ATTENTION_BLOCK_SIZES:
            raise PixelflyConfigError("attention.block", f"must be one of {', '.join(map(str, ATTENTION_BLOCK_SIZES))}, got {block!r}")
        if butterfly_size is None:  # one support cell per block of the longest context
            butterfly_size = 1 << max(1, (-(-max_seq_length // block)).bit_length() - 1)
        if n_factors is None and isinstance(butterfly_size, int) and butterfly_size >= 2:
            n_factors = butterfly_size.bit_length() - 1
        self.head_dim, self.max_seq_length, self.causal = head_dim, max_seq_length, causal
        self.config = {"block": block, "butterfly_size": butterfly_size, "n_factors": n_factors, "global_size": global_size,
                       "max_seq_length": max_seq_length}
        self.scale = head_dim ** -0.5 if scale is None else scale
        self.full_layout = attention_layout(max_seq_length, causal, **self.config)
        self.feature_map = PerformerFeatures(head_dim, features, self.scale) if features else None
        self._layouts = {max_seq_length: self.full_layout}

    @property
    def density(self):
        """Fraction of dense attention's score blocks computed at the longest context."""
        return self.full_layout.density

    def layout(self, T):
        if T not in self._layouts:
            self._layouts[T] = attention_layout(T, self.causal, **self.config)
        return self._layouts[T]

    def forward(self, q, k, v):
        if q.shape[-1] != self.head_dim:
            raise ValueError(f"q: head_dim {q.shape[-1]}, this attention was built for {self.head_dim}")
        return pixelfly_attention(q, k, v, self.layout(q.shape[2]), scale=self.scale, features=self.feature_map)

    def extra_repr(self):
        c = self.config
        return (f"head_dim={self.head_dim}, max_seq_length={self.max_seq_length}, block={c['block']}, "
                f"butterfly_size={c['butterfly_size']}, n_factors={c['n_factors']}, "
                f"global_size={c['global_size']}, features={self.feature_map.features if self.feature_map else 0}, "
                f"causal={self.causal}, density={self.density:.3f}")

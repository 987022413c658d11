"""``PixelflyMultiheadAttention``: ``nn.MultiheadAttention`` whose input and output projections may be
Pixelfly layers. ``nn.MultiheadAttention`` keeps its packed input projection as a parameter
(``in_proj_weight``) and its functional forward reads ``out_proj.weight`` directly, so neither can
be swapped for another module in place; ``sparsify`` replaces the whole attention module by this one
when a plan names ``<attn>.in_proj`` or ``<attn>.out_proj``.

Same call and results as ``nn.MultiheadAttention`` (batch_first or not, unbatched inputs,
``attn_mask`` of shape (L, S) or (N·H, L, S), boolean or additive, ``key_padding_mask``, dropout on
the weights, ``need_weights`` and ``average_attn_weights``) for the configurations ``sparsify``
accepts: query, key and value of the embedding's width, no ``add_bias_kv``, no ``add_zero_attn``.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["PixelflyMultiheadAttention", "mha_unsupported"]


def mha_unsupported(mha):
    """Why an nn.MultiheadAttention cannot become a PixelflyMultiheadAttention ("" when it can)."""
    if not mha._qkv_same_embed_dim:
        return "its key/value widths (kdim/vdim) differ from embed_dim"
    if mha.bias_k is not None:
        return "it has add_bias_kv=True"
    if mha.add_zero_attn:
        return "it has add_zero_attn=True"
    return ""


def _as_additive(mask, dtype):
    """A boolean mask (True = not allowed) as -inf where masked; an additive mask as it is."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(mask, float("-inf"))


class PixelflyMultiheadAttention(nn.Module):
    """Multi-head attention with replaceable projections: ``in_proj`` (embed_dim → 3·embed_dim, q | k | v)
    and ``out_proj`` (embed_dim → embed_dim), each an ``nn.Linear`` or a ``PixelflyLinear``."""

    # nn.TransformerEncoderLayer's fast path reads the packed parameters this module does not have:
    # saying the widths differ sends it down the regular path, which calls forward().
    _qkv_same_embed_dim = False

    def __init__(self, embed_dim, num_heads, in_proj, out_proj, dropout=0.0, batch_first=False):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout, self.batch_first = dropout, batch_first
        self.in_proj, self.out_proj = in_proj, out_proj

    @classmethod
    @torch.no_grad()
    def from_mha(cls, mha, make_in_proj, make_out_proj):
        """From an nn.MultiheadAttention: ``make_*(dense_linear)`` turns each projection, given as an
        nn.Linear holding the module's weights, into the layer to use (or returns it unchanged)."""
        why = mha_unsupported(mha)
        if why:
            raise ValueError(f"MultiheadAttention cannot be made Pixelfly: {why}")
        e = mha.embed_dim
        factory = {"device": mha.in_proj_weight.device, "dtype": mha.in_proj_weight.dtype}
        in_linear = nn.Linear(e, 3 * e, bias=mha.in_proj_bias is not None, **factory)
        in_linear.weight.copy_(mha.in_proj_weight)
        if mha.in_proj_bias is not None:
            in_linear.bias.copy_(mha.in_proj_bias)
        out_linear = nn.Linear(e, e, bias=mha.out_proj.bias is not None, **factory)
        out_linear.weight.copy_(mha.out_proj.weight)
        if mha.out_proj.bias is not None:
            out_linear.bias.copy_(mha.out_proj.bias)
        module = cls(e, mha.num_heads, make_in_proj(in_linear), make_out_proj(out_linear), mha.dropout, mha.batch_first)
        return module.train(mha.training)

    def _project(self, query, key, value):
        e = self.embed_dim
        if query is key and key is value:  # self-attention: one product
            return self.in_proj(query).split(e, dim=-1)
        # Cross-attention: each input through its third of the packed projection.
        return self.in_proj(query)[..., :e], self.in_proj(key)[..., e:2 * e], self.in_proj(value)[..., 2 * e:]

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None, average_attn_weights=True):
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = (t.unsqueeze(1) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif self.batch_first:
            same_kv = key is value
            same_qk = query is key
            query = query.transpose(0, 1)
            key = query if same_qk else key.transpose(0, 1)
            value = key if same_kv else value.transpose(0, 1)
        L, N, E = query.shape
        S = key.shape[0]
        H, D = self.num_heads, self.head_dim
        q, k, v = self._project(query, key, value)
        # [L, N, E] → [N·H, L, D], q scaled before the product as nn.MultiheadAttention does.
        q = q.reshape(L, N * H, D).transpose(0, 1) / math.sqrt(D)
        k = k.reshape(S, N * H, D).transpose(0, 1)
        v = v.reshape(S, N * H, D).transpose(0, 1)
        scores = torch.bmm(q, k.transpose(1, 2))
        mask = _as_additive(attn_mask, scores.dtype)
        if mask is not None:
            scores = scores + (mask.unsqueeze(0) if mask.dim() == 2 else mask)
        if key_padding_mask is not None:
            pad = _as_additive(key_padding_mask, scores.dtype).view(N, 1, 1, S)
            scores = (scores.view(N, H, L, S) + pad).view(N * H, L, S)
        weights = F.softmax(scores, dim=-1)
        if self.training and self.dropout > 0:
            weights = F.dropout(weights, p=self.dropout)
        out = torch.bmm(weights, v).transpose(0, 1).reshape(L, N, E)
        out = self.out_proj(out)
        if unbatched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        w = weights.view(N, H, L, S)
        w = w.mean(dim=1) if average_attn_weights else w
        return out, (w.squeeze(0) if unbatched else w)

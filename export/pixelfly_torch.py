"""Pixelfly layers for PyTorch, written by the Pixelfly VS Code extension beside your model.

``PixelflyLinear`` is the authors' ``SparseLRLinear`` (Dao, Chen et al., "Pixelated Butterfly",
ICLR 2022):

    out = lerp(sparse(x), low_rank(x), sigmoid(gate(x))) + bias

* ``sparse``: a block-sparse weight whose blocks follow a flat block butterfly layout (the same
  mask and the same block order as the Pixelfly core, the native engine and its checkpoints);
* ``low_rank(x) = (x · lr_weight1ᵀ) · lr_weight2ᵀ`` with rank ``rank`` (0 disables it and the gate);
* ``gate``: ``nn.Linear(in_features, 1)``, one mixing weight per token.

Block order: row-major BSR. Block k lies at block-row r (the k-th kept block counting row by
row) and block-column c, columns ascending within a row; ``sparse.weight[k, i, j]`` is
``W[r*block + i, c*block + j]`` where W (out_padded × in_padded) has output features as rows.

The forward pass scatters the kept blocks into a dense, masked weight and calls ``F.linear``: it
runs on any device and dtype PyTorch supports and needs no custom kernel (it saves parameters,
not time). Every parameter is used in every forward and the masks are buffers, so the module
works unchanged under ``DistributedDataParallel`` and FSDP. State-dict keys are the engine's
tensor names, so ``load_engine_weights`` reads a ``pixelfly`` weight export directly.
"""
import json
import math
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "PixelflyConfigError",
    "flat_butterfly_support",
    "flat_block_butterfly_layout",
    "PixelflyLinear",
    "read_safetensors",
    "load_engine_weights",
    "pixelfly_layers_from_export",
]


class PixelflyConfigError(ValueError):
    """A parameter the Pixelfly layout cannot honour; ``param`` names it as the user spells it."""

    def __init__(self, param, message):
        super().__init__(f"{param}: {message}")
        self.param = param


def _require_int(param, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int):
        raise PixelflyConfigError(param, f"must be an integer, got {value!r}")
    if value < minimum:
        raise PixelflyConfigError(param, f"must be >= {minimum}, got {value}")


def _pad_to(n, multiple):
    return -(-n // multiple) * multiple


def _validate_butterfly(butterfly_size, n_factors):
    _require_int("butterfly_size", butterfly_size, 2)
    if butterfly_size & (butterfly_size - 1):
        lower = 1 << (butterfly_size.bit_length() - 1)
        raise PixelflyConfigError("butterfly_size", f"must be a power of two, got {butterfly_size} (try {lower} or {lower * 2})")
    log_n = butterfly_size.bit_length() - 1
    if isinstance(n_factors, bool) or not isinstance(n_factors, int) or not 1 <= n_factors <= log_n:
        raise PixelflyConfigError("n_factors", f"must be an integer in 1..{log_n} (log2 of butterfly_size {butterfly_size}), got {n_factors!r}")


def flat_butterfly_support(n, n_factors, shuffle=False):
    """Union of the supports of butterfly factors 0..n_factors-1 on an n×n grid (bool tensor).

    Factor i is nonzero at (r, c) iff r XOR c is 0 or 2**i. With ``shuffle``, the authors' channel
    shuffle permutes the columns: with g = 2**(log2 n - n_factors) groups of n/g channels,
    column c*g + k of the result is column k*(n/g) + c of the unshuffled support.
    """
    _validate_butterfly(n, n_factors)
    idx = torch.arange(n)
    flat = torch.zeros(n, n, dtype=torch.bool)
    flat[idx, idx] = True
    for i in range(n_factors):
        flat[idx, idx ^ (1 << i)] = True
    if not shuffle:
        return flat
    groups = 2 ** ((n.bit_length() - 1) - n_factors)
    per_group = n // groups
    j = torch.arange(n)
    return flat[:, (j % groups) * per_group + j // groups]


def _check_stretch(side, size, padded, block, s):
    if padded % s == 0:
        return
    raise PixelflyConfigError(
        "butterfly_size",
        f"{s} does not divide {side} {padded}" + (f" ({size} padded to a multiple of block {block})" if padded != size else "")
        + f"; pad {side} to a multiple of {s * block // math.gcd(s, block)} or choose a smaller butterfly_size",
    )


def flat_block_butterfly_layout(out_features, in_features, block, butterfly_size, n_factors, global_size=0, shuffle=False):
    """Block mask (block_rows × block_cols bool tensor, True = kept) of a Pixelfly weight.

    Identical to the core's ``flatBlockButterflyLayout`` and to the authors'
    ``FlatBlockButterflySparsityConfig.make_layout`` on out/in padded up to multiples of block:
    the flat butterfly support is stretched over the padded weight, the first ``global_size``
    rows and columns are kept, and each block is kept if any weight in it is.
    """
    _require_int("out_features", out_features, 1)
    _require_int("in_features", in_features, 1)
    _require_int("block", block, 1)
    _validate_butterfly(butterfly_size, n_factors)
    _require_int("global_size", global_size, 0)
    s = butterfly_size
    out_p, in_p = _pad_to(out_features, block), _pad_to(in_features, block)
    _check_stretch("out_features", out_features, out_p, block, s)
    _check_stretch("in_features", in_features, in_p, block, s)
    support = flat_butterfly_support(s, n_factors, shuffle).to(torch.int64)
    # 2-D prefix sums: "any support cell in a rectangle" in O(1) per block.
    prefix = torch.zeros(s + 1, s + 1, dtype=torch.int64)
    prefix[1:, 1:] = support.cumsum(0).cumsum(1)
    cell_rows, cell_cols = out_p // s, in_p // s
    rows = torch.arange(out_p // block)
    cols = torch.arange(in_p // block)
    r0, r1 = (rows * block) // cell_rows, (rows * block + block - 1) // cell_rows + 1
    c0, c1 = (cols * block) // cell_cols, (cols * block + block - 1) // cell_cols + 1
    total = (prefix[r1][:, c1] - prefix[r0][:, c1] - prefix[r1][:, c0] + prefix[r0][:, c0])
    kept = total > 0
    if global_size > 0:
        kept |= (rows * block < global_size)[:, None]
        kept |= (cols * block < global_size)[None, :]
    return kept


class _Sparse(nn.Module):
    def __init__(self, nnz, block, **factory):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(nnz, block, block, **factory))


class _LowRank(nn.Module):
    def __init__(self, in_features, out_features, rank, **factory):
        super().__init__()
        self.lr_weight1 = nn.Parameter(torch.empty(rank, in_features, **factory))
        self.lr_weight2 = nn.Parameter(torch.empty(out_features, rank, **factory))


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
        self.register_buffer("block_index", layout.flatten().nonzero().flatten().to(device=device), persistent=False)
        self.sparse = _Sparse(int(layout.sum()), block, **factory)
        if rank > 0:
            self.low_rank = _LowRank(in_features, out_features, rank, **factory)
            self.gate = nn.Linear(in_features, 1, **factory)
        else:
            self.low_rank = None
            self.gate = None
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.reset_parameters()

    @property
    def density(self):
        return float(self.layout.float().mean())

    @torch.no_grad()
    def reset_parameters(self):
        """The engine's initialisation (the authors' BlockSparseLinear and LowRank(init='svd'))."""
        b = self.block
        out_p, in_p = self.block_rows * b, self.block_cols * b
        bound = 1.0 / math.sqrt(in_p)
        dense = torch.empty(out_p, in_p).uniform_(-bound, bound)
        # Each block-row is scaled so its output variance matches the dense layer's.
        kept_per_row = self.layout.sum(1).clamp(min=1).to(dense.dtype).cpu()
        dense *= torch.sqrt(self.block_cols / kept_per_row).repeat_interleave(b)[:, None]
        dense[self.out_features:, :] = 0
        dense[:, self.in_features:] = 0
        blocks = dense.view(self.block_rows, b, self.block_cols, b).permute(0, 2, 1, 3).reshape(-1, b, b)
        self.sparse.weight.copy_(blocks[self.block_index.cpu()])
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

    def dense_weight(self):
        """The masked dense weight (out_features × in_features), differentiable in the kept blocks."""
        b = self.block
        w = self.sparse.weight.new_zeros(self.block_rows * self.block_cols, b, b)
        w = w.index_copy(0, self.block_index, self.sparse.weight)
        w = w.view(self.block_rows, self.block_cols, b, b).permute(0, 2, 1, 3).reshape(self.block_rows * b, self.block_cols * b)
        return w[: self.out_features, : self.in_features]

    def forward(self, x):
        out = F.linear(x, self.dense_weight())
        if self.rank > 0:
            low = F.linear(F.linear(x, self.low_rank.lr_weight1), self.low_rank.lr_weight2)
            out = torch.lerp(out, low, torch.sigmoid(self.gate(x)))
        if self.bias is not None:
            out = out + self.bias
        return out

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"block={self.block}, butterfly_size={self.butterfly_size}, n_factors={self.n_factors}, rank={self.rank}, "
                f"global_size={self.global_size}, shuffle={self.shuffle}, density={self.density:.3f}")


_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32}


def read_safetensors(path):
    """Tensors and metadata of a safetensors file, without the safetensors package."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except ValueError as e:
        raise ValueError(f"{path}: not a safetensors file (bad header: {e})") from None
    meta = header.pop("__metadata__", {}) or {}
    body = data[8 + n:]
    tensors = {}
    for name, t in header.items():
        if t["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {t['dtype']}")
        start, end = t["data_offsets"]
        flat = torch.frombuffer(bytearray(body[start:end]), dtype=_DTYPES[t["dtype"]])
        tensors[name] = flat.reshape(t["shape"]).clone()
    return tensors, meta


def load_engine_weights(module, path, prefix="", strict=True):
    """Load a Pixelfly engine weight export into ``module`` (names are state-dict keys).

    ``prefix`` selects a sub-tree of the export (e.g. ``"blocks.0.mlp.fc1."``).
    """
    tensors, _ = read_safetensors(path)
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    return module.load_state_dict(state, strict=strict)


def pixelfly_layers_from_export(path):
    """Every Pixelfly layer of an engine weight export, built and loaded: ``{name: PixelflyLinear}``.

    Raises if a layer's layout here differs from the one the engine recorded (it never should:
    both implement the same layout function).
    """
    tensors, meta = read_safetensors(path)
    if meta.get("format") != "pixelfly-weights":
        raise ValueError(f"{path}: not a Pixelfly weight export (metadata format {meta.get('format')!r})")
    layers = {}
    for name, cfg in json.loads(meta.get("layouts", "{}")).items():
        layer = PixelflyLinear(cfg["in"], cfg["out"], block=cfg["block"], butterfly_size=cfg["butterflySize"],
                               n_factors=cfg["nFactors"], rank=cfg.get("rank", 0), global_size=cfg.get("globalSize", 0),
                               shuffle=bool(cfg.get("shuffle", False)))
        rows = ["".join("1" if v else "0" for v in row) for row in layer.layout.tolist()]
        if rows != cfg["layout"]:
            raise ValueError(f"{path}: layer {name}: the exported layout differs from pixelfly_torch's")
        state = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
        layer.load_state_dict(state, strict=True)
        layers[name] = layer
    return layers

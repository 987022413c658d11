"""Flat block butterfly layouts and their block index: the same functions as the Pixelfly core
(``core/layout.ts``, ``core/blockIndex.ts``), so masks and block order agree with the native engine,
its checkpoints and the editor's preview.

Block order (row-major BSR): block k lies at block-row r (the k-th kept block counting row by row)
and block-column c, columns ascending within a row; ``blocks[k, i, j]`` is
``W[r*block + i, c*block + j]`` where W (out_padded × in_padded) has output features as rows.
"""
import math

import torch

__all__ = [
    "KERNEL_BLOCK_SIZES",
    "PixelflyConfigError",
    "flat_butterfly_support",
    "flat_block_butterfly_layout",
    "block_index",
]

#: Block sizes the native kernels implement (core/planner.ts's KERNEL_BLOCK_SIZES).
KERNEL_BLOCK_SIZES = (16, 32, 64)


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


def block_index(layout):
    """The block index of a mask, as one int32 tensor: the lookup table the native operators read.

    Concatenates ``rowPtr [block_rows + 1] | colIdx [nnz] | colPtr [block_cols + 1] | rowIdx [nnz] |
    tBlock [nnz]`` (core/blockIndex.ts): the row-major view the forward and dW walk, and the
    transposed view dX walks, where tBlock[t] is the row-major number of the t-th block in column
    order. Built once per layer; the operators check it on every call, which costs O(nnz).
    """
    mask = torch.as_tensor(layout, dtype=torch.bool)
    if mask.dim() != 2:
        raise PixelflyConfigError("layout", f"must be a 2-D block mask, got {mask.dim()} dimensions")
    block_rows, block_cols = mask.shape
    flat = mask.flatten().nonzero().flatten()
    rows, cols = flat // block_cols, flat % block_cols
    row_ptr = torch.zeros(block_rows + 1, dtype=torch.int64)
    row_ptr[1:] = mask.sum(1).cumsum(0)
    col_ptr = torch.zeros(block_cols + 1, dtype=torch.int64)
    col_ptr[1:] = mask.sum(0).cumsum(0)
    # Column order, rows ascending within a column: a stable sort of the row-major blocks by column.
    order = torch.sort(cols, stable=True).indices
    return torch.cat([row_ptr, cols, col_ptr, rows[order], order]).to(torch.int32)

#!/usr/bin/python3
"""Reference forward/backward in PyTorch for the engine's cross-check (driven by crosscheck.test.ts).

Reads a JSON case (layer kind, sizes, the engine's parameters by name, input x and output
gradient dy), rebuilds the layer in PyTorch from the same weights, runs forward and
backward in float64, and writes y, dx and every parameter gradient as JSON.

PixelflyLinear is written the way the authors' SparseLRLinear computes it:
    out = lerp(sparse(x), low_rank(x), sigmoid(gate(x))) + bias
with the block-sparse weight densified from packed blocks [nnz, block, block] in the core's
row-major BSR order, so the check also pins the block order shared with the PyTorch export.
"""
import json
import sys

import torch
import torch.nn.functional as F


def tensor(values, shape):
    return torch.tensor(values, dtype=torch.float64).reshape(shape).requires_grad_(True)


def densify(blocks, layout_rows, block):
    """[nnz, b, b] blocks in row-major BSR order -> dense (rows*b, cols*b) weight."""
    rows, cols = len(layout_rows), len(layout_rows[0])
    out = []
    k = 0
    for r in range(rows):
        row_blocks = []
        for c in range(cols):
            if layout_rows[r][c] == '1':
                row_blocks.append(blocks[k])
                k += 1
            else:
                row_blocks.append(torch.zeros(block, block, dtype=blocks.dtype))
        out.append(torch.cat(row_blocks, dim=1))
    assert k == blocks.shape[0], 'layout and packed blocks disagree'
    return torch.cat(out, dim=0)


class Params:
    def __init__(self, case):
        self.t = {name: tensor(p['data'], p['shape']) for name, p in case['params'].items()}
        self.layouts = case.get('layouts', {})

    def linear(self, prefix, x):
        """Dense nn.Linear or the authors' SparseLRLinear, whichever the engine built."""
        t = self.t
        if prefix + '.weight' in t:
            return F.linear(x, t[prefix + '.weight'], t[prefix + '.bias'])
        lay = self.layouts[prefix]
        blocks = t[prefix + '.sparse.weight']
        w = densify(blocks, lay['rows'], blocks.shape[1])[: lay['out'], : lay['in']]
        sparse = F.linear(x, w)
        if prefix + '.low_rank.lr_weight1' not in t:  # rank 0: block-sparse only
            return sparse + t[prefix + '.bias']
        low_rank = F.linear(F.linear(x, t[prefix + '.low_rank.lr_weight1']), t[prefix + '.low_rank.lr_weight2'])
        g = torch.sigmoid(F.linear(x, t[prefix + '.gate.weight'], t[prefix + '.gate.bias']))
        return torch.lerp(sparse, low_rank, g) + t[prefix + '.bias']

    def layer_norm(self, prefix, x):
        return F.layer_norm(x, (x.shape[-1],), self.t[prefix + '.weight'], self.t[prefix + '.bias'], eps=1e-5)


def mixer_block(p, x):
    """MLP-Mixer block: token mixing along the token axis, then channel mixing, both residual."""
    h = p.layer_norm('block.norm1', x).transpose(1, 2)
    h = p.linear('block.token_mix.fc2', F.gelu(p.linear('block.token_mix.fc1', h)))
    x = x + h.transpose(1, 2)
    h = p.linear('block.channel_mix.fc2', F.gelu(p.linear('block.channel_mix.fc1', p.layer_norm('block.norm2', x))))
    return x + h


def main():
    case = json.load(open(sys.argv[1]))
    torch.manual_seed(0)
    p = Params(case)
    B, T, D = case['batch'], case['T'], case['inD']
    x = tensor(case['x'], (B, T, D))
    if case['layer'] in ('linear', 'pixelfly'):
        y = p.linear('layer', x)
    elif case['layer'] == 'mixer_block':
        y = mixer_block(p, x)
    else:
        raise SystemExit('unknown layer ' + case['layer'])
    dy = torch.tensor(case['dy'], dtype=torch.float64).reshape(y.shape)
    y.backward(dy)
    out = {
        'torch': torch.__version__,
        'y': y.detach().reshape(-1).tolist(),
        'dx': x.grad.reshape(-1).tolist(),
        'grads': {n: t.grad.reshape(-1).tolist() if t.grad is not None else None for n, t in p.t.items()},
    }
    json.dump(out, open(sys.argv[2], 'w'))


if __name__ == '__main__':
    main()

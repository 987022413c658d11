#!/usr/bin/python3
"""Reference forward/backward in PyTorch for the engine's cross-check (driven by crosscheck.test.ts).

    torch_crosscheck.py CASE.json OUT.json
Reads a JSON case (layer kind, sizes, the engine's parameters by name, input x and output
gradient dy), rebuilds the layer in PyTorch from the same weights, runs forward and
backward in float64, and writes y, dx and every parameter gradient as JSON.

    torch_crosscheck.py --mixer WEIGHTS.safetensors X.json OUT.json
Reads the engine's weight export with plain Python (no safetensors package), rebuilds the whole
MLP-Mixer from it and writes its logits for the inputs in X.json: the export round trip.

PixelflyLinear is written the way the authors' SparseLRLinear computes it:
    out = lerp(sparse(x), low_rank(x), sigmoid(gate(x))) + bias
with the block-sparse weight densified from packed blocks [nnz, block, block] in the core's
row-major BSR order, so the check also pins the block order shared with the PyTorch export.
"""
import json
import math
import struct
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
    def __init__(self, tensors, layouts):
        self.t = tensors
        self.layouts = layouts

    def linear(self, prefix, x):
        """Dense nn.Linear or the authors' SparseLRLinear, whichever the engine built."""
        t = self.t
        if prefix + '.weight' in t:
            return F.linear(x, t[prefix + '.weight'], t[prefix + '.bias'])
        lay = self.layouts[prefix] if prefix in self.layouts else self.layouts[plan_name(prefix)]
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


def plan_name(prefix):
    """blocks.3.channel_mix.fc1 -> blocks.channel_mix.fc1: the plan names a layer once for all blocks."""
    parts = prefix.split('.')
    return '.'.join(parts[:1] + parts[2:]) if len(parts) > 2 and parts[0] == 'blocks' and parts[1].isdigit() else prefix


def mixer_block(p, x, pre='block.'):
    """MLP-Mixer block: token mixing along the token axis, then channel mixing, both residual."""
    h = p.layer_norm(pre + 'norm1', x).transpose(1, 2)
    h = p.linear(pre + 'token_mix.fc2', F.gelu(p.linear(pre + 'token_mix.fc1', h)))
    x = x + h.transpose(1, 2)
    h = p.linear(pre + 'channel_mix.fc2', F.gelu(p.linear(pre + 'channel_mix.fc1', p.layer_norm(pre + 'norm2', x))))
    return x + h


def score_mask(att, T):
    """The T×T keep mask of an attention core: its score layout's block rows, and j <= i when causal."""
    b = att['block']
    keep = torch.tensor([[c == '1' for c in row] for row in att['rows']])
    keep = keep.repeat_interleave(b, 0).repeat_interleave(b, 1)[:T, :T]
    return keep & torch.ones(T, T, dtype=torch.bool).tril() if att['causal'] else keep


def performer_features(x, omega, scale):
    """φ(x) = m^(−1/2)·exp([ω_r·x′, −ω_r·x′] − |x′|²/2), x′ = x·scale^½: E[φ(q)·φ(k)] = exp(scale·q·k) (ATTENTION.md (A5))."""
    xs = x * scale ** 0.5
    dash = xs @ omega.t()
    m = 2 * omega.shape[0]
    return torch.exp(torch.cat([dash, -dash], -1) - (xs * xs).sum(-1, keepdim=True) / 2 - math.log(m) / 2)


def transformer_block(p, x, att, pre='block.'):
    """Pre-norm transformer block; softmax(q·kᵀ/√d) over the kept scores of the layout only, and with
    `features` the low-rank term for the rest of the allowed scores, as written in (A1): the scores
    are e^{s_ij} where kept and φ(q_i)·φ(k_j) where allowed but not kept, one normaliser per row."""
    B, T, D = x.shape
    H = att['heads']
    q, k, v = p.linear(pre + 'attn.qkv', p.layer_norm(pre + 'norm1', x)).reshape(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)
    scale = (D // H) ** -0.5
    keep = score_mask(att, T)
    if att.get('features'):
        allowed = torch.ones(T, T, dtype=torch.bool).tril() if att['causal'] else torch.ones(T, T, dtype=torch.bool)
        omega = torch.tensor(att['projection'], dtype=torch.float64).reshape(att['features'] // 2, D // H)
        estimate = performer_features(q, omega, scale) @ performer_features(k, omega, scale).transpose(-1, -2)
        a = torch.where(keep, torch.exp((q @ k.transpose(-1, -2)) * scale), torch.where(allowed, estimate, torch.zeros_like(estimate)))
        ctx = ((a @ v) / a.sum(-1, keepdim=True)).transpose(1, 2).reshape(B, T, D)
    else:
        s = (q @ k.transpose(-1, -2)) * scale
        s = s.masked_fill(~keep, float('-inf'))
        ctx = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, D)
    x = x + p.linear(pre + 'attn.proj', ctx)
    return x + p.linear(pre + 'mlp.fc2', F.gelu(p.linear(pre + 'mlp.fc1', p.layer_norm(pre + 'norm2', x))))


def read_safetensors(path):
    raw = open(path, 'rb').read()
    (n,) = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8: 8 + n])
    meta = header.pop('__metadata__')
    tensors = {}
    for name, t in header.items():
        begin, end = t['data_offsets']
        assert t['dtype'] == 'F32'
        data = torch.frombuffer(bytearray(raw[8 + n + begin: 8 + n + end]), dtype=torch.float32)
        tensors[name] = data.reshape(t['shape']).double()
    return tensors, meta


def mixer_from_export(weights, xs):
    tensors, meta = read_safetensors(weights)
    spec = json.loads(meta['spec'])
    layouts = {name: {'in': l['in'], 'out': l['out'], 'rows': l['layout']} for name, l in json.loads(meta['layouts']).items()}
    p = Params(tensors, layouts)
    c, h, w, pt = spec['image']['channels'], spec['image']['height'], spec['image']['width'], spec['patch']
    x = torch.tensor(xs, dtype=torch.float64).reshape(-1, c, h // pt, pt, w // pt, pt)
    x = x.permute(0, 2, 4, 1, 3, 5).reshape(x.shape[0], (h // pt) * (w // pt), c * pt * pt)
    x = p.linear('patch_embed', x)
    for i in range(spec['depth']):
        x = mixer_block(p, x, f'blocks.{i}.')
    return p.linear('head', p.layer_norm('norm', x).mean(dim=1))


def main():
    if sys.argv[1] == '--mixer':
        logits = mixer_from_export(sys.argv[2], json.load(open(sys.argv[3])))
        json.dump({'logits': logits.reshape(-1).tolist()}, open(sys.argv[4], 'w'))
        return
    case = json.load(open(sys.argv[1]))
    p = Params({name: tensor(t['data'], t['shape']) for name, t in case['params'].items()}, case.get('layouts', {}))
    B, T, D = case['batch'], case['T'], case['inD']
    x = tensor(case['x'], (B, T, D))
    if case['layer'] in ('linear', 'pixelfly'):
        y = p.linear('layer', x)
    elif case['layer'] == 'mixer_block':
        y = mixer_block(p, x)
    elif case['layer'] == 'transformer_block':
        y = transformer_block(p, x, case['attention'])
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

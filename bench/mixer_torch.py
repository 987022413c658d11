#!/usr/bin/python3
"""PyTorch-CPU baseline for `npm run bench:train`: the same dense MLP-Mixer as the engine's, trained
on Fashion-MNIST with the same batch, optimizer, schedule, clipping, epochs and thread count.
`"dtype": "bf16"` trains the whole model in bf16 (`model.to(torch.bfloat16)`, inputs too: oneDNN's
bf16 kernels, PyTorch's fastest CPU path where the CPU has bf16 instructions); torch 1.13's CPU
autocast cannot be used instead, it fails on LayerNorm with a dtype error.

    /usr/bin/python3 bench/mixer_torch.py '<json config>'

Prints one JSON line: {"step_ms": median ms of a training step (batch gather + forward + backward +
optimizer), "test_accuracy", "steps", "torch": version, "threads"}.
"""
import gzip
import json
import math
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN, STD = 0.286, 0.353  # the engine's normalisation (native/datasets.ts)


def idx(path):
    """IDX file (gzip or not) -> numpy array of unsigned bytes."""
    raw = open(path, 'rb').read()
    if raw[:2] == b'\x1f\x8b':
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], 'big') for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(folder, prefix):
    def find(base):
        for name in (base + '.gz', base):
            try:
                open(f'{folder}/{name}', 'rb').close()
                return f'{folder}/{name}'
            except OSError:
                pass
        raise SystemExit(f'{folder}/{base}.gz: file not found')
    x = idx(find(f'{prefix}-images-idx3-ubyte')).astype(np.float32) / 255.0
    y = idx(find(f'{prefix}-labels-idx1-ubyte')).astype(np.int64)
    return torch.from_numpy((x - MEAN) / STD).unsqueeze(1), torch.from_numpy(y)


class MixerBlock(nn.Module):
    def __init__(self, tokens, dim, token_hidden, channel_hidden):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_fc1 = nn.Linear(tokens, token_hidden)
        self.token_fc2 = nn.Linear(token_hidden, tokens)
        self.norm2 = nn.LayerNorm(dim)
        self.channel_fc1 = nn.Linear(dim, channel_hidden)
        self.channel_fc2 = nn.Linear(channel_hidden, dim)

    def forward(self, x):
        h = self.norm1(x).transpose(1, 2)
        x = x + self.token_fc2(F.gelu(self.token_fc1(h))).transpose(1, 2)
        return x + self.channel_fc2(F.gelu(self.channel_fc1(self.norm2(x))))


class Mixer(nn.Module):
    def __init__(self, c):
        super().__init__()
        p = c['patch']
        tokens = (c['height'] // p) * (c['width'] // p)
        # Conv2d with stride = kernel = patch is exactly the engine's patchify + patch_embed.
        self.patch_embed = nn.Conv2d(c['channels'], c['dim'], p, stride=p)
        self.blocks = nn.Sequential(*[MixerBlock(tokens, c['dim'], c['tokenHidden'], c['channelHidden']) for _ in range(c['depth'])])
        self.norm = nn.LayerNorm(c['dim'])
        self.head = nn.Linear(c['dim'], c['classes'])

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        return self.head(self.norm(self.blocks(x)).mean(dim=1))


def main():
    c = json.loads(sys.argv[1])
    torch.set_num_threads(c['threads'])
    torch.manual_seed(c['seed'])
    xtr, ytr = load(c['data'], 'train')
    xte, yte = load(c['data'], 't10k')
    if c.get('trainLimit'):
        xtr, ytr = xtr[: c['trainLimit']], ytr[: c['trainLimit']]
    model = Mixer(c)
    dtype = torch.bfloat16 if c.get('dtype') == 'bf16' else torch.float32
    model = model.to(dtype)
    xtr, xte = xtr.to(dtype), xte.to(dtype)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': c['weightDecay']}, {'params': no_decay, 'weight_decay': 0.0}],
                            lr=c['lr'], betas=(0.9, 0.999), eps=1e-8)
    total, warm, min_ratio = c['totalSteps'], c['warmupSteps'], c['minLrRatio']

    def schedule(step):  # the engine's warm-up + cosine (model.cc learningRate)
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    gen = torch.Generator().manual_seed(c['seed'])
    n, batch = len(ytr), c['batch']
    times, step = [], 0
    order, pos = torch.randperm(n, generator=gen), 0
    model.train()
    while step < total:
        t0 = time.perf_counter()
        if pos + batch > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx_b = order[pos: pos + batch]
        pos += batch
        loss = F.cross_entropy(model(xtr[idx_b]), ytr[idx_b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), c['clipNorm'])
        opt.step()
        sched.step()
        times.append((time.perf_counter() - t0) * 1000)
        step += 1
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(yte), 512):
            correct += (model(xte[i: i + 512]).argmax(1) == yte[i: i + 512]).sum().item()
    # The first steps warm up allocators and thread pools: time the rest.
    steady = times[min(5, len(times) - 1):]
    print(json.dumps({'step_ms': statistics.median(steady), 'test_accuracy': correct / len(yte), 'steps': step,
                      'torch': torch.__version__, 'threads': torch.get_num_threads(), 'final_loss': loss.item(),
                      'dtype': 'bf16' if dtype == torch.bfloat16 else 'fp32'}))


if __name__ == '__main__':
    main()

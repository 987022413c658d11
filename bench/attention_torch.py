#!/usr/bin/python3
"""PyTorch-CPU baseline for `npm run bench:attention`: one attention core, forward + backward, written
the explicit way (torch 1.13 has no scaled_dot_product_attention):

    o = softmax(q·kᵀ / √d, masked to j <= i when causal) · v,  then o.backward(dO)

    /usr/bin/python3 bench/attention_torch.py '<json config>'

Config: {"seqs": [1024, ...], "heads": 12, "head_dim": 64, "causal": true, "threads": 2, "reps": 5,
"dtypes": ["float32", "bfloat16"], "clock": "wall" | "cpu" (process CPU time)}. The T×T score, probability and gradient matrices are real
memory here, so heads run in groups whose four T×T matrices fit in about 1.5 GB (all 12 heads at
T = 1024, one at a time at 8192); the timed region covers every group. Prints one JSON line:
{"torch": version, "threads", "rows": [{"seq", "dtype", "fwd_bwd_ms", "head_groups"}] }, and for a
dtype this CPU or torch build cannot run, {"seq", "dtype", "error"}.
"""
import json
import math
import statistics
import sys
import time

import torch

BUDGET_BYTES = 1.5e9


def run(T, H, d, causal, dtype, reps, clock):
    g = torch.Generator().manual_seed(T)
    q, k, v, do = (torch.randn(1, H, T, d, generator=g).to(dtype) for _ in range(4))
    per_head = 4 * T * T * (2 if dtype == torch.bfloat16 else 4)
    group = max(1, min(H, int(BUDGET_BYTES // per_head)))
    mask = torch.ones(T, T, dtype=torch.bool).triu(1) if causal else None
    scale = 1 / math.sqrt(d)

    def step():
        for h0 in range(0, H, group):
            qs, ks, vs = (t[:, h0:h0 + group].detach().requires_grad_(True) for t in (q, k, v))
            s = (qs @ ks.transpose(-1, -2)) * scale
            if mask is not None:
                s = s.masked_fill(mask, float('-inf'))
            o = torch.softmax(s, dim=-1) @ vs
            o.backward(do[:, h0:h0 + group])

    step()  # warm-up
    now = time.process_time if clock == 'cpu' else time.perf_counter
    times = []
    for _ in range(reps):
        t0 = now()
        step()
        times.append((now() - t0) * 1e3)
    return statistics.median(times), math.ceil(H / group)


def main():
    cfg = json.loads(sys.argv[1])
    torch.set_num_threads(cfg['threads'])
    rows = []
    for T in cfg['seqs']:
        for name in cfg.get('dtypes', ['float32']):
            dtype = getattr(torch, name)
            try:
                ms, groups = run(T, cfg['heads'], cfg['head_dim'], cfg['causal'], dtype, cfg['reps'], cfg.get('clock', 'wall'))
                rows.append({'seq': T, 'dtype': name, 'fwd_bwd_ms': ms, 'head_groups': groups})
            except RuntimeError as e:
                rows.append({'seq': T, 'dtype': name, 'error': str(e).split('\n')[0][:200]})
            print(json.dumps({'progress': rows[-1]}), file=sys.stderr, flush=True)
    print(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(), 'rows': rows}))


if __name__ == '__main__':
    main()

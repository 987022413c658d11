#!/usr/bin/python3
"""PyTorch's bf16 Linear products for `npm run bench:kernels -- --precision bf16`: the forward
y = x·Wᵀ and the backward's dX = dY·W and dW = dYᵀ·X, each a bf16 matmul (oneDNN on CPUs with
AVX512-BF16 or AMX), exactly the three products F.linear's forward and autograd run.

    /usr/bin/python3 bench/linear_torch.py '{"m": 4096, "in": 768, "out": 3072, "threads": 1, "reps": 15, "clock": "cpu"}'

Prints one JSON line: {"fwd_ms", "dx_ms", "dw_ms": medians, "torch": version, "threads",
"mkldnn": whether PyTorch was built with oneDNN}. `clock: "cpu"` times process CPU time (with
1 thread), "wall" wall time, as bench/kernels.ts does.
"""
import json
import statistics
import sys
import time

import torch


def main():
    c = json.loads(sys.argv[1])
    torch.set_num_threads(c['threads'])
    torch.manual_seed(0)
    m, k, n = c['m'], c['in'], c['out']
    x = torch.randn(m, k).to(torch.bfloat16)
    w = torch.randn(n, k).to(torch.bfloat16)
    dy = torch.randn(m, n).to(torch.bfloat16)
    now = time.process_time if c['clock'] == 'cpu' else time.perf_counter
    ops = {
        'fwd': lambda: torch.nn.functional.linear(x, w),
        'dx': lambda: torch.mm(dy, w),
        'dw': lambda: torch.mm(dy.t(), x),
    }
    times = {name: [] for name in ops}
    with torch.no_grad():
        for rep in range(-1, c['reps']):  # round -1 warms up oneDNN's kernels and caches
            for name, op in ops.items():
                t0 = now()
                op()
                dt = (now() - t0) * 1000
                if rep >= 0:
                    times[name].append(dt)
    print(json.dumps({**{f'{name}_ms': statistics.median(t) for name, t in times.items()}, 'torch': torch.__version__,
                      'threads': torch.get_num_threads(), 'mkldnn': torch.backends.mkldnn.is_available()}))


if __name__ == '__main__':
    main()

#!/usr/bin/python3
"""The PyTorch side of `npm run bench:torch` (bench/torch.ts writes the config: layouts and plans come
from the core planner and the language server's analysis, so the layers are the ones Pixelfly plans).

    PYTHONPATH=dist/python /usr/bin/python3 bench/torch_bench.py '<json config>'

Prints one JSON row per line on stdout ({kind: "layer" | "step", ...}); progress goes to stderr.

Layers: forward + backward (input and weight gradients) of one layer at M rows, median of `reps`
rounds that time every variant once each:
  pixelfly       PixelflyLinear (rank 0) on the extension's kernels
  masked_dense   the same layer through the masked-dense fallback (F.linear on the masked weight)
  torch_linear   nn.Linear (Debian's torch: a generic BLAS)
  project_dense  F.linear on the project's own dense GEMM (pixelfly_torch.dense_linear)
  torch_bf16     nn.Linear in bfloat16 (oneDNN), where the CPU has bf16 instructions
Steps: a whole training step (forward, backward, AdamW) of a test-corpus model, dense (torch_linear)
and made sparse with `pixelfly_torch.sparsify` from its own analysis plan (pixelfly), trained on the
same batches in alternating steps; then project_dense (every nn.Linear on our GEMM), torch_bf16 and
pixelfly_bf16 (the models in bfloat16), torch_autocast and pixelfly_autocast (fp32 models under
torch.autocast(bfloat16), as the daemon's runner trains at precision bf16) for fewer steps. The loss
is the held-out loss after the variant's steps.
"""
import copy
import importlib.util
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import pixelfly_torch as pt
from pixelfly_torch.functional import masked_dense_linear

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def cpu_has_bf16():
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def interleaved_medians(fns, reps, warmup=2):
    """Median ms of each of `fns` (name -> callable), timed round-robin: every round runs each once,
    so a burst of load on the machine hits every variant alike instead of whichever ran then."""
    times = {name: [] for name in fns}
    for i in range(warmup + reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append((time.perf_counter() - t0) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


# ---------------------------------------------------------------- layers

def fwd_bwd(forward, x, params):
    """One forward + backward: gradients for x and every parameter (fresh, as an optimizer step sees them).
    The output's gradient is made once, untimed: in a step it comes from the next layer, and filling
    an M×out array each time would add the same memory pass to every variant."""
    with torch.no_grad():
        dy = torch.ones_like(forward(x))

    def run():
        x.grad = None
        for p in params:
            p.grad = None
        forward(x).backward(dy)
    return run


def layer_rows(cfg):
    rows = []
    bf16 = cpu_has_bf16()
    for spec in cfg["layers"]:
        i, o, m = spec["in"], spec["out"], spec["m"]
        torch.manual_seed(0)
        layer = pt.PixelflyLinear(i, o, **pt.config_kwargs(spec["config"]))
        dense = nn.Linear(i, o)
        x = torch.randn(m, i, requires_grad=True)
        variants = {
            "pixelfly": (layer, list(layer.parameters())),
            "masked_dense": (lambda v: masked_dense_linear(v, layer.dense_weight(), layer.bias), list(layer.parameters())),
            "torch_linear": (dense, list(dense.parameters())),
            "project_dense": (lambda v: pt.dense_linear(v, dense.weight, dense.bias), list(dense.parameters())),
        }
        inputs = {name: x for name in variants}
        if bf16:
            dense_bf16 = copy.deepcopy(dense).to(torch.bfloat16)
            layer_bf16 = copy.deepcopy(layer).to(torch.bfloat16)
            variants["torch_bf16"] = (dense_bf16, list(dense_bf16.parameters()))
            variants["pixelfly_bf16"] = (layer_bf16, list(layer_bf16.parameters()))
            inputs["torch_bf16"] = x.detach().to(torch.bfloat16).requires_grad_()
            inputs["pixelfly_bf16"] = x.detach().to(torch.bfloat16).requires_grad_()
        medians = interleaved_medians({name: fwd_bwd(forward, inputs[name], params) for name, (forward, params) in variants.items()},
                                      cfg["reps"])
        for name, ms in medians.items():
            row = {"kind": "layer", "model": spec["name"], "in": i, "out": o, "m": m, "density": layer.density,
                   "config": spec["config"], "variant": name, "precision": "bf16" if name.endswith("_bf16") else "fp32",
                   "threads": torch.get_num_threads(), "fwd_bwd_ms": ms}
            rows.append(row)
            print(json.dumps(row), flush=True)
            log(f"  {spec['name']} density {layer.density:.3f} {name}: {ms:.1f} ms")
    return rows


# ---------------------------------------------------------------- models and data

def import_file(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class TextBatches:
    """Byte-level language modelling on a fixed text (vocabulary 256): seeded random windows."""

    def __init__(self, path, context, batch, max_bytes):
        data = Path(path).read_bytes()[:max_bytes]
        tokens = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(torch.long)
        split = int(len(tokens) * 0.9)
        self.train, self.val = tokens[:split], tokens[split:]
        self.context, self.batch = context, batch
        self.source = f"{path} ({len(data) / 1e6:.1f} MB, bytes)"

    def _windows(self, tokens, gen):
        starts = torch.randint(0, len(tokens) - self.context - 1, (self.batch,), generator=gen)
        x = torch.stack([tokens[s:s + self.context] for s in starts])
        y = torch.stack([tokens[s + 1:s + 1 + self.context] for s in starts])
        return x, y

    def batches(self, n, seed):
        gen = torch.Generator().manual_seed(seed)
        return [self._windows(self.train, gen) for _ in range(n)]

    def held_out(self, n):
        gen = torch.Generator().manual_seed(12345)
        return [self._windows(self.val, gen) for _ in range(n)]


class ImageBatches:
    """Fashion-MNIST (Debian's dataset-fashion-mnist), the engine's normalisation."""

    def __init__(self, folder, batch):
        sys.path.insert(0, str(HERE))
        from mixer_torch import load
        self.train_x, self.train_y = load(folder, "train")
        self.test_x, self.test_y = load(folder, "t10k")
        self.batch = batch
        self.source = f"Fashion-MNIST from {folder}"

    def batches(self, n, seed):
        gen = torch.Generator().manual_seed(seed)
        out = []
        for _ in range(n):
            idx = torch.randint(0, len(self.train_y), (self.batch,), generator=gen)
            out.append((self.train_x[idx], self.train_y[idx]))
        return out

    def held_out(self, n):
        return [(self.test_x[i * self.batch:(i + 1) * self.batch], self.test_y[i * self.batch:(i + 1) * self.batch]) for i in range(n)]


def build(model_cfg):
    """(model, data, loss_fn) for a bench model."""
    b = model_cfg["build"]
    if model_cfg["kind"] == "gpt":
        mod = import_file(model_cfg["file"], "bench_nanogpt")
        model = mod.GPT(mod.GPTConfig(**b))
        data = TextBatches(model_cfg["text"], b["block_size"], model_cfg["batch"], model_cfg.get("max_bytes", 8 << 20))

        def loss_fn(m, x, y):
            _, loss = m(x, y)
            return loss
    else:
        # timm's mlp_mixer.py imports ._builder and ._registry: build_corpus loads it as timm.models.mlp_mixer,
        # with the test stand-ins of timm and einops importable.
        sys.path.insert(0, str(REPO / "test" / "fixtures" / "models"))
        import build_corpus
        mod = build_corpus.load(model_cfg["file"])
        model = getattr(mod, model_cfg["class"])(**b)
        data = ImageBatches(model_cfg["fashion_mnist"], model_cfg["batch"])

        def loss_fn(m, x, y):
            return F.cross_entropy(m(x).float(), y)
    return model, data, loss_fn


class OurDenseLinear(nn.Module):
    """nn.Linear's parameters, computed on the project's dense GEMM (the honest dense baseline)."""

    def __init__(self, linear):
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias

    def forward(self, x):
        return pt.dense_linear(x, self.weight, self.bias)


def on_our_gemm(model):
    for name, m in list(model.named_modules()):
        for child_name, child in list(m.named_children()):
            if type(child) is nn.Linear:
                setattr(m, child_name, OurDenseLinear(child))
    return model


class Variant:
    def __init__(self, name, model, lr, precision="fp32"):
        self.name, self.model, self.precision = name, model, precision
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
        self.times, self.losses = [], []

    def step(self, loss_fn, x, y):
        if self.precision == "bf16" and x.is_floating_point():
            x = x.to(torch.bfloat16)
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "autocast"):
            loss = loss_fn(self.model, x, y)
        loss.backward()
        self.opt.step()
        self.times.append((time.perf_counter() - t0) * 1000)
        self.losses.append(float(loss))

    @torch.no_grad()
    def held_out_loss(self, loss_fn, batches):
        self.model.eval()
        total = sum(float(loss_fn(self.model, x.to(torch.bfloat16) if self.precision == "bf16" and x.is_floating_point() else x, y))
                    for x, y in batches)
        self.model.train()
        return total / len(batches)

    def step_ms(self):
        warm = min(5, len(self.times) - 1)  # the first steps fault in buffers and warm the thread pools
        return statistics.median(self.times[warm:])


def step_rows(cfg):
    rows = []
    for mc in cfg["models"]:
        torch.manual_seed(0)
        dense, data, loss_fn = build(mc)
        sparse = copy.deepcopy(dense)
        report = pt.sparsify(sparse, mc["plan"])
        log(f"{mc['name']}: {len(report)} layers made Pixelfly from the analysis plan; data: {data.source}")
        for r in report:
            log(f"  {r}")
        n_dense, n_sparse = (sum(p.numel() for p in m.parameters()) for m in (dense, sparse))
        params = {"torch_linear": n_dense, "pixelfly": n_sparse, "pixelfly_bf16": n_sparse, "pixelfly_autocast": n_sparse}
        steps, timing_steps = mc["steps"], min(mc["timing_steps"], mc["steps"])
        batches = data.batches(steps, seed=1)
        held_out = data.held_out(mc["held_out_batches"])
        main = [Variant("torch_linear", dense, mc["lr"]), Variant("pixelfly", sparse, mc["lr"])]
        # Alternating steps on the same batches: a burst of load on the machine hits both alike.
        for s, (x, y) in enumerate(batches):
            for v in main:
                v.step(loss_fn, x, y)
            if (s + 1) % 10 == 0 or s + 1 == steps:
                log(f"  step {s + 1}/{steps}: " + " | ".join(f"{v.name} loss {v.losses[-1]:.3f} median {v.step_ms():.0f} ms" for v in main))
        extra = [Variant("project_dense", on_our_gemm(copy.deepcopy(main[0].model)), 0.0)]
        if cpu_has_bf16():
            extra.append(Variant("torch_bf16", copy.deepcopy(main[0].model).to(torch.bfloat16), 0.0, "bf16"))
            # The same Pixelfly model in bf16: the comparison that counts where PyTorch has bf16 kernels.
            extra.append(Variant("pixelfly_bf16", copy.deepcopy(main[1].model).to(torch.bfloat16), 0.0, "bf16"))
            # Mixed precision, as the runner and most training loops use it: fp32 weights, bf16 products.
            for name, model in (("torch_autocast", main[0].model), ("pixelfly_autocast", main[1].model)):
                model = copy.deepcopy(model)
                pt.autocast_norms(model)
                extra.append(Variant(name, model, 0.0, "autocast"))
        # Timing only (lr 0 keeps the trained weights): these variants compute the same model, also
        # in alternating steps.
        for x, y in batches[:timing_steps]:
            for v in extra:
                v.step(loss_fn, x, y)
        for v in extra:
            log(f"  {v.name}: median {v.step_ms():.0f} ms over {timing_steps} steps")
        for v in main + extra:
            trained = v in main  # the timing-only variants hold the dense model's weights: no loss of their own
            row = {"kind": "step", "model": mc["name"], "variant": v.name, "precision": v.precision,
                   "threads": torch.get_num_threads(), "step_ms": v.step_ms(), "steps": len(v.times),
                   "loss": v.held_out_loss(loss_fn, held_out) if trained else None,
                   "train_loss": v.losses[-1] if trained else None,
                   "params": params.get(v.name, params["torch_linear"]), "batch": mc["batch"], "data": data.source}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main():
    cfg = json.loads(sys.argv[1])
    torch.set_num_threads(cfg["threads"])
    log(f"torch {torch.__version__}, {torch.get_num_threads()} threads, pixelfly_torch {pt.backend()}")
    if not pt.backend().startswith("native"):
        raise SystemExit(f"pixelfly_torch is not on its kernels here: {pt.backend()}")
    if cfg.get("layers"):
        layer_rows(cfg)
    if cfg.get("models"):
        step_rows(cfg)


if __name__ == "__main__":
    main()

"""PixelflyLinear as a module: checkpoints, dtypes, the masked-dense fallback and its warning,
from_dense."""
import copy
import io
import os
import subprocess
import sys
import tempfile
import shutil
from pathlib import Path

import torch
import torch.nn as nn

import pixelfly_torch as pt
from support import Case, REPO, make_layer, native_or_skip, reference, run_layer

PACKAGE = Path(pt.__file__).resolve().parent


class Module(Case):
    def test_state_dict_keys_are_the_engines_tensor_names(self):
        layer = make_layer(64, 96, block=16, butterfly_size=4, n_factors=2, rank=4)
        self.assertEqual(sorted(layer.state_dict()), ["bias", "gate.bias", "gate.weight", "low_rank.lr_weight1",
                                                      "low_rank.lr_weight2", "sparse.weight"])
        self.assertEqual(sorted(make_layer(64, 96, block=16, butterfly_size=4, n_factors=2, bias=False).state_dict()),
                         ["sparse.weight"])

    def test_every_parameter_gets_a_gradient(self):
        layer = make_layer(64, 96, block=16, butterfly_size=4, n_factors=2, rank=4)
        layer(torch.randn(5, 64)).square().mean().backward()
        self.assertEqual([n for n, p in layer.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0], [])

    def test_torch_save_and_load_whole_models_and_state_dicts(self):
        model = nn.Sequential(make_layer(64, 96, block=16, butterfly_size=4, n_factors=2, rank=4), nn.GELU(),
                              make_layer(96, 64, block=32, butterfly_size=2, n_factors=1))
        x = torch.randn(7, 64)
        buf = io.BytesIO()
        torch.save(model, buf)
        buf.seek(0)
        loaded = torch.load(buf)
        self.assertTrue(torch.equal(loaded(x), model(x)))
        fresh = nn.Sequential(make_layer(64, 96, block=16, butterfly_size=4, n_factors=2, rank=4, seed=5), nn.GELU(),
                              make_layer(96, 64, block=32, butterfly_size=2, n_factors=1, seed=6))
        fresh.load_state_dict(model.state_dict())
        self.assertTrue(torch.equal(fresh(x), model(x)))
        self.assertTrue(torch.equal(copy.deepcopy(model)(x), model(x)))

    def test_to_other_dtypes_runs_masked_dense_and_stays_close(self):
        layer = make_layer(64, 96, block=16, butterfly_size=4, n_factors=2, rank=4)
        x, dy = torch.randn(9, 64), torch.randn(9, 96)
        want = reference(layer, x, dy)
        doubled = copy.deepcopy(layer).double()
        self.assertIn("masked-dense", pt.backend(dtype=torch.float64))
        self.assertSameResults(run_layer(doubled, x.double(), dy.double()), want, 1e-12, "float64")
        half = copy.deepcopy(layer).to(torch.bfloat16)
        self.assertEqual(half.sparse.weight.dtype, torch.bfloat16)
        self.assertEqual(half.index.dtype, torch.int32, "index tables keep their integer type")
        y = half(x.to(torch.bfloat16))
        self.assertClose(y.float(), want[0], 3e-2, "bfloat16 forward")

    def test_backend_names_the_path(self):
        if pt.extension.ops is None:
            self.assertTrue(pt.backend().startswith("masked-dense: "), pt.backend())
        else:
            self.assertRegex(pt.backend(), r"^native \((portable|avx2|avx512|avx512bf16|amx), \d+ threads\)$")


class FromDense(Case):
    def test_error_falls_as_the_rank_grows_and_the_layer_computes_s_plus_l(self):
        torch.manual_seed(3)
        dense = nn.Linear(96, 160)
        x = torch.randn(11, 96)
        errors = []
        for rank in (0, 4, 16, 48, 96):
            layer = pt.PixelflyLinear.from_dense(dense, {"block": 16, "butterflySize": 4, "nFactors": 1, "rank": rank})
            errors.append(layer.init_error)
            # The layer computes exactly the approximation the error measures.
            with torch.no_grad():
                y, want = layer(x), dense(x)
            out_err = float((y - want).norm() / (want - dense.bias).norm())
            self.assertLess(abs(out_err - layer.init_error), 0.35 * layer.init_error + 1e-4,
                            f"rank {rank}: output error {out_err:.4f} vs weight error {layer.init_error:.4f}")
        self.assertEqual(errors, sorted(errors, reverse=True), f"errors by rank: {errors}")
        self.assertGreater(errors[0], 0.3)
        self.assertLess(errors[-1], 1e-5, "a full-rank residual reproduces the dense layer")

    def test_kept_blocks_are_the_dense_weights(self):
        dense = nn.Linear(64, 64, bias=False)
        layer = pt.PixelflyLinear.from_dense(dense, {"block": 16, "butterfly_size": 4, "n_factors": 2, "rank": 0})
        mask = layer.layout.bool().repeat_interleave(16, 0).repeat_interleave(16, 1)
        self.assertTrue(torch.equal(layer.dense_weight().detach(), dense.weight.detach() * mask))
        self.assertIsNone(layer.bias)

    def test_hugging_face_conv1d_and_pointwise_convolutions(self):
        class Conv1D(nn.Module):  # transformers.pytorch_utils.Conv1D: weight [nx, nf]
            def __init__(self, nf, nx):
                super().__init__()
                self.nf = nf
                self.weight = nn.Parameter(torch.randn(nx, nf) * 0.02)
                self.bias = nn.Parameter(torch.randn(nf) * 0.02)

            def forward(self, x):
                return torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight).view(*x.shape[:-1], self.nf)

        conv1d = Conv1D(96, 64)
        x = torch.randn(2, 5, 64)
        layer = pt.PixelflyLinear.from_dense(conv1d, {"block": 16, "butterflySize": 2, "nFactors": 1, "rank": 64})
        self.assertLess(layer.init_error, 1e-5)
        self.assertClose(layer(x).detach(), conv1d(x).detach(), 1e-4, "Conv1D at full rank")
        conv = nn.Conv2d(64, 32, kernel_size=1)
        img = torch.randn(2, 64, 3, 4)
        pw = pt.PixelflyPointwiseConv.from_dense(conv, {"block": 16, "butterflySize": 2, "nFactors": 1, "rank": 32})
        self.assertClose(pw(img).detach(), conv(img).detach(), 1e-4, "1x1 Conv2d at full rank")


FALLBACK_SCRIPT = r"""
import warnings, json, sys, torch
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import pixelfly_torch as pt
    torch.manual_seed(0)
    a = pt.PixelflyLinear(64, 96, block=16, butterfly_size=4, n_factors=2, rank=4)
    b = pt.PixelflyLinear(96, 64, block=16, butterfly_size=4, n_factors=2)
    x = torch.randn(5, 64)
    y = b(a(x))
    y.sum().backward()
print(json.dumps({"backend": pt.backend(), "warnings": [str(w.message) for w in caught if w.category is pt.PixelflyFallbackWarning],
                  "y": y.detach().flatten().tolist()}))
"""


def run_python(script, pythonpath, **env):
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(pythonpath), **env})
    if r.returncode != 0:
        raise AssertionError(f"python exited {r.returncode}: {r.stderr[-2000:]}")
    return __import__("json").loads(r.stdout.strip().splitlines()[-1])


class Fallback(Case):
    def test_without_the_extension_one_warning_says_why_and_how_to_fix_it(self):
        with tempfile.TemporaryDirectory() as tmp:
            copy_dir = Path(tmp) / "pixelfly_torch"
            shutil.copytree(PACKAGE, copy_dir, ignore=shutil.ignore_patterns("_C.so", "__pycache__"))
            out = run_python(FALLBACK_SCRIPT, tmp)
        self.assertTrue(out["backend"].startswith("masked-dense: "), out["backend"])
        self.assertEqual(len(out["warnings"]), 1, out["warnings"])
        self.assertIn("was not built", out["warnings"][0])
        self.assertIn("pixelfly torch install --python", out["warnings"][0])

    def test_disabled_extension_gives_the_native_results(self):
        native_or_skip(self)
        disabled = run_python(FALLBACK_SCRIPT, PACKAGE.parent, PIXELFLY_TORCH_NATIVE="0")
        native = run_python(FALLBACK_SCRIPT, PACKAGE.parent)
        self.assertIn("disabled by PIXELFLY_TORCH_NATIVE=0", disabled["backend"])
        self.assertEqual(len(disabled["warnings"]), 1)
        self.assertEqual(native["warnings"], [])
        self.assertClose(torch.tensor(native["y"]), torch.tensor(disabled["y"]), 2e-5, "native vs masked-dense")

    def test_auto_precision_without_the_extension_names_the_extension(self):
        # 'auto' trains fp32 on masked dense; the reason is the missing extension, not the CPU.
        script = ("import json; from pixelfly_torch import runner\n"
                  "def probe(): raise AssertionError('the probe must not run without the extension')\n"
                  "print(json.dumps(runner.resolve_precision('auto', probe)))")
        precision, note = run_python(script, PACKAGE.parent, PIXELFLY_TORCH_NATIVE="0")
        self.assertEqual(precision, "fp32")
        self.assertIn("pixelfly_torch runs masked-dense", note)
        self.assertIn("disabled by PIXELFLY_TORCH_NATIVE=0", note)

"""Shared by the pixelfly_torch tests: the float64 reference of a PixelflyLinear, random layers, and the
skip that says why the native operators are not there."""
import json
import unittest
from pathlib import Path

import torch

import pixelfly_torch as pt
from pixelfly_torch import extension
from pixelfly_torch.functional import masked_dense_linear, masked_dense_weight

REPO = Path(__file__).resolve().parents[2]


def native_or_skip(case):
    """Native tests run wherever the extension was built; the build records why it was not."""
    if extension.ops is not None:
        return
    info_file = Path(pt.__file__).with_name("_build_info.json")
    info = json.loads(info_file.read_text()) if info_file.exists() else {}
    if info.get("native") is False:
        case.skipTest(f"SKIPPED LOUDLY: the extension was not built here: {info.get('reason')}")
    case.fail(f"the extension should be in use but is not: {extension.native_reason()}")


def make_layer(in_f, out_f, *, block, butterfly_size, n_factors, rank=0, bias=True, global_size=0, shuffle=False, seed=0):
    torch.manual_seed(seed)
    layer = pt.PixelflyLinear(in_f, out_f, bias=bias, block=block, butterfly_size=butterfly_size, n_factors=n_factors,
                              rank=rank, global_size=global_size, shuffle=shuffle)
    with torch.no_grad():  # a gate that is not ~0.5 everywhere, so both branches and its gradient matter
        if rank > 0:
            layer.gate.weight.mul_(4.0)
    return layer


def low_rank_params(layer):
    if layer.rank == 0:
        return [None] * 4
    return [layer.low_rank.lr_weight1, layer.low_rank.lr_weight2, layer.gate.weight, layer.gate.bias]


def run_layer(layer, x, dy, fn=None):
    """(y, dx, {param name: grad}) of one forward/backward; fn(layer, x) computes y (default: the layer)."""
    x = x.detach().clone().requires_grad_()
    layer.zero_grad(set_to_none=True)
    y = (fn or (lambda m, v: m(v)))(layer, x)
    y.backward(dy)
    return y.detach(), x.grad, {n: p.grad.clone() for n, p in layer.named_parameters()}


def reference(layer, x, dy):
    """The same layer in float64 on a masked dense weight, gradients by autograd."""
    params = {n: p.detach().double().requires_grad_() for n, p in layer.named_parameters()}
    xd = x.detach().double().requires_grad_()
    w = masked_dense_weight(params["sparse.weight"], layer.kept_blocks, layer.block_rows, layer.block_cols,
                            layer.out_features, layer.in_features)
    low = [params.get(k) for k in ("low_rank.lr_weight1", "low_rank.lr_weight2", "gate.weight", "gate.bias")]
    y = masked_dense_linear(xd, w, params.get("bias"), *(low if layer.rank > 0 else [None] * 4))
    y.backward(dy.double())
    return y.detach(), xd.grad, {n: p.grad for n, p in params.items()}


def rel_err(a, b):
    scale = max(float(b.abs().max()), 1e-6)
    return float((a.double() - b.double()).abs().max()) / scale


class Case(unittest.TestCase):
    def assertClose(self, got, want, tol, what):
        err = rel_err(got, want)
        self.assertLessEqual(err, tol, f"{what}: max |got − want| / max|want| = {err:.2e} > {tol:.0e}")

    def assertSameResults(self, a, b, tol, what):
        ya, dxa, ga = a
        yb, dxb, gb = b
        self.assertClose(ya, yb, tol, f"{what}: y")
        self.assertClose(dxa, dxb, tol, f"{what}: dx")
        self.assertEqual(sorted(ga), sorted(gb), f"{what}: the same parameters have gradients")
        for n in ga:
            self.assertClose(ga[n], gb[n], tol, f"{what}: d{n}")

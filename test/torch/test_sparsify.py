"""sparsify(model, plan): which modules a plan replaces, the plan formats it reads, and the errors that
name the module and the mismatch. (The corpus models with their own analysis plans: test_corpus.py.)"""
import json
import tempfile
from pathlib import Path

import torch
import torch.nn as nn

import pixelfly_torch as pt
from support import Case

CONFIG = {"block": 16, "butterflySize": 4, "nFactors": 2, "globalSize": 0, "shuffle": False, "rank": 4}


class Conv1D(nn.Module):  # transformers.pytorch_utils.Conv1D: weight [nx, nf]
    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.02)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight).view(*x.shape[:-1], self.nf)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = Conv1D(192, 64)       # HF style: Conv1D(nf=out, nx=in)
        self.mlp = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 64))

    def forward(self, x):
        return x + self.mlp(self.attn(x)[..., :64])


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([Block() for _ in range(3)])
        self.mix = nn.Conv2d(64, 32, kernel_size=1)
        self.stem = nn.Conv2d(3, 64, kernel_size=3)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        img = x.transpose(1, 2).reshape(x.shape[0], 64, 4, 4)
        return self.head(self.mix(img).mean((2, 3)))


def layer(name, i, o, sparsify=True, config=CONFIG):
    return {"name": name, "in": i, "out": o, "sparsify": sparsify, **({"config": config} if sparsify else {})}


PLAN = {"layers": [layer("blocks.*.attn", 64, 192), layer("blocks.*.mlp.0", 64, 128), layer("blocks.*.mlp.2", 128, 64),
                   layer("mix", 64, 32), layer("head", 32, 10, sparsify=False)]}


class Sparsify(Case):
    def test_replaces_linear_conv1d_and_pointwise_conv_modules_at_every_index(self):
        torch.manual_seed(0)
        net = Net()
        x = torch.randn(2, 16, 64)
        report = pt.sparsify(net, PLAN)
        names = [r.name for r in report]
        self.assertEqual(names, [f"blocks.{i}.attn" for i in range(3)] + [f"blocks.{i}.mlp.0" for i in range(3)]
                         + [f"blocks.{i}.mlp.2" for i in range(3)] + ["mix"])
        self.assertEqual({r.kind for r in report}, {"Conv1D", "Linear", "Conv2d"})
        self.assertIsInstance(net.blocks[1].attn, pt.PixelflyLinear)
        self.assertIsInstance(net.mix, pt.PixelflyPointwiseConv)
        self.assertIsInstance(net.head, nn.Linear)
        for r in report:
            self.assertEqual(r.config["rank"], 4)
            if r.name.startswith("blocks."):  # the 64→32 mixer is too small to save parameters at this config
                self.assertLess(r.params_after, r.params_before, r.name)
        y = net(x)
        y.sum().backward()
        self.assertEqual(tuple(y.shape), (2, 10))
        unused = [n for n, p in net.named_parameters() if p.grad is None]
        self.assertEqual(unused, ["stem.weight", "stem.bias"], "only the stem (there for the error cases) is unused")

    def test_from_dense_keeps_a_pretrained_models_function(self):
        torch.manual_seed(0)
        net = Net()
        x = torch.randn(2, 16, 64)
        full = {**CONFIG, "rank": 64}   # rank ≥ min(in, out): the residual is kept exactly
        plan = {"layers": [layer("blocks.*.mlp.0", 64, 128, config=full), layer("blocks.*.mlp.2", 128, 64, config=full)]}
        with torch.no_grad():
            want = net(x)
        report = pt.sparsify(net, plan, from_dense=True)
        self.assertEqual(len(report), 6)
        self.assertTrue(all(r.init_error is not None and r.init_error < 1e-5 for r in report), [r.init_error for r in report])
        with torch.no_grad():
            self.assertClose(net(x), want, 1e-4, "the sparsified pretrained model")
        self.assertIn("init error", str(report[0]))

    def test_reads_analysis_json_exported_plans_and_files(self):
        # pixelfly analyze --json: decisions per layer, "plan" is the summary without layers; a layer
        # the model never builds (count 0) has no decision.
        analysis = {"file": "m.py", "layers": [{"name": l["name"], "in": l["in"], "out": l["out"],
                                                "decision": {k: v for k, v in l.items() if k in ("sparsify", "config")}}
                                               for l in PLAN["layers"]]
                    + [{"name": "Block.unused", "in": "d", "out": "d", "count": 0, "decision": None}],
                    "plan": {"summary": "4 of 5 layers sparsified", "estSpeedup": 1.5}}
        exported = {"model": "Net", "plannedBy": "daemon", "plan": PLAN}
        want = pt.plan_layers(PLAN)
        self.assertEqual(len(want), 4)
        self.assertEqual(pt.plan_layers(analysis), want)
        self.assertEqual(pt.plan_layers(exported), want)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "net.pixelfly-plan.json"
            path.write_text(json.dumps(exported))
            self.assertEqual(pt.plan_layers(path), want)
            self.assertEqual(pt.plan_layers(str(path)), want)

    def test_mismatches_name_the_module_and_replace_nothing(self):
        cases = [
            ({"layers": [layer("blocks.*.attention", 64, 192)]}, "blocks.*.attention: no module of the model matches"),
            ({"layers": [layer("blocks.*.mlp.0", 64, 256)]}, "blocks.0.mlp.0: the plan has 64→256, the module is 64→128"),
            ({"layers": [layer("stem", 27, 64)]}, "stem: Conv2d with kernel (3, 3)"),
            ({"layers": [layer("blocks.*.mlp.1", 64, 64)]}, "blocks.0.mlp.1: GELU is not a linear layer"),
            ({"layers": [layer("blocks.*.mlp.0", 64, 128, config={**CONFIG, "butterflySize": 3})]}, "butterfly_size: must be a power of two"),
            ({"layers": [layer("head", 32, 10, config={**CONFIG, "blockSize": 16})]}, "blockSize: is not a Pixelfly config key"),
            ({"layers": [{"name": "head", "in": 32, "out": "10", "sparsify": True, "config": CONFIG}]}, "\"out\" must be a positive integer"),
            ({"nope": 1}, "not a Pixelfly plan"),
            ("/nonexistent/plan.json", "cannot read the plan"),
        ]
        for plan, message in cases:
            net = Net()
            before = {n: type(m).__name__ for n, m in net.named_modules()}
            if isinstance(plan, dict) and "layers" in plan:  # a valid layer first: it must not be replaced either
                plan = {"layers": PLAN["layers"][:1] + plan["layers"]}
            with self.assertRaises(pt.PixelflyPlanError) as cm:
                pt.sparsify(net, plan)
            self.assertIn(message, str(cm.exception))
            self.assertEqual({n: type(m).__name__ for n, m in net.named_modules()}, before, f"{message}: nothing replaced")

    def test_already_sparse_layers_are_left_alone(self):
        net = Net()
        first = pt.sparsify(net, PLAN)
        again = pt.sparsify(net, PLAN)
        self.assertEqual(len(first), 10)
        self.assertEqual(again, [])

    def test_replaced_layers_keep_device_dtype_bias_and_mode(self):
        net = nn.Sequential(nn.Linear(64, 128, bias=False).double().eval())
        pt.sparsify(net, {"layers": [layer("0", 64, 128)]})
        self.assertIsNone(net[0].bias)
        self.assertEqual(net[0].sparse.weight.dtype, torch.float64)
        self.assertFalse(net[0].training)

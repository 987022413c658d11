"""A model sized on the meta device has the figures of the same model built for real: parameter
counts (tied weights once), and the bytes a forward keeps for the backward, Pixelfly layers and
attention included; and sizing allocates nothing, however big the model."""
import copy
import tempfile
import textwrap
from pathlib import Path

import torch
import torch.nn as nn

import pixelfly_torch as pt
from pixelfly_torch import runner, sizing
from support import Case, native_or_skip


class Block(nn.Module):
    """Pixelfly linears both ways (in < out, in > out), low-rank and not, and Pixelfly attention."""

    def __init__(self, dim=128, T=64, features=0):
        super().__init__()
        self.qkv = pt.PixelflyLinear(dim, 3 * dim, block=16, butterfly_size=4, n_factors=2, rank=8)
        self.attn = pt.PixelflyAttention(32, T, block=16, causal=True, features=features)
        self.up = pt.PixelflyLinear(dim, 4 * dim, block=32, butterfly_size=4, n_factors=2, rank=0)
        self.down = pt.PixelflyLinear(4 * dim, dim, block=32, butterfly_size=4, n_factors=2, rank=16)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, 4, d // 4).permute(2, 0, 3, 1, 4)
        x = x + self.attn(q, k, v).transpose(1, 2).reshape(b, t, d)
        return x + self.down(torch.nn.functional.gelu(self.up(x)))


def saved(model, x):
    return sizing.saved_bytes(model, lambda: model(x).sum())


class Sizing(Case):
    def test_pixelfly_layers_keep_the_same_bytes_on_the_meta_device(self):
        native_or_skip(self)
        for features in (0, 8):
            torch.manual_seed(0)
            real = Block(features=features)
            meta = sizing.to_meta(copy.deepcopy(real))
            self.assertTrue(all(p.is_meta for p in meta.parameters()))
            x = torch.randn(2, 64, 128)
            with sizing.on_meta():
                got = saved(meta, x.to("meta"))
            self.assertEqual(got, saved(real, x), f"features={features}: saved bytes, output bytes (meta vs CPU)")
            self.assertGreater(got[0], 0)

    def test_building_on_the_meta_device_allocates_nothing_and_small_tensors_stay_readable(self):
        class Huge(nn.Module):
            def __init__(self):
                super().__init__()
                rates = [r.item() for r in torch.linspace(0, 0.1, 4)]  # timm's drop-path schedule reads values back
                self.rates = rates
                self.body = nn.Sequential(*(nn.Linear(32768, 32768) for _ in range(4)))  # 4 × 4 GiB of fp32
                self.register_buffer("mask", torch.tril(torch.ones(8192, 8192)))

        before = runner._memory()[0]
        with sizing.on_meta(keep_small=True):
            model = Huge()
        sizing.to_meta(model)
        grown = runner._memory()[0] - before
        self.assertEqual(sum(p.numel() for p in model.parameters()), 4 * (32768 * 32768 + 32768))
        self.assertTrue(all(t.is_meta for t in (*model.parameters(), *model.buffers())))
        self.assertAlmostEqual(model.rates[-1], 0.1, places=6)
        self.assertLess(grown, 64 * 2**20, f"building a 16 GiB model on the meta device grew this process by {grown} bytes")

    def test_tied_weights_stay_one_tensor(self):
        class Tied(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = nn.Embedding(96, 64)  # small enough to be made on the CPU first
                self.head = nn.Linear(64, 96, bias=False)
                self.head.weight = self.emb.weight

        with sizing.on_meta(keep_small=True):
            model = Tied()
        sizing.to_meta(model)
        self.assertIs(model.head.weight, model.emb.weight)
        self.assertEqual(sum(p.numel() for p in model.parameters()), 96 * 64)


MODEL = textwrap.dedent('''
    import torch, torch.nn as nn

    class Net(nn.Module):
        def __init__(self, vocab_size=96, dim=128, heads=4, depth=2, block_size=32):
            super().__init__()
            self.emb = nn.Embedding(vocab_size, dim)
            self.pos = nn.Parameter(torch.zeros(1, block_size, dim))
            self.attn = nn.ModuleList(nn.MultiheadAttention(dim, heads, batch_first=True) for _ in range(depth))
            self.mlp = nn.ModuleList(nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)) for _ in range(depth))
            self.head = nn.Linear(dim, vocab_size, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, idx):
            x = self.emb(idx) + self.pos[:, : idx.shape[1]]
            for a, m in zip(self.attn, self.mlp):
                x = x + a(x, x, x, need_weights=False)[0]
                x = x + m(x)
            return self.head(x)

    class ReadsBack(Net):
        def forward(self, idx):
            if float(idx.float().mean()) < 0:  # a value read back: cannot run on the meta device
                return None
            return super().forward(idx)
''')


class RunnerSize(Case):
    def job(self, name, plan):
        folder = tempfile.mkdtemp()
        file = Path(folder, "model.py")
        file.write_text(MODEL)
        return {"model": {"file": str(file), "name": name, "settings": {"block_size": 32}, "paths": []}, "plan": plan,
                "compare": True, "hyper": {"threads": 1, "seed": 0, "batchSize": 4}, "dataset": {"kind": "synthetic"}}

    PLAN = {"layers": [{"name": f"mlp.*.{i}", "in": a, "out": b, "sparsify": True,
                        "config": {"block": 32, "butterflySize": 4, "nFactors": 2, "rank": 4}}
                       for i, a, b in ((0, 128, 512), (2, 512, 128))]
                     + [{"name": "attn.*.in_proj", "in": 128, "out": 384, "sparsify": True,
                         "config": {"block": 32, "butterflySize": 4, "nFactors": 2, "rank": 0}}]}

    def test_size_answers_what_inspect_measures_on_the_built_model(self):
        native_or_skip(self)
        req = self.job("Net", self.PLAN)
        job = runner.Job()
        sized = job.size(req)
        self.assertTrue(sized.pop("sized"), sized)
        built = job.inspect(req)
        for key in ("params", "inputs", "activationBytesPerSample", "baseBytes"):
            self.assertEqual(sized[key], built[key], key)
        self.assertEqual(built["replaced"], 6)

    def test_a_model_that_reads_values_back_is_not_sized_and_says_why(self):
        req = self.job("ReadsBack", self.PLAN)
        sized = runner.Job().size(req)
        self.assertFalse(sized["sized"])
        self.assertRegex(sized["reason"], r"^its forward on the meta device raised \w+")

    def test_the_jobs_own_errors_are_raised_as_inspect_raises_them(self):
        req = self.job("Missing", self.PLAN)
        with self.assertRaisesRegex(runner.Rejected, r"defines no 'Missing' \(its models: Net, ReadsBack\)"):
            runner.Job().size(req)
        wrong = copy.deepcopy(self.PLAN)
        wrong["layers"][0]["out"] = 640
        with self.assertRaisesRegex(runner.Rejected, r"the plan does not fit Net: mlp.0.0: the plan has 128→640, the module is 128→512"):
            runner.Job().size(self.job("Net", wrong))

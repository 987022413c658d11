"""pixelfly_attention and PixelflyAttention: the native attention kernels against the float64 masked-softmax
reference at many T, block, head and head-dim sizes (every ISA path this CPU has), gradients including
the one on lse, gradcheck, the sparse + low-rank attention (A1) against its T×T definition, layouts
against the core's rules, errors, and a small causal model that trains with the module."""
import copy
import itertools
import math

import torch
import torch.nn as nn

import pixelfly_torch as pt
from pixelfly_torch import extension
from pixelfly_torch.attention_core import attention_layout, attention_reference
from support import Case, native_or_skip

TOL = 2e-4


def butterfly_for(T, block):
    """The largest power-of-two butterfly that fits T's blocks and divides the padded context."""
    n = -(-T // block)
    s = 2
    while s * 2 <= n and (n * block) % (s * 2) == 0:
        s *= 2
    return s


def layouts(T, block, causal):
    """Dense, a full butterfly, a one-factor butterfly and one with global tokens."""
    s = butterfly_for(T, block)
    out = [("dense", attention_layout(T, causal, block)),
           (f"butterfly {s}", attention_layout(T, causal, block, s)),
           (f"butterfly {s}/1", attention_layout(T, causal, block, s, 1))]
    if T > block:
        out.append((f"butterfly {s}/1 global {block + 3}", attention_layout(T, causal, block, s, 1, global_size=block + 3)))
    return out


def inputs(B, H, T, D, seed, strided=False):
    g = torch.Generator().manual_seed(seed)
    if strided:  # [B, T, H, D] read in place through a transpose, as a model's projections give them
        q, k, v = (torch.randn(B, T, H, D, generator=g).transpose(1, 2) for _ in range(3))
    else:
        q, k, v = (torch.randn(B, H, T, D, generator=g) for _ in range(3))
    do, dl = torch.randn(B, H, T, D, generator=g), torch.randn(B, H, T, generator=g)
    return q, k, v, do, dl


def run(fn, q, k, v, do, dl, dtype):
    """(o, lse, dq, dk, dv) of fn with the loss o·do + lse·dl, so the gradient on lse is exercised."""
    q, k, v = (t.detach().to(dtype).requires_grad_() for t in (q, k, v))
    o, lse = fn(q, k, v)
    ((o * do.to(dtype)).sum() + (lse * dl.to(dtype)).sum()).backward()
    return o.detach(), lse.detach(), q.grad, k.grad, v.grad


class AttentionKernels(Case):
    def setUp(self):
        native_or_skip(self)
        self.best = extension.ops.isa()

    def tearDown(self):
        if extension.ops is not None:
            extension.ops.force_isa(self.best)

    def check(self, q, k, v, do, dl, layout, what):
        got = run(lambda a, b, c: pt.pixelfly_attention(a, b, c, layout, return_lse=True), q, k, v, do, dl, torch.float32)
        want = run(lambda a, b, c: attention_reference(a, b, c, layout), q, k, v, do, dl, torch.float64)
        for name, g, w in zip(("o", "lse", "dq", "dk", "dv"), got, want):
            self.assertEqual(g.dtype, torch.float32, f"{what}: {name} dtype")
            self.assertClose(g, w, TOL, f"{what}: {name}")

    def test_matches_reference_at_many_sizes(self):
        n = 0
        for T, block, causal in itertools.product((1, 5, 64, 100, 130, 257), (16, 32, 64, 128), (False, True)):
            if T > 130 and block == 16 and not causal:
                continue  # the same code paths as the causal run, at half the time
            for (name, layout), (B, H, D) in zip(layouts(T, block, causal), itertools.cycle(((1, 1, 64), (2, 3, 20), (1, 2, 8), (2, 1, 72)))):
                q, k, v, do, dl = inputs(B, H, T, D, seed=n, strided=n % 2 == 1)
                self.check(q, k, v, do, dl, layout, f"T {T} block {block} causal {causal} {name} B{B} H{H} D{D}")
                n += 1
        self.assertGreater(n, 150)

    def test_every_isa_path_this_cpu_has(self):
        paths = extension.ops.supported_isas()
        self.assertIn("portable", paths)
        for isa in paths:
            extension.ops.force_isa(isa)
            for T, block, causal in ((77, 16, True), (200, 64, False), (256, 32, True)):
                for name, layout in layouts(T, block, causal)[1:]:
                    q, k, v, do, dl = inputs(2, 2, T, 24, seed=T)
                    self.check(q, k, v, do, dl, layout, f"{isa}: T {T} block {block} causal {causal} {name}")

    def test_gradcheck(self):
        for causal in (False, True):
            layout = attention_layout(40, causal, 16, 2, 1, global_size=3)
            g = torch.Generator().manual_seed(3)
            q, k, v = (torch.randn(1, 2, 40, 8, generator=g, requires_grad=True) for _ in range(3))
            f = lambda a, b, c: pt.pixelfly_attention(a, b, c, layout, return_lse=True)  # noqa: E731
            self.assertTrue(torch.autograd.gradcheck(f, (q, k, v), eps=1e-2, atol=3e-3, rtol=3e-3, nondet_tol=0.0), f"causal {causal}")

    def test_results_do_not_depend_on_the_thread_count(self):
        threads = torch.get_num_threads()
        layout = attention_layout(300, True, 32, 8)
        q, k, v, do, dl = inputs(2, 3, 300, 40, seed=5)
        try:
            runs = []
            for n in (1, 2, 3):
                torch.set_num_threads(n)
                runs.append(run(lambda a, b, c: pt.pixelfly_attention(a, b, c, layout, return_lse=True), q, k, v, do, dl, torch.float32))
            for n, r in zip((2, 3), runs[1:]):
                for name, a, b in zip(("o", "lse", "dq", "dk", "dv"), runs[0], r):
                    self.assertTrue(torch.equal(a, b), f"{name} differs between 1 and {n} threads")
        finally:
            torch.set_num_threads(threads)

    def test_bfloat16_runs_the_kernels_in_float32(self):
        layout = attention_layout(96, True, 32, 2)
        q, k, v, do, _ = inputs(1, 2, 96, 16, seed=7)
        want = pt.pixelfly_attention(q, k, v, layout)
        got = pt.pixelfly_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), layout)
        self.assertEqual(got.dtype, torch.bfloat16)
        self.assertClose(got.float(), want, 2e-2, "bf16 output")

    def test_errors_name_the_argument(self):
        layout = attention_layout(64, False, 16, 4)
        q, k, v, _, _ = inputs(1, 1, 64, 8, seed=0)
        with self.assertRaisesRegex(ValueError, "built for T = 64"):
            pt.pixelfly_attention(q[:, :, :32], k[:, :, :32], v[:, :, :32], layout)
        with self.assertRaisesRegex(ValueError, "causal=True disagrees"):
            pt.pixelfly_attention(q, k, v, layout, causal=True)
        with self.assertRaisesRegex(ValueError, "q, k, v"):
            pt.pixelfly_attention(q, k[:, :, :, :4], v, layout)
        ops = extension.ops
        with self.assertRaisesRegex(RuntimeError, "block: the attention kernels implement"):
            ops.attention_forward(q, k, v, layout.index, 48, False, 0.3)
        with self.assertRaisesRegex(RuntimeError, "features must be contiguous"):
            ops.attention_forward(q.transpose(2, 3), k, v, layout.index, 16, False, 0.3)
        with self.assertRaisesRegex(RuntimeError, "above the diagonal"):
            ops.attention_forward(q, k, v, layout.index, 16, True, 0.3)  # a non-causal layout used causally
        with self.assertRaisesRegex(RuntimeError, "index"):
            ops.attention_forward(q, k, v, layout.index[:-2].contiguous(), 16, False, 0.3)
        with self.assertRaisesRegex(RuntimeError, "dlse"):
            o, lse = ops.attention_forward(q, k, v, layout.index, 16, False, 0.3)
            ops.attention_backward(q, k, v, o, lse, o, lse[:, :, :5].contiguous(), layout.index, 16, False, 0.3)


def full_scatterbrain(q, k, v, layout, features, scale):
    """(A1) by its definition on the T×T grid, float64: exact exp(scores) on the kept (allowed) pairs,
    φ(q)·φ(k) on the allowed pairs the layout drops, one normaliser."""
    T, b = q.shape[-2], layout.block
    kept = layout.mask.repeat_interleave(b, 0).repeat_interleave(b, 1)[:T, :T]
    allowed = torch.ones(T, T, dtype=torch.bool)
    if layout.causal:
        allowed = allowed.tril()
    kept = kept & allowed
    qf, qs = features.queries(q)
    kf, ks = features.keys(k)
    approx = torch.matmul(qf, kf.transpose(-1, -2)) * torch.exp(qs + ks)
    exact = torch.exp(torch.matmul(q, k.transpose(-1, -2)) * scale)
    weights = torch.where(kept, exact, torch.where(allowed, approx, torch.zeros_like(approx)))
    return torch.matmul(weights / weights.sum(-1, keepdim=True), v)


class LowRankAttention(Case):
    def test_matches_its_definition_and_keeps_gradients(self):
        torch.manual_seed(0)
        for T, block, causal, gs in ((50, 16, False, 0), (96, 16, True, 0), (130, 32, True, 5), (64, 16, False, 16)):
            layout = attention_layout(T, causal, block, butterfly_for(T, block), 1, global_size=gs)
            feats = pt.PerformerFeatures(8, 16).double()
            q, k, v = (0.5 * torch.randn(2, 2, T, 8, dtype=torch.float64) for _ in range(3))
            got = pt.pixelfly_attention(q, k, v, layout, features=feats)
            self.assertClose(got, full_scatterbrain(q, k, v, layout, feats, 8 ** -0.5), 1e-10, f"T {T} block {block} causal {causal}")
        feats = pt.PerformerFeatures(4, 8).double()
        for causal in (False, True):
            small = attention_layout(40, causal, 16, 2, 1)
            q, k, v = (0.5 * torch.randn(1, 1, 40, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
            f = lambda a, b, c: pt.pixelfly_attention(a, b, c, small, features=feats)  # noqa: E731
            self.assertTrue(torch.autograd.gradcheck(f, (q, k, v)), f"gradcheck causal {causal}")

    def test_native_sparse_part_with_low_rank_matches_float64(self):
        # The mixing weights depend on the sparse part's lse: this is where the kernels' dlse path matters.
        native_or_skip(self)
        torch.manual_seed(1)
        feats = pt.PerformerFeatures(16, 32)
        feats64 = copy.deepcopy(feats).double()
        for T, causal in ((200, True), (150, False)):
            layout = attention_layout(T, causal, 16, 8, 2)
            q, k, v, do, _ = inputs(2, 2, T, 16, seed=T)
            results = []
            for dtype, fn in ((torch.float32, lambda a, b, c: pt.pixelfly_attention(a, b, c, layout, features=feats)),
                              (torch.float64, lambda a, b, c: full_scatterbrain(a, b, c, layout, feats64, 16 ** -0.5))):
                a, b, c = (t.detach().to(dtype).requires_grad_() for t in (q, k, v))
                o = fn(a, b, c)
                (o * do.to(dtype)).sum().backward()
                results.append((o.detach(), a.grad, b.grad, c.grad))
            for name, g, w in zip(("o", "dq", "dk", "dv"), *results):
                self.assertEqual(g.dtype, torch.float32)
                self.assertClose(g, w, 5e-4, f"T {T} causal {causal}: {name}")

    def test_dense_layout_has_no_low_rank_part(self):
        layout = attention_layout(80, True, 16)
        q, k, v = (torch.randn(1, 2, 80, 8, dtype=torch.float64) for _ in range(3))
        feats = pt.PerformerFeatures(8, 8).double()
        self.assertClose(pt.pixelfly_attention(q, k, v, layout, features=feats), attention_reference(q, k, v, layout)[0], 1e-12,
                         "dense + low-rank")

    def test_low_rank_term_brings_the_output_closer_to_full_attention(self):
        # Diffuse attention (small scores) is where the dropped scores matter and the features estimate them well.
        g = torch.Generator().manual_seed(2)
        T, D = 512, 16
        q, k, v = (0.3 * torch.randn(1, 4, T, D, generator=g, dtype=torch.float64) for _ in range(3))
        v = v / 0.3
        layout = attention_layout(T, True, 16, 32, 1)
        full = attention_reference(q, k, v, attention_layout(T, True, 16))[0]
        sparse = pt.pixelfly_attention(q, k, v, layout)
        torch.manual_seed(4)
        mixed = pt.pixelfly_attention(q, k, v, layout, features=pt.PerformerFeatures(D, 256).double())
        err_sparse = float((sparse - full).norm() / full.norm())
        err_mixed = float((mixed - full).norm() / full.norm())
        self.assertLess(err_mixed, 0.5 * err_sparse, f"relative error vs full attention: sparse {err_sparse:.3f}, sparse + low-rank {err_mixed:.3f}")

    def test_features_estimate_the_softmax_kernel(self):
        torch.manual_seed(5)
        feats = pt.PerformerFeatures(16, 4096).double()
        q, k = (0.4 * torch.randn(32, 16, dtype=torch.float64) for _ in range(2))
        qf, qs = feats.queries(q)
        kf, ks = feats.keys(k)
        est = (qf @ kf.t()) * torch.exp(qs + ks)
        exact = torch.exp(q @ k.t() / 4)
        self.assertClose(est, exact, 0.1, "φ(q)·φ(k) vs exp(q·k/√d) with 4096 features")

    def test_feature_count_is_checked(self):
        with self.assertRaisesRegex(pt.PixelflyConfigError, "attention.features: must be an even integer"):
            pt.PerformerFeatures(8, 7)


class Layouts(Case):
    def test_core_rules(self):
        causal = attention_layout(256, True, 32, 8, 3)
        self.assertTrue(bool(causal.mask.diagonal().all()), "every query sees its own block")
        self.assertFalse(bool(causal.mask.triu(1).any()), "nothing above the diagonal when causal")
        dense = attention_layout(256, True, 32)
        self.assertEqual(dense.density, 1.0)
        self.assertEqual(causal.density, int(causal.mask.sum()) / (8 * 9 // 2))
        full = attention_layout(256, False, 32, 8, 3)
        self.assertTrue(torch.equal(full.mask, pt.flat_block_butterfly_layout(256, 256, 32, 8, 3)))
        self.assertTrue(torch.equal(causal.mask, full.mask.tril()))
        glob = attention_layout(256, False, 32, 8, 1, global_size=40)
        self.assertTrue(bool(glob.mask[:2].all()) and bool(glob.mask[:, :2].all()), "global tokens' blocks kept")

    def test_shorter_sequences_use_the_first_blocks(self):
        full = attention_layout(512, True, 64, 8, 3)
        short = attention_layout(200, True, 64, 8, 3, max_seq_length=512)
        self.assertTrue(torch.equal(short.mask, full.mask[:4, :4]))
        with self.assertRaisesRegex(pt.PixelflyConfigError, "attention.max_seq_length: 100 is below"):
            attention_layout(200, True, 64, 8, 3, max_seq_length=100)

    def test_errors(self):
        with self.assertRaisesRegex(pt.PixelflyConfigError, "attention.block: must be one of 16, 32, 64, 128"):
            attention_layout(64, False, 48, 2)
        with self.assertRaisesRegex(pt.PixelflyConfigError, "attention.butterfly_size: 32 does not divide the context 112"):
            attention_layout(100, False, 16, 32)  # 112 tokens padded


class Model(nn.Module):
    """A one-block causal transformer whose attention core is PixelflyAttention."""

    def __init__(self, vocab, dim, heads, context, **attention):
        super().__init__()
        self.heads = heads
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(0.02 * torch.randn(context, dim))
        self.qkv, self.proj, self.head = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim), nn.Linear(dim, vocab)
        self.attn = pt.PixelflyAttention(dim // heads, context, causal=True, **attention)

    def forward(self, idx):
        B, T = idx.shape
        x = self.embed(idx) + self.pos[:T]
        q, k, v = (t.view(B, T, self.heads, -1).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
        y = self.attn(q, k, v).transpose(1, 2).reshape(B, T, -1)
        return self.head(x + self.proj(y))


class Module(Case):
    def test_trains_a_causal_model(self):
        # Kernel correctness is tested above; this checks the module's plumbing (shapes, strides, the
        # parameters' gradients, a saved projection, shorter prompts) in a real training loop.
        torch.manual_seed(0)
        for features in (0, 16):
            model = Model(vocab=11, dim=32, heads=2, context=128, block=16, features=features)
            self.assertLess(model.attn.density, 0.75)
            opt = torch.optim.Adam(model.parameters(), lr=3e-3)
            seq = torch.arange(129) % 11  # a cycle: predictable only by attending back
            x, y = seq[:-1].repeat(4, 1), seq[1:].repeat(4, 1)
            losses = []
            for _ in range(60):
                loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss))
            self.assertLess(losses[-1], 0.5 * losses[0], f"features {features}: loss {losses[0]:.3f} → {losses[-1]:.3f}")
            self.assertTrue(math.isfinite(losses[-1]))
            with torch.no_grad():  # a shorter prompt runs on the first blocks of the same layout
                self.assertEqual(model(x[:, :50]).shape, (4, 50, 11))
            if features:
                self.assertIn("attn.feature_map.projection", model.state_dict(), "the projection is saved with the model")

    def test_defaults_and_repr(self):
        attn = pt.PixelflyAttention(64, 4096, causal=True)
        self.assertEqual(attn.config["butterfly_size"], 64)
        self.assertEqual(attn.config["n_factors"], 6)
        self.assertIn("density=", repr(attn))
        with self.assertRaisesRegex(pt.PixelflyConfigError, "attention.max_seq_length"):
            pt.PixelflyAttention(64, 0)

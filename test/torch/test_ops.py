"""The native operators (torch.ops.pixelfly) against a float64 reference and the masked-dense path, at
many shapes, on every instruction-set path this CPU has; gradcheck; thread-count invariance; errors."""
import itertools
import warnings

import torch

import pixelfly_torch as pt
from pixelfly_torch import extension
from pixelfly_torch.functional import dense_linear, masked_dense_linear
from support import Case, low_rank_params, make_layer, native_or_skip, reference, run_layer

# (in, out, block, butterfly_size, n_factors): every kernel block size, both in ≤ out and in > out,
# sizes that are whole blocks and sizes that need padding.
SHAPES = [
    (64, 128, 16, 4, 2),
    (101, 70, 16, 4, 2),     # padded on both sides
    (96, 200, 32, 4, 1),     # padded out
    (200, 96, 32, 4, 2),     # padded in, in > out
    (256, 130, 64, 2, 1),    # block 64, padded out
    (130, 256, 64, 4, 2),    # block 64, padded in
]
ROWS = [1, 37, 300]          # M = 1, M of no particular multiple
TOL = 2e-5                   # fp32 products against float64, relative to the largest value


def masked_dense(layer, x):
    return masked_dense_linear(x, layer.dense_weight(), layer.bias, *low_rank_params(layer))


class NativeOps(Case):
    def setUp(self):
        native_or_skip(self)
        self.best = extension.ops.isa()

    def tearDown(self):
        if extension.ops is not None:
            extension.ops.force_isa(self.best)

    def check_layer(self, layer, m, what):
        torch.manual_seed(1)
        x = torch.randn(m, layer.in_features)
        dy = torch.randn(m, layer.out_features)
        got = run_layer(layer, x, dy)
        self.assertSameResults(got, reference(layer, x, dy), TOL, f"{what} vs float64")
        # Two fp32 paths each within TOL of float64 are within 2·TOL of each other (torch's own BLAS
        # differs by CPU: a cancelling sum such as the gate bias's gradient lands near TOL on some).
        self.assertSameResults(got, run_layer(layer, x, dy, masked_dense), 2 * TOL, f"{what} vs masked dense")

    def test_layer_matches_reference_at_many_shapes(self):
        n = 0
        for (i, o, b, s, f), rank, bias in itertools.product(SHAPES, (0, 5, 17), (True, False)):
            layer = make_layer(i, o, block=b, butterfly_size=s, n_factors=f, rank=rank, bias=bias)
            for m in ROWS:
                self.check_layer(layer, m, f"{i}→{o} b{b} S{s} F{f} r{rank} bias={bias} M={m}")
                n += 1
        self.assertEqual(n, len(SHAPES) * 3 * 2 * len(ROWS))

    def test_global_and_shuffled_layouts(self):
        for global_size, shuffle in ((16, False), (0, True), (40, True)):
            layer = make_layer(96, 160, block=16, butterfly_size=8, n_factors=2, rank=3, global_size=global_size, shuffle=shuffle)
            self.check_layer(layer, 53, f"global {global_size} shuffle {shuffle}")

    def test_every_isa_path_this_cpu_has(self):
        paths = extension.ops.supported_isas()
        self.assertIn("portable", paths)
        for isa in paths:
            extension.ops.force_isa(isa)
            self.assertEqual(extension.ops.isa(), isa)
            for i, o, b, s, f in SHAPES[1::2]:
                self.check_layer(make_layer(i, o, block=b, butterfly_size=s, n_factors=f, rank=4), 45, f"{isa} {i}→{o} b{b}")

    def test_elementary_products_match_float64(self):
        ops = extension.ops
        for i, o, b, s, f in SHAPES:
            layer = make_layer(i, o, block=b, butterfly_size=s, n_factors=f)
            w = layer.sparse.weight.detach()
            dense = layer.dense_weight().detach().double()
            for m in ROWS:
                x, dy = torch.randn(m, i), torch.randn(m, o)
                self.assertClose(ops.bsr_forward(x, w, layer.index, o, None), x.double() @ dense.t(), TOL, f"bsr_forward {i}→{o} M={m}")
                self.assertClose(ops.bsr_backward_data(dy, w, layer.index, i), dy.double() @ dense, TOL, f"bsr_backward_data {i}→{o} M={m}")
                full = torch.zeros(layer.block_rows * b, layer.block_cols * b, dtype=torch.float64)
                full[:o, :i] = dy.double().t() @ x.double()
                want = full.view(layer.block_rows, b, layer.block_cols, b).permute(0, 2, 1, 3).reshape(-1, b, b)[layer.kept_blocks]
                self.assertClose(ops.bsr_backward_weight(dy, x, layer.index, b), want, TOL, f"bsr_backward_weight {i}→{o} M={m}")

    def test_dense_linear_is_our_gemm_and_matches_float64(self):
        for m, i, o in ((1, 5, 7), (37, 96, 200), (300, 200, 64)):
            torch.manual_seed(m)
            w = torch.randn(o, i, requires_grad=True)
            bias = torch.randn(o, requires_grad=True)
            x = torch.randn(m, i, requires_grad=True)
            dy = torch.randn(m, o)
            dense_linear(x, w, bias).backward(dy)
            wd, bd, xd = (t.detach().double().requires_grad_() for t in (w, bias, x))
            torch.nn.functional.linear(xd, wd, bd).backward(dy.double())
            for got, want, name in ((x.grad, xd.grad, "dx"), (w.grad, wd.grad, "dw"), (bias.grad, bd.grad, "db")):
                self.assertClose(got, want, TOL, f"dense_linear {m}x{i}→{o} {name}")

    def test_gradcheck(self):
        layer = make_layer(20, 36, block=16, butterfly_size=2, n_factors=1, rank=3)
        x = torch.randn(3, 20, requires_grad=True)
        params = [layer.sparse.weight, layer.bias, *low_rank_params(layer)]

        def f(x, blocks, bias, v, u, gw, gb):
            return pt.pixelfly_linear(x, blocks, layer.index, 36, bias, v, u, gw, gb)

        # fp32 operators: finite differences with a step and tolerances fp32 can resolve.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Input #", UserWarning)  # "not double precision": known and accounted for
            self.assertTrue(torch.autograd.gradcheck(f, (x, *params), eps=1e-2, atol=3e-4, rtol=3e-4, nondet_tol=0.0))

    def test_results_do_not_depend_on_the_thread_count(self):
        threads = torch.get_num_threads()
        try:
            for i, o in ((256, 512), (512, 256)):
                layer = make_layer(i, o, block=32, butterfly_size=8, n_factors=2, rank=8)
                x, dy = torch.randn(2100, i), torch.randn(2100, o)  # several 512-row chunks of the gate's gradient
                runs = []
                for n in (1, 2, 3):
                    torch.set_num_threads(n)
                    runs.append(run_layer(layer, x, dy))
                for n, (y, dx, g) in zip((2, 3), runs[1:]):
                    self.assertTrue(torch.equal(y, runs[0][0]), f"{i}→{o}: y differs between 1 and {n} threads")
                    self.assertTrue(torch.equal(dx, runs[0][1]), f"{i}→{o}: dx differs between 1 and {n} threads")
                    for name in g:
                        self.assertTrue(torch.equal(g[name], runs[0][2][name]), f"{i}→{o}: d{name} differs between 1 and {n} threads")
        finally:
            torch.set_num_threads(threads)

    def test_batched_inputs_keep_their_shape(self):
        layer = make_layer(64, 96, block=16, butterfly_size=4, n_factors=2, rank=2)
        x = torch.randn(2, 3, 5, 64)
        y = layer(x)
        self.assertEqual(tuple(y.shape), (2, 3, 5, 96))
        self.assertClose(y, masked_dense(layer, x.reshape(-1, 64)).reshape(2, 3, 5, 96), TOL, "4-D input")

    def test_bad_arguments_name_what_is_wrong(self):
        ops = extension.ops
        layer = make_layer(64, 96, block=16, butterfly_size=4, n_factors=2)
        w, idx = layer.sparse.weight.detach(), layer.index
        x = torch.randn(4, 64)
        cases = [
            (lambda: ops.bsr_forward(x.double(), w, idx, 96, None), "float32"),
            (lambda: ops.bsr_forward(x, w, idx, 97, None), "index"),
            (lambda: ops.bsr_forward(torch.randn(4, 70), w, idx, 96, None), "index"),
            (lambda: ops.bsr_forward(x, w[:-1], idx, 96, None), "index"),
            (lambda: ops.bsr_forward(x, w, idx, 96, torch.zeros(95)), "bias"),
            (lambda: ops.bsr_forward(x.t(), w, idx, 96, None), "x"),
            (lambda: ops.bsr_backward_weight(torch.randn(5, 96), x, idx, 16), "rows differ"),
            (lambda: ops.bsr_forward(x, w.reshape(-1, 8, 32), idx, 96, None), "blocks"),
        ]
        corrupt = idx.clone()
        corrupt[layer.block_rows + 1] = 999  # a column index out of range
        cases.append((lambda: ops.bsr_forward(x, w, corrupt, 96, None), "colIdx"))
        for call, word in cases:
            with self.assertRaises(RuntimeError) as cm:
                call()
            self.assertIn(word, str(cm.exception))

"""PixelflyLinear in a bfloat16 model (model.to(torch.bfloat16)) or under torch.autocast runs on the
CPU's bf16 kernels: bf16 products with fp32 accumulation, against a float64 reference."""
import torch

import pixelfly_torch as pt
from support import Case, make_layer, native_or_skip, reference


class Bf16(Case):
    def setUp(self):
        native_or_skip(self)

    def test_bf16_layers_run_native_and_match_the_reference(self):
        self.assertRegex(pt.backend(dtype=torch.bfloat16), r"^native \(.*bf16 products on (amx|avx512bf16|fp32-fallback)")
        for i, o, rank in ((96, 200, 0), (200, 96, 6), (128, 256, 8)):
            layer = make_layer(i, o, block=16, butterfly_size=4, n_factors=2, rank=rank).to(torch.bfloat16)
            x = torch.randn(300, i).to(torch.bfloat16).requires_grad_()
            dy = torch.randn(300, o).to(torch.bfloat16)
            y = layer(x)
            self.assertEqual(y.dtype, torch.bfloat16)
            y.backward(dy)
            want_y, want_dx, want_g = reference(layer, x, dy)
            # The output and gradients are rounded to bf16 once: about 2^-8 relative, plus fp32 sums.
            self.assertClose(y.float(), want_y, 1.5e-2, f"{i}→{o} r{rank}: y")
            self.assertClose(x.grad.float(), want_dx, 1.5e-2, f"{i}→{o} r{rank}: dx")
            for n, p in layer.named_parameters():
                self.assertEqual(p.grad.dtype, torch.bfloat16)
                self.assertClose(p.grad.float(), want_g[n], 3e-2, f"{i}→{o} r{rank}: d{n}")

    def test_autocast_runs_bf16_products_on_fp32_weights(self):
        # torch.autocast("cpu", bfloat16), as a mixed-precision training loop (and the daemon's PyTorch
        # runner) uses it: the products in bf16, the weights and their gradients fp32, the output bf16
        # as autocast's F.linear; the same numbers as the layer in bfloat16 up to the weights' rounding.
        for i, o, rank in ((96, 200, 0), (200, 96, 6)):
            layer = make_layer(i, o, block=16, butterfly_size=4, n_factors=2, rank=rank)
            x = torch.randn(300, i).requires_grad_()
            dy = torch.randn(300, o)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = layer(x)
            self.assertEqual(y.dtype, torch.bfloat16)
            y.backward(dy.to(torch.bfloat16))
            want_y, want_dx, want_g = reference(layer, x, dy)
            self.assertClose(y.float(), want_y, 1.5e-2, f"{i}→{o} r{rank}: y")
            self.assertEqual(x.grad.dtype, torch.float32)
            self.assertClose(x.grad, want_dx, 1.5e-2, f"{i}→{o} r{rank}: dx")
            for n, p in layer.named_parameters():
                self.assertEqual(p.grad.dtype, torch.float32, n)
                self.assertClose(p.grad, want_g[n], 3e-2, f"{i}→{o} r{rank}: d{n}")
            # Not bf16 at all outside autocast: fp32 products, fp32 tolerance.
            x.grad = None
            self.assertClose(layer(x).detach(), want_y, 2e-5, f"{i}→{o} r{rank}: y without autocast")

    def test_autocast_layer_after_another_product_runs_native(self):
        # Under autocast a layer's input is usually the bf16 output of another product (an nn.Linear, a
        # PixelflyLinear, an activation of one) while its weights stay fp32: it must still run on the
        # native operators, not on the masked-dense path, and match the reference.
        first = torch.nn.Linear(96, 128)
        layer = make_layer(128, 256, block=32, butterfly_size=4, n_factors=2, rank=4)
        x = torch.randn(300, 96)
        with torch.profiler.profile() as prof:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                h = torch.nn.functional.gelu(first(x))
                self.assertEqual(h.dtype, torch.bfloat16)
                y = layer(h)
            y.float().sum().backward()
        ran = {e.name for e in prof.events()}
        self.assertIn("pixelfly::pixelfly_linear_forward", ran)
        self.assertIn("pixelfly::pixelfly_linear_backward", ran)
        want_y = reference(layer, h.detach().float(), torch.ones(300, 256))[0]
        self.assertClose(y.detach().float(), want_y, 1.5e-2, "y after a bf16 product")
        self.assertEqual(layer.sparse.weight.grad.dtype, torch.float32)

    def test_autocast_norms_lets_a_layernorm_follow_a_product(self):
        # torch 1.13's CPU autocast fails on LayerNorm(bf16 product output); autocast_norms gives the
        # norm CUDA autocast's policy (fp32), and leaves the model as it was outside autocast.
        model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.LayerNorm(128), make_layer(128, 96, block=32, butterfly_size=4, n_factors=2, rank=4))
        x = torch.randn(40, 64)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            with self.assertRaisesRegex(RuntimeError, "expected scalar type BFloat16 but found Float"):
                model(x)
        handles = pt.autocast_norms(model)
        self.assertEqual(len(handles), 1)
        want = model(x).detach()  # fp32, no autocast: the hook does nothing
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = model(x)
        y.float().sum().backward()
        self.assertEqual(y.dtype, torch.bfloat16)
        self.assertClose(y.detach().float(), want, 3e-2, "bf16 products, fp32 norm")
        self.assertTrue(all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters()))
        for h in handles:
            h.remove()

    def test_every_bf16_path_this_cpu_has(self):
        ops = pt.extension.ops
        best = ops.isa()
        layer = make_layer(128, 256, block=32, butterfly_size=4, n_factors=2, rank=4).to(torch.bfloat16)
        x = torch.randn(77, 128).to(torch.bfloat16)
        want = reference(layer, x, torch.ones(77, 256))[0]
        try:
            for isa in ops.supported_isas():
                ops.force_isa(isa)
                with torch.no_grad():
                    self.assertClose(layer(x).float(), want, 1.5e-2, f"{isa} ({ops.bf16_path()})")
        finally:
            ops.force_isa(best)

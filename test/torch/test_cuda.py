"""PixelflyLinear on CUDA tensors: the project's CUDA kernels against the CPU operators. These need a
torch with CUDA, a GPU and an extension built with nvcc; elsewhere each says loudly why it did not run."""
import copy

import torch

import pixelfly_torch as pt
from support import Case, make_layer, native_or_skip, run_layer

SHAPES = [(64, 128, 16, 4, 2, 0), (101, 70, 16, 4, 2, 5), (200, 96, 32, 4, 2, 8), (130, 256, 64, 4, 2, 3)]


class Cuda(Case):
    def setUp(self):
        native_or_skip(self)
        if pt.cuda_reason():
            self.skipTest(f"SKIPPED LOUDLY: the CUDA operators cannot run here: {pt.cuda_reason()}")

    def test_layer_on_cuda_matches_the_cpu_operators(self):
        for i, o, b, s, f, rank in SHAPES:
            layer = make_layer(i, o, block=b, butterfly_size=s, n_factors=f, rank=rank)
            gpu = copy.deepcopy(layer).cuda()
            self.assertEqual(gpu.index.device.type, "cpu", "the block index stays on the host")
            for m in (1, 37, 300):
                x, dy = torch.randn(m, i), torch.randn(m, o)
                want = run_layer(layer, x, dy)
                y, dx, grads = run_layer(gpu, x.cuda(), dy.cuda())
                got = (y.cpu(), dx.cpu(), {n: g.cpu() for n, g in grads.items()})
                self.assertSameResults(got, want, 1e-4, f"{i}→{o} b{b} r{rank} M={m} CUDA vs CPU")

    def test_runs_on_the_current_stream(self):
        layer = make_layer(64, 128, block=16, butterfly_size=4, n_factors=2, rank=4).cuda()
        x = torch.randn(512, 64, device="cuda")
        want = layer(x)
        side = torch.cuda.Stream()
        with torch.cuda.stream(side):
            y = layer(x)
        side.synchronize()
        self.assertTrue(torch.equal(y, want), "the same result on a side stream")
        self.assertEqual(pt.backend(device="cuda"), "native (cuda)")


class CudaFallback(Case):
    def test_backend_says_why_cuda_tensors_would_run_masked_dense(self):
        if not pt.cuda_reason():
            self.skipTest("CUDA operators are usable here: nothing to explain")
        self.assertEqual(pt.backend(device="cuda"), f"masked-dense: {pt.cuda_reason()}")

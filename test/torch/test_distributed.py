"""PixelflyLinear under DistributedDataParallel and FSDP: a step on several ranks equals the same step on
one process with the whole batch. DDP runs on two CPU processes (gloo); FSDP where this torch's FSDP
can run (torch 1.13's needs CUDA devices: each rank one GPU, NCCL), and on the CPU through FSDP's
flat parameter, the part of FSDP that changes what the layers' operators are given."""
import functools
import os
import sys
import tempfile
import traceback

import torch
import torch.nn as nn

import pixelfly_torch as pt
from fsdp_import import import_fsdp
from support import Case

BATCH = 12  # split evenly over 1 or 2 ranks: the ranks' mean losses averaged are the whole batch's mean loss


def make_model(device):
    torch.manual_seed(0)
    return nn.Sequential(pt.PixelflyLinear(64, 128, block=16, butterfly_size=4, n_factors=2, rank=4), nn.GELU(),
                         pt.PixelflyLinear(128, 10, block=16, butterfly_size=2, n_factors=1)).to(device)


def batch(device):
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 64, generator=g).to(device), torch.randint(0, 10, (BATCH,), generator=g).to(device)


def on_cpu(state):
    return {k: v.cpu() for k, v in state.items()}


def train_step(model, x, y):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return float(loss)


def _worker(rank, kind, world, store, out_dir):
    try:
        import torch.distributed as dist
        device = torch.device("cpu") if kind == "ddp" else torch.device("cuda", rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"file://{store}",
                                rank=rank, world_size=world)
        model = make_model(device)
        if kind == "ddp":
            from torch.nn.parallel import DistributedDataParallel
            wrapped = DistributedDataParallel(model)  # find_unused_parameters=False: every parameter is used
        else:
            fsdp, _ = import_fsdp()
            # A unit per PixelflyLinear inside the root unit is how a user wraps a big model.
            policy = functools.partial(fsdp.wrap.lambda_auto_wrap_policy,
                                       lambda_fn=lambda m: isinstance(m, pt.PixelflyLinear)) if kind == "fsdp_per_layer" else None
            wrapped = fsdp.FullyShardedDataParallel(model, auto_wrap_policy=policy)
        x, y = batch(device)
        share = BATCH // world
        loss = train_step(wrapped, x[rank * share:(rank + 1) * share], y[rank * share:(rank + 1) * share])
        if kind != "ddp":
            with fsdp.FullyShardedDataParallel.state_dict_type(wrapped, fsdp.StateDictType.FULL_STATE_DICT,
                                                               fsdp.FullStateDictConfig()):
                state = wrapped.state_dict()
        else:
            state = model.state_dict()
        torch.save({"loss": loss, "state": on_cpu(state)}, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.destroy_process_group()
    except Exception:  # the parent reads the reason instead of a bare exit code
        with open(os.path.join(out_dir, f"rank{rank}.error"), "w") as f:
            f.write(traceback.format_exc())
        raise


def run_ranks(kind, world):
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory() as tmp:
        try:
            mp.spawn(_worker, args=(kind, world, os.path.join(tmp, "store"), tmp), nprocs=world, join=True)
        except Exception as e:
            errors = [open(os.path.join(tmp, f)).read() for f in sorted(os.listdir(tmp)) if f.endswith(".error")]
            raise AssertionError(f"{kind} ranks failed: {e}\n" + "\n".join(errors)) from None
        return [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(world)]


def single_process(device):
    model = make_model(device)
    x, y = batch(device)
    train_step(model, x, y)
    return on_cpu(model.state_dict())


@functools.lru_cache(maxsize=None)
def fsdp_world():
    """(world size, '') where this test can run FSDP, else (0, why not)."""
    if not torch.cuda.is_available():
        return 0, (f"this test runs FSDP on CUDA devices, which torch {torch.__version__}'s FSDP needs (its compute "
                   f"device is always a GPU), and torch.cuda.is_available() is False here")
    if pt.cuda_reason():
        return 0, f"the CUDA operators cannot run here: {pt.cuda_reason()}"
    try:
        _, how = import_fsdp()
    except Exception as e:
        return 0, f"FSDP cannot be imported in torch {torch.__version__}: {type(e).__name__}: {e}"
    print(f"FSDP in torch {torch.__version__}: {how}", file=sys.stderr)
    return min(2, torch.cuda.device_count()), ""


class Distributed(Case):
    def assertStepsEqual(self, ranks, kind, device):
        want = single_process(device)
        for r, got in enumerate(ranks):
            self.assertEqual(sorted(got["state"]), sorted(want))
            for name in want:
                # The collectives sum the ranks' gradients in their own order: fp32 rounding, nothing more.
                self.assertClose(got["state"][name], want[name], 1e-5, f"{kind} rank {r}: {name}")

    def test_ddp_step_on_two_processes_equals_the_single_process_step(self):
        self.assertStepsEqual(run_ranks("ddp", 2), "DDP", "cpu")

    def fsdp_or_skip(self):
        world, why = fsdp_world()
        if not world:
            self.skipTest(f"SKIPPED LOUDLY: {why}")
        return world

    def test_fsdp_step_equals_the_single_process_step(self):
        world = self.fsdp_or_skip()
        self.assertStepsEqual(run_ranks("fsdp", world), f"FSDP on {world} ranks", "cuda")

    def test_fsdp_with_a_unit_per_pixelfly_layer_equals_the_single_process_step(self):
        world = self.fsdp_or_skip()
        self.assertStepsEqual(run_ranks("fsdp_per_layer", world), f"FSDP (a unit per layer) on {world} ranks", "cuda")

    def test_fsdp_flat_parameter_step_on_cpu_equals_the_plain_step(self):
        # What of FSDP runs on a CPU-only torch 1.13: its FlattenParamsWrapper, the module it wraps each
        # unit in, which concatenates the unit's parameters into one FlatParameter and hands the layers
        # views into it. PixelflyLinear's operators must then take those views and give their
        # gradients back through them.
        import_fsdp()  # the fsdp package must import before its modules can
        try:
            from torch.distributed.fsdp.flat_param import HandleConfig, HandleShardingStrategy
            from torch.distributed.fsdp.flatten_params_wrapper import FlattenParamsWrapper
        except ImportError as e:
            self.skipTest(f"SKIPPED LOUDLY: torch {torch.__version__} has no FSDP FlattenParamsWrapper ({e}); "
                          f"the FSDP steps on CUDA devices above cover it")
        model = make_model("cpu")
        before = {k: v.clone() for k, v in model.state_dict().items()}
        flat = FlattenParamsWrapper(model, list(model.parameters()), torch.device("cpu"),
                                    HandleConfig(HandleShardingStrategy.NO_SHARD, False, None, None))
        self.assertEqual([n for n, _ in flat.named_parameters()], ["flat_param"])
        x, y = batch("cpu")
        train_step(flat, x, y)  # AdamW on the one flat parameter: elementwise, as on the separate ones
        with flat.unflatten_as_params():
            got = flat.state_dict()
        want = single_process("cpu")
        self.assertEqual(sorted(got), sorted(want))
        for name in want:
            self.assertFalse(torch.equal(want[name], before[name]), f"{name} was trained")
            self.assertClose(got[name], want[name], 1e-6, f"FSDP's flat parameter: {name}")

    def test_fsdp_imports_on_this_torch(self):
        # What lets the FSDP steps above run on a CUDA machine with this same torch (Debian's 1.13 on
        # Python 3.11 fails to import FSDP as shipped).
        fsdp, how = import_fsdp()
        self.assertTrue(issubclass(fsdp.FullyShardedDataParallel, nn.Module), how)
        self.assertTrue(callable(fsdp.wrap.lambda_auto_wrap_policy))

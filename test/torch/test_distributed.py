"""PixelflyLinear under DistributedDataParallel (two CPU processes, gloo) and FSDP: a step on two ranks
equals the same step on one process with the whole batch."""
import json
import os
import sys
import tempfile
import traceback

import torch
import torch.nn as nn

import pixelfly_torch as pt
from support import Case

WORLD = 2
BATCH = 12  # split evenly: each rank's mean loss averaged by DDP is the whole batch's mean loss


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(pt.PixelflyLinear(64, 128, block=16, butterfly_size=4, n_factors=2, rank=4), nn.GELU(),
                         pt.PixelflyLinear(128, 10, block=16, butterfly_size=2, n_factors=1))


def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 64, generator=g), torch.randint(0, 10, (BATCH,), generator=g)


def train_step(model, x, y):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return float(loss)


def _worker(rank, kind, store, out_dir):
    try:
        import torch.distributed as dist
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
        model = make_model()
        if kind == "ddp":
            from torch.nn.parallel import DistributedDataParallel
            wrapped = DistributedDataParallel(model)  # find_unused_parameters=False: every parameter is used
        else:
            from torch.distributed.fsdp import FullyShardedDataParallel
            wrapped = FullyShardedDataParallel(model)
        x, y = batch()
        share = BATCH // WORLD
        loss = train_step(wrapped, x[rank * share:(rank + 1) * share], y[rank * share:(rank + 1) * share])
        if kind == "fsdp":
            from torch.distributed.fsdp import FullStateDictConfig, StateDictType
            with FullyShardedDataParallel.state_dict_type(wrapped, StateDictType.FULL_STATE_DICT, FullStateDictConfig()):
                state = wrapped.state_dict()
        else:
            state = model.state_dict()
        torch.save({"loss": loss, "state": state}, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.destroy_process_group()
    except Exception:  # the parent reads the reason instead of a bare exit code
        with open(os.path.join(out_dir, f"rank{rank}.error"), "w") as f:
            f.write(traceback.format_exc())
        raise


def run_ranks(kind):
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory() as tmp:
        try:
            mp.spawn(_worker, args=(kind, os.path.join(tmp, "store"), tmp), nprocs=WORLD, join=True)
        except Exception as e:
            errors = [open(os.path.join(tmp, f)).read() for f in sorted(os.listdir(tmp)) if f.endswith(".error")]
            raise AssertionError(f"{kind} ranks failed: {e}\n" + "\n".join(errors)) from None
        return [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(WORLD)]


def single_process():
    model = make_model()
    x, y = batch()
    train_step(model, x, y)
    return model.state_dict()


class Distributed(Case):
    def assertStepsEqual(self, ranks, kind):
        want = single_process()
        for r, got in enumerate(ranks):
            self.assertEqual(sorted(got["state"]), sorted(want))
            for name in want:
                # gloo sums the two ranks' gradients in its own order: fp32 rounding, nothing more.
                self.assertClose(got["state"][name], want[name], 1e-5, f"{kind} rank {r}: {name}")

    def test_ddp_step_on_two_processes_equals_the_single_process_step(self):
        self.assertStepsEqual(run_ranks("ddp"), "DDP")

    def test_fsdp_step_on_two_processes_equals_the_single_process_step(self):
        try:
            from torch.distributed.fsdp import FullyShardedDataParallel  # noqa: F401
        except Exception as e:  # Debian's torch 1.13 under Python 3.11: FSDP's dataclasses fail to import
            self.skipTest(f"SKIPPED LOUDLY: FSDP cannot be imported in torch {torch.__version__} on Python "
                          f"{sys.version_info.major}.{sys.version_info.minor}: {type(e).__name__}: {e}")
        self.assertStepsEqual(run_ranks("fsdp"), "FSDP")

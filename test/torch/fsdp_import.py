"""Imports FSDP from Debian's torch 1.13 on Python 3.11.

torch 1.13's `torch/distributed/_shard/sharded_tensor/metadata.py` gives a dataclass field a mutable
default (`field(default=TensorProperties())`), which Python 3.11's dataclasses refuse, so
`import torch.distributed.fsdp` raises ValueError before any FSDP code runs. PyTorch 2.0 fixed it
upstream with `field(default_factory=TensorProperties)`. This module serves that one module with that
one substitution while it is imported (nothing else changes, nothing on disk is touched), so the
tests can run FSDP itself on the torch the project is tested with. On a torch that imports FSDP as
it is, it does nothing.
"""
import importlib.abc
import importlib.machinery
import sys

_MODULE = "torch.distributed._shard.sharded_tensor.metadata"
_BROKEN = b"field(default=TensorProperties())"
_FIXED = b"field(default_factory=TensorProperties)"


class _FixedSource(importlib.machinery.SourceFileLoader):
    def get_data(self, path):  # only ever asked for this module's source (get_code and get_source)
        return super().get_data(path).replace(_BROKEN, _FIXED)

    def get_code(self, fullname):  # compiled from the fixed source, never from a cached .pyc
        return compile(self.get_data(self.path), self.path, "exec")


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != _MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None:
            return spec
        spec.loader = _FixedSource(fullname, spec.origin)
        return spec


def import_fsdp():
    """torch.distributed.fsdp, importing the fixed metadata module first where it is needed.

    Returns (module, how) where how names what was done, for the test's log."""
    try:
        import torch.distributed.fsdp as fsdp
        return fsdp, "imported as it is"
    except ValueError as e:
        if "mutable default" not in str(e):
            raise
        first = e
    for name in [m for m in sys.modules if m.startswith(("torch.distributed._shard", "torch.distributed.fsdp"))]:
        del sys.modules[name]  # half-imported by the failed attempt
    finder = _Finder()
    sys.meta_path.insert(0, finder)
    try:
        import torch.distributed.fsdp as fsdp
    finally:
        sys.meta_path.remove(finder)
    return fsdp, f"imported with PyTorch 2.0's fix of torch 1.13's sharded-tensor metadata ({first})"

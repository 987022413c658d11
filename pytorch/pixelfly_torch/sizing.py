"""What a model needs in memory, read without allocating it: the model built on torch's meta device
(tensors with sizes and no data), and the bytes one sample's forward keeps for the backward, counted
by autograd's saved-tensor hooks. The daemon admits a PyTorch runner job with these figures before
the worker builds the real model, so a model too big for the machine is refused, not swapped in.
"""
import torch
from torch.overrides import TorchFunctionMode

__all__ = ["on_meta", "saved_bytes", "to_meta"]

# Factories whose device is theirs to choose (the ``*_like`` ones follow their input's).
_FACTORIES = {
    torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn, torch.randint, torch.randperm,
    torch.arange, torch.linspace, torch.logspace, torch.eye, torch.tensor, torch.as_tensor,
}

# Below this many elements a tensor made while building the model stays real: models read such
# tensors back (timm: ``[x.item() for x in torch.linspace(0, rate, depth)]``), and they cost nothing.
_SMALL = 1 << 16


class on_meta(TorchFunctionMode):
    """Inside, tensor factories that name no device make meta tensors. ``keep_small``: one that would
    have fewer than 65,536 elements is made on the CPU as asked (for building a model: ``to_meta`` moves
    them afterwards); without it, every one is meta (for a forward)."""

    def __init__(self, keep_small=False):
        super().__init__()
        self.keep_small = keep_small

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in _FACTORIES or kwargs.get("device") is not None:
            return func(*args, **kwargs)
        meta = func(*args, **{**kwargs, "device": "meta"})
        if self.keep_small and meta.numel() < _SMALL:
            return func(*args, **kwargs)
        return meta


def to_meta(model):
    """Moves the parameters and buffers ``on_meta(keep_small=True)`` left on the CPU to the meta device,
    in place. Unlike ``model.to("meta")`` a tensor several modules share (tied embedding and output
    weights) stays one tensor, so it is counted once."""
    moved = {}  # id → (the CPU tensor, kept alive so its id is not reused; its meta twin)

    def meta(t, make):
        if id(t) not in moved:
            moved[id(t)] = (t, make(t))
        return moved[id(t)][1]

    for m in model.modules():
        for name, p in m._parameters.items():
            if p is not None and not p.is_meta:
                m._parameters[name] = meta(p, lambda p: torch.nn.Parameter(p.to("meta"), p.requires_grad))
        for name, b in m._buffers.items():
            if b is not None and not b.is_meta:
                m._buffers[name] = meta(b, lambda b: b.to("meta"))
    return model


def _storage(t):
    """(key, bytes) of the memory t lives in, each storage once: its address on a real device; on the
    meta device (no addresses) the tensor it is a view of."""
    if t.is_meta:
        while t._base is not None:
            t = t._base
        return ("meta", id(t)), t.numel() * t.element_size()
    try:
        s = t.untyped_storage() if hasattr(t, "untyped_storage") else t.storage()
        return s.data_ptr(), s.nbytes()
    except (RuntimeError, NotImplementedError):
        return ("id", id(t)), t.numel() * t.element_size()


def saved_bytes(model, run):
    """(bytes, output bytes): what ``run()`` (a forward and loss of ``model``) keeps for the backward,
    each storage once and the model's own parameters not counted (they are counted as parameters),
    and the size of the tensor it returns (the output: it and its gradient live through the backward)."""
    seen, total = {_storage(p)[0] for p in model.parameters()}, [0]

    def pack(t):
        key, size = _storage(t)
        if key not in seen:
            seen.add(key)
            total[0] += size
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = run()
    return total[0], out.numel() * out.element_size()

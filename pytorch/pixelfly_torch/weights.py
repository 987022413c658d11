"""Reading the native engine's weight exports (safetensors, see native/src/engine/FORMATS.md) into
PixelflyLinear layers and PixelflyAttention cores: the tensor names are their state-dict keys."""
import json
import struct

import torch

from .attention_core import PixelflyAttention
from .linear import PixelflyLinear

__all__ = ["read_safetensors", "load_engine_weights", "pixelfly_layers_from_export", "pixelfly_attention_from_export"]


_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32}


def read_safetensors(path):
    """Tensors and metadata of a safetensors file, without the safetensors package."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except ValueError as e:
        raise ValueError(f"{path}: not a safetensors file (bad header: {e})") from None
    meta = header.pop("__metadata__", {}) or {}
    body = data[8 + n:]
    tensors = {}
    for name, t in header.items():
        if t["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {t['dtype']}")
        start, end = t["data_offsets"]
        flat = torch.frombuffer(bytearray(body[start:end]), dtype=_DTYPES[t["dtype"]])
        tensors[name] = flat.reshape(t["shape"]).clone()
    return tensors, meta


def load_engine_weights(module, path, prefix="", strict=True):
    """Load a Pixelfly engine weight export into ``module`` (names are state-dict keys).

    ``prefix`` selects a sub-tree of the export (e.g. ``"blocks.0.mlp.fc1."``).
    """
    tensors, _ = read_safetensors(path)
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    return module.load_state_dict(state, strict=strict)


def pixelfly_layers_from_export(path):
    """Every Pixelfly layer of an engine weight export, built and loaded: ``{name: PixelflyLinear}``.

    Raises if a layer's layout here differs from the one the engine recorded (it never should:
    both implement the same layout function).
    """
    tensors, meta = _read_export(path)
    layers = {}
    for name, cfg in json.loads(meta.get("layouts", "{}")).items():
        layer = PixelflyLinear(cfg["in"], cfg["out"], block=cfg["block"], butterfly_size=cfg["butterflySize"],
                               n_factors=cfg["nFactors"], rank=cfg.get("rank", 0), global_size=cfg.get("globalSize", 0),
                               shuffle=bool(cfg.get("shuffle", False)))
        layers[name] = _loaded(path, tensors, f"layer {name}", name, layer, layer.layout, cfg["layout"])
    return layers


def pixelfly_attention_from_export(path):
    """Every Pixelfly attention core of an engine weight export, built and loaded:
    ``{name: PixelflyAttention}`` (``blocks.<i>.attn.core``): its score layout, and where it has the
    low-rank term, the fixed Performer projection the engine trained with.

    Raises if a core's layout here differs from the one the engine recorded.
    """
    tensors, meta = _read_export(path)
    cores = {}
    for name, c in json.loads(meta.get("attention", "{}")).items():
        core = PixelflyAttention(c["headDim"], c["T"], block=c["block"], butterfly_size=c["butterflySize"], n_factors=c["nFactors"],
                                 global_size=c.get("globalSize", 0), features=c.get("features", 0), causal=c["causal"])
        cores[name] = _loaded(path, tensors, f"attention core {name}", name, core, core.full_layout.mask, c["layout"])
    return cores


def _read_export(path):
    tensors, meta = read_safetensors(path)
    if meta.get("format") != "pixelfly-weights":
        raise ValueError(f"{path}: not a Pixelfly weight export (metadata format {meta.get('format')!r})")
    return tensors, meta


def _loaded(path, tensors, what, name, module, mask, rows):
    """`module` (built here for the export's entry `name`) with its tensors loaded, once its block
    mask is the one the engine recorded (it always should be: both implement the same layout function)."""
    if ["".join("1" if v else "0" for v in row) for row in mask.tolist()] != rows:
        raise ValueError(f"{path}: {what}: the exported layout differs from pixelfly_torch's")
    module.load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}, strict=True)
    return module

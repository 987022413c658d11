"""Loading the ``_C.so`` torch extension (the project's kernels as ``torch.ops.pixelfly.*``), and what
runs when it cannot load: the masked-dense fallback, announced once with the reason and the fix.
"""
import json
import os
import sys
import warnings
from pathlib import Path

import torch

__all__ = ["PixelflyFallbackWarning", "backend", "cuda_reason", "native_reason", "ops"]

_LIB = Path(__file__).with_name("_C.so")
_INFO = Path(__file__).with_name("_build_info.json")
_FIX = ("build it with `npm run build` in a Pixelfly checkout (then PYTHONPATH=dist/python), or install it into "
        f"this interpreter with `pixelfly torch install --python {sys.executable}`")


class PixelflyFallbackWarning(UserWarning):
    """PixelflyLinear computes a masked dense product (correct, but no faster than nn.Linear)."""


def _load():
    """(ops namespace or None, reason it is None, why the CUDA operators cannot run or "")."""
    if os.environ.get("PIXELFLY_TORCH_NATIVE", "1") == "0":
        return None, "disabled by PIXELFLY_TORCH_NATIVE=0", "the extension is disabled"
    try:
        info = json.loads(_INFO.read_text())
    except (OSError, ValueError):
        info = {}
    if info.get("native") is False:
        return None, f"the extension was not built ({info.get('reason')}); {_FIX}", "no extension"
    if not _LIB.exists() or not info:
        return None, f"the extension {_LIB} was not built; {_FIX}", "no extension"
    if info.get("torch") != torch.__version__:
        why = f"the extension was built for torch {info.get('torch')}, this is torch {torch.__version__}; rebuild: {_FIX}"
        return None, why, "no extension"
    try:
        torch.ops.load_library(str(_LIB))
    except (OSError, RuntimeError) as e:
        return None, f"the extension {_LIB} failed to load ({e}); {_FIX}", "no extension"
    if not info.get("cuda"):
        cuda = f"this build has no CUDA operators ({info.get('cuda_reason')})"
    elif not torch.cuda.is_available():
        cuda = "torch sees no usable CUDA device"
    else:
        cuda = torch.ops.pixelfly.cuda_status()
    return torch.ops.pixelfly, "", cuda


ops, _reason, _cuda_reason = _load()
_warned = False


def cuda_reason():
    """Why the CUDA operators cannot run here ("" when they can)."""
    return _cuda_reason


def native_reason():
    """Why the native operators are not in use ("" when they are)."""
    return _reason


def warn_fallback():
    """The one warning a process gets when PixelflyLinear runs without the extension."""
    global _warned
    if ops is None and not _warned:
        _warned = True
        warnings.warn(f"pixelfly_torch runs masked-dense (no speedup): {_reason}", PixelflyFallbackWarning, stacklevel=3)


def native_for(*tensors):
    """True when the native operators compute on these tensors: all of one dtype on one device, float32 or
    bfloat16 on the CPU, float32 on CUDA (with the CUDA operators built and a device usable). On the meta
    device (sizes, no data) the forwards give results of the right sizes, to size a model without
    allocating it."""
    present = [t for t in tensors if t is not None]
    if ops is None or any(t.dtype != present[0].dtype or t.device != present[0].device for t in present):
        return False
    kind, dtype = present[0].device.type, present[0].dtype
    if kind in ("cpu", "meta"):
        return dtype in (torch.float32, torch.bfloat16)
    return kind == "cuda" and dtype == torch.float32 and not _cuda_reason


def backend(device="cpu", dtype=torch.float32):
    """Which path PixelflyLinear takes for tensors of this device and dtype, in words:
    ``"native (avx512, 2 threads)"`` or ``"masked-dense: <why>"``."""
    device = torch.device(device)
    if ops is None:
        return f"masked-dense: {_reason}"
    if device.type == "cuda":
        if dtype != torch.float32:
            return f"masked-dense: the CUDA operators take float32, not {dtype}"
        return f"masked-dense: {_cuda_reason}" if _cuda_reason else "native (cuda)"
    if device.type != "cpu":
        return f"masked-dense: the extension has no {device.type} operators"
    if dtype == torch.bfloat16:
        return f"native ({ops.isa()}, bf16 products on {ops.bf16_path()}, {torch.get_num_threads()} threads)"
    if dtype != torch.float32:
        return f"masked-dense: the native operators take float32 or bfloat16, not {dtype}"
    return f"native ({ops.isa()}, {torch.get_num_threads()} threads)"

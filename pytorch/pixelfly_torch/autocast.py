"""Mixed precision on the CPU with torch 1.13: ``torch.autocast("cpu", dtype=torch.bfloat16)`` runs
the products in bf16, but leaves layer_norm and group_norm out of its fp32 list (torch's CUDA
autocast has them), so a LayerNorm fed a product's bf16 output fails with "expected scalar type
BFloat16 but found Float". ``autocast_norms(model)`` gives the model's norm modules the CUDA policy.

    pixelfly_torch.autocast_norms(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(x).float().mean()
"""
import torch
import torch.nn as nn

__all__ = ["autocast_norms"]


def _norm_input_fp32(module, args):
    if args and torch.is_tensor(args[0]) and args[0].dtype == torch.bfloat16 and torch.is_autocast_cpu_enabled():
        return (args[0].float(), *args[1:])
    return None


def autocast_norms(model):
    """Registers on every LayerNorm and GroupNorm module of ``model`` a forward pre-hook that, under CPU
    autocast, normalises a bf16 input in fp32 (its output is fp32, as CUDA autocast's). Outside autocast
    the hook does nothing. A norm the model calls as a function (``F.layer_norm``) is not reached.
    Returns the hooks' handles (``handle.remove()`` undoes one)."""
    return [m.register_forward_pre_hook(_norm_input_fp32) for m in model.modules() if isinstance(m, (nn.LayerNorm, nn.GroupNorm))]

"""Pixelfly for PyTorch: Pixelated Butterfly layers (Dao, Chen et al., ICLR 2022) that train faster than
the dense layers they replace, in your own training loop.

    import pixelfly_torch
    report = pixelfly_torch.sparsify(model, "model.pixelfly-plan.json")   # or from_dense=True for a pretrained model
    print(pixelfly_torch.backend())                                        # "native (avx512, 2 threads)"

``PixelflyAttention`` is an attention core (softmax(q·kᵀ/√d)·v) on a flat block butterfly score layout,
optionally with the authors' low-rank term. ``PixelflyLinear`` is a drop-in ``nn.Linear``; on CPU float32 tensors it runs on the Pixelfly kernels
(the ``_C.so`` extension built from the project's C++ sources), elsewhere, or without the extension,
on a masked dense weight (the same function, no speedup; a warning says why).
"""
from .attention import PixelflyMultiheadAttention
from .autocast import autocast_norms
from .attention_core import (AttentionLayout, PerformerFeatures, PixelflyAttention, attention_layout, attention_reference,
                             pixelfly_attention)
from .extension import PixelflyFallbackWarning, backend, cuda_reason, native_reason
from .functional import dense_linear, pixelfly_linear
from .layout import (KERNEL_BLOCK_SIZES, PixelflyConfigError, block_index, flat_block_butterfly_layout,
                     flat_butterfly_support)
from .linear import PixelflyLinear, config_kwargs
from .sparsify import PixelflyPlanError, PixelflyPointwiseConv, Replacement, plan_layers, sparsify
from .weights import load_engine_weights, pixelfly_attention_from_export, pixelfly_layers_from_export, read_safetensors

__all__ = [
    "AttentionLayout",
    "KERNEL_BLOCK_SIZES",
    "PerformerFeatures",
    "PixelflyAttention",
    "PixelflyConfigError",
    "PixelflyFallbackWarning",
    "PixelflyLinear",
    "PixelflyMultiheadAttention",
    "PixelflyPlanError",
    "PixelflyPointwiseConv",
    "Replacement",
    "attention_layout",
    "attention_reference",
    "autocast_norms",
    "backend",
    "block_index",
    "config_kwargs",
    "cuda_reason",
    "dense_linear",
    "flat_block_butterfly_layout",
    "flat_butterfly_support",
    "load_engine_weights",
    "native_reason",
    "pixelfly_attention",
    "pixelfly_attention_from_export",
    "pixelfly_layers_from_export",
    "pixelfly_linear",
    "plan_layers",
    "read_safetensors",
    "sparsify",
]

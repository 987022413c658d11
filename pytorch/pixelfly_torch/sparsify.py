"""``sparsify(model, plan)``: replaces, in place, the layers a Pixelfly plan names by ``PixelflyLinear``.

A plan is the JSON that ``pixelfly analyze --json`` and the editor's "Export plan" write (or the
dict read from it, or the core ``Plan`` inside it): its layers carry a module path such as
``transformer.h.*.attn.c_attn``, where ``*`` stands for a ``ModuleList`` / ``Sequential`` index, the
sizes ``in``/``out``, and for the layers to sparsify a ``config`` (block, butterflySize, nFactors,
rank, globalSize, shuffle).

Linear maps that can be replaced: ``nn.Linear``; Hugging Face's ``Conv1D`` (weight stored
transposed, ``[in, out]``); convolutions whose kernel, stride and dilation are all 1 with one group
and no padding (a linear map over channels at every position); the projections of an
``nn.MultiheadAttention`` (``<attn>.in_proj``, ``<attn>.out_proj``), whose attention module becomes a
``PixelflyMultiheadAttention``. A layer the plan names that is missing, has other sizes or is not
such a linear map is an error naming the module and the mismatch.
"""
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .layout import PixelflyConfigError, flat_block_butterfly_layout
from .attention import PixelflyMultiheadAttention, mha_unsupported
from .linear import PixelflyLinear, config_kwargs

__all__ = ["PixelflyPlanError", "Replacement", "PixelflyPointwiseConv", "linear_map", "plan_layers", "sparsify"]

# Plan files are small; a bigger one is not a plan (and is not read into memory).
_MAX_PLAN_BYTES = 16 << 20


class PixelflyPlanError(ValueError):
    """A plan that does not fit the model (or is not a plan); the message names the layer."""


@dataclass
class Replacement:
    """One module ``sparsify`` replaced."""
    name: str            # module path in the model
    kind: str            # the replaced class: Linear, Conv1D, Conv2d, ...
    in_features: int
    out_features: int
    config: dict         # PixelflyLinear keyword arguments
    density: float       # kept blocks / blocks
    params_before: int
    params_after: int
    init_error: float = None  # from_dense: relative error of the starting weight (else None)

    def __str__(self):
        err = "" if self.init_error is None else f", init error {self.init_error:.3f}"
        return (f"{self.name}: {self.kind}({self.in_features}→{self.out_features}) → PixelflyLinear "
                f"b{self.config['block']} S{self.config['butterfly_size']} F{self.config['n_factors']} r{self.config['rank']}, "
                f"density {self.density:.3f}, params {self.params_before:,} → {self.params_after:,}{err}")


class PixelflyPointwiseConv(PixelflyLinear):
    """A PixelflyLinear over the channels (dim 1) of a pointwise convolution's input ``[N, C, *spatial]``."""

    def forward(self, x):
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


def _is_hf_conv1d(m):
    return type(m).__name__ == "Conv1D" and hasattr(m, "nf") and isinstance(getattr(m, "weight", None), torch.Tensor)


def _is_pointwise_conv(m):
    return (isinstance(m, nn.modules.conv._ConvNd) and not m.transposed and m.groups == 1
            and all(k == 1 for k in m.kernel_size) and all(s == 1 for s in m.stride)
            and all(d == 1 for d in m.dilation) and (m.padding == "valid" or all(p == 0 for p in m.padding)))


def linear_map(module):
    """(weight [out, in], bias or None) of a module that is a linear map over its last (or channel)
    axis, or PixelflyPlanError saying why it is not one."""
    if isinstance(module, nn.Linear):
        return module.weight, module.bias
    if _is_hf_conv1d(module):
        return module.weight.t(), module.bias
    if isinstance(module, nn.modules.conv._ConvNd):
        if not _is_pointwise_conv(module):
            raise PixelflyPlanError(
                f"{type(module).__name__} with kernel {module.kernel_size}, stride {module.stride}, padding {module.padding}, "
                f"dilation {module.dilation}, groups {module.groups} is not a linear map over channels "
                "(only 1×1 kernels, stride 1, no padding, one group are)")
        return module.weight.flatten(1), module.bias
    raise PixelflyPlanError(f"{type(module).__name__} is not a linear layer (nn.Linear, Hugging Face Conv1D or a 1×1 convolution)")


def _read_plan(plan):
    if isinstance(plan, (str, Path)):
        path = Path(plan)
        try:
            with open(path, "rb") as f:
                data = f.read(_MAX_PLAN_BYTES + 1)
        except OSError as e:
            raise PixelflyPlanError(f"{path}: cannot read the plan ({e.strerror or e})") from None
        if len(data) > _MAX_PLAN_BYTES:
            raise PixelflyPlanError(f"{path}: over {_MAX_PLAN_BYTES >> 20} MB, not a Pixelfly plan")
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise PixelflyPlanError(f"{path}: not JSON ({e})") from None
    return plan


def plan_layers(plan):
    """The layers a plan sparsifies: ``[(name pattern, in, out, PixelflyLinear kwargs)]``.

    Accepts a core Plan (``{"layers": [{name, in, out, sparsify, config}]}``), a document holding one under
    ``"plan"`` (the editor's "Export plan"), the analysis (``pixelfly analyze --json``: layers with a
    ``decision`` each), or a path to such a file.
    """
    doc = _read_plan(plan)
    # An exported plan holds a core Plan under "plan"; the analysis JSON holds the decisions in its
    # own "layers" (its "plan" is the summary alone); a core Plan is the object itself.
    layers = None
    for holder in ((doc.get("plan"), doc) if isinstance(doc, dict) else ()):
        if isinstance(holder, dict) and isinstance(holder.get("layers"), list):
            layers = holder["layers"]
            break
    if layers is None:
        raise PixelflyPlanError("not a Pixelfly plan: expected {\"layers\": [...]} or a document with a \"plan\" "
                                "(pixelfly analyze --json, or the editor's Export plan)")
    out = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or not isinstance(layer.get("name"), str):
            raise PixelflyPlanError(f"plan layer {i}: expected an object with a \"name\"")
        name = layer["name"]
        decision = layer.get("decision") if isinstance(layer.get("decision"), dict) else layer
        if not decision.get("sparsify"):
            continue
        if not isinstance(decision.get("config"), dict):
            raise PixelflyPlanError(f"plan layer {name}: sparsify is set but there is no config")
        for key in ("in", "out"):
            if isinstance(layer.get(key), bool) or not isinstance(layer.get(key), int) or layer[key] < 1:
                raise PixelflyPlanError(f"plan layer {name}: \"{key}\" must be a positive integer, got {layer.get(key)!r}")
        try:
            kwargs = config_kwargs(decision["config"])
        except PixelflyConfigError as e:
            raise PixelflyPlanError(f"plan layer {name}: config {e}") from None
        out.append((name, layer["in"], layer["out"], kwargs))
    return out


def _pattern(name):
    return re.compile("^" + r"\.".join(r"\d+" if part == "*" else re.escape(part) for part in name.split(".")) + "$")


def _set_module(model, name, module):
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _params(module):
    return sum(p.numel() for p in module.parameters())


def _check_layout(name, in_f, out_f, kwargs):
    """The layout exists for these sizes (checked before anything is replaced)."""
    try:
        flat_block_butterfly_layout(out_f, in_f, kwargs.get("block", 32), kwargs.get("butterfly_size", 16),
                                    kwargs.get("n_factors", 2), kwargs.get("global_size", 0), kwargs.get("shuffle", False))
    except PixelflyConfigError as e:
        raise PixelflyPlanError(f"{name}: config {e}") from None


def _mha_projection(modules, name):
    """(attention module path, "in_proj" | "out_proj") when `name` is a projection of an
    nn.MultiheadAttention (its packed in_proj is a parameter; its out_proj is read by the functional
    forward): such projections are made Pixelfly by replacing the attention module."""
    parent, _, proj = name.rpartition(".")
    if proj in ("in_proj", "out_proj") and isinstance(modules.get(parent), nn.MultiheadAttention):
        return parent, proj
    return None


def _new_layer(cls, dense, kwargs, from_dense):
    """A Pixelfly layer replacing `dense` (an nn.Linear, Conv1D or pointwise conv)."""
    if from_dense:
        return cls.from_dense(dense, kwargs)
    weight, bias = linear_map(dense)
    return cls(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device, dtype=weight.dtype, **kwargs)


@torch.no_grad()
def sparsify(model, plan, from_dense=False):
    """Replaces the layers ``plan`` sparsifies by PixelflyLinear, in place; returns ``[Replacement]``.

    ``from_dense=False``: fresh layers with Pixelfly's initialisation (to train the sparse model from
    scratch); ``from_dense=True``: layers started from the dense weights (``PixelflyLinear.from_dense``),
    for a pretrained model. Each new layer has the replaced layer's device, dtype, bias and mode. The
    projections of an ``nn.MultiheadAttention`` (``<attn>.in_proj``, ``<attn>.out_proj``) are made
    Pixelfly by replacing the attention module with a ``PixelflyMultiheadAttention``. Nothing is
    replaced unless every planned layer matches (errors name the module and the mismatch).
    """
    wanted = plan_layers(plan)
    modules = dict(model.named_modules())
    work = []
    attention = {}  # attention module path → {"in_proj" | "out_proj": kwargs}
    for name, in_f, out_f, kwargs in wanted:
        pattern = _pattern(name)
        matches = [n for n in modules if pattern.match(n)]
        # nn.MultiheadAttention's in_proj is a parameter, not a module: match the attention modules.
        parent_pattern = _pattern(name.rpartition(".")[0]) if name.endswith(".in_proj") else None
        matches += [f"{n}.in_proj" for n in modules if parent_pattern and parent_pattern.match(n) and _mha_projection(modules, f"{n}.in_proj")]
        if not matches:
            tail = name.rsplit(".", 1)[-1]
            near = sorted(n for n in modules if n.rsplit(".", 1)[-1] == tail)[:5]
            hint = f"; modules named {tail!r}: {', '.join(near)}" if near else ""
            raise PixelflyPlanError(f"plan layer {name}: no module of the model matches{hint}")
        for n in matches:
            mha = _mha_projection(modules, n)
            if mha:
                parent, proj = mha
                m = modules[parent]
                why = mha_unsupported(m)
                if why:
                    raise PixelflyPlanError(f"{parent}: MultiheadAttention cannot be made Pixelfly: {why}")
                e = m.embed_dim
                want = (e, 3 * e) if proj == "in_proj" else (e, e)
                if (in_f, out_f) != want:
                    raise PixelflyPlanError(f"{n}: the plan has {in_f}→{out_f}, the module is {want[0]}→{want[1]}")
                _check_layout(n, in_f, out_f, kwargs)
                attention.setdefault(parent, {})[proj] = kwargs
                continue
            m = modules[n]
            if isinstance(m, (PixelflyLinear, PixelflyMultiheadAttention)):
                continue  # already sparse
            try:
                weight, _ = linear_map(m)
            except PixelflyPlanError as e:
                raise PixelflyPlanError(f"{n}: {e}") from None
            if tuple(weight.shape) != (out_f, in_f):
                raise PixelflyPlanError(f"{n}: the plan has {in_f}→{out_f}, the module is {weight.shape[1]}→{weight.shape[0]}")
            _check_layout(n, in_f, out_f, kwargs)
            work.append((n, m, kwargs))
    done = []

    def record(name, kind, old, new):
        w, _ = linear_map(old)
        done.append(Replacement(name, kind, w.shape[1], w.shape[0], new.config(), new.density, _params(old), _params(new),
                                getattr(new, "init_error", None)))

    for n, m, kwargs in work:
        new = _new_layer(PixelflyPointwiseConv if isinstance(m, nn.modules.conv._ConvNd) else PixelflyLinear, m, kwargs, from_dense)
        new.train(m.training)
        _set_module(model, n, new)
        record(n, type(m).__name__, m, new)
    for parent, projs in attention.items():
        def make(proj):
            def build(dense):
                if proj not in projs:
                    return dense
                new = _new_layer(PixelflyLinear, dense, projs[proj], from_dense)
                record(f"{parent}.{proj}", f"MultiheadAttention.{proj}", dense, new)
                return new
            return build
        _set_module(model, parent, PixelflyMultiheadAttention.from_mha(modules[parent], make("in_proj"), make("out_proj")))
    return done

"""The daemon's PyTorch runner: one training job of the user's own model, in its own process.

The Pixelfly daemon starts ``python -m pixelfly_torch.runner`` with a Node IPC channel (line-delimited
JSON on the file descriptor named by ``NODE_CHANNEL_FD``) and drives it with the job messages of
``protocol/engineJob.ts``, one request at a time:

    size      what inspect answers, from the model built and run on torch's meta device (sizes,
              no data): the daemon refuses a job too big for the machine before it allocates
    inspect   import the model file BY PATH, build the model (a class with keyword arguments or a
              config object, or a factory/registry function), make the Pixelfly copy with
              ``sparsify(copy, plan)``, and measure what one sample's forward keeps for backward:
              what the daemon's memory estimate needs before anything big is allocated
    prepare   load the data the model eats, make the optimizers
    step      one AdamW step of one variant on its next batch (both variants see the same batches)
    evaluate  the loss (and accuracy or perplexity) on the test split
    save/load a checkpoint (weights, optimizer state, data position)

A Python exception in the user's code is answered as an error (kind ``model``) carrying the
traceback; nothing the model does can reach the daemon, which only ever sent a path. Nobody runs
this by hand.
"""
import copy
import gzip
import importlib
import importlib.util
import inspect as pyinspect
import json
import math
import os
import re
import socket
import struct
import sys
import time
import traceback
from pathlib import Path

# Set before torch starts its thread pools. OpenBLAS (Debian torch's fp32 GEMM) would otherwise keep
# its idle workers spinning for about 0.1 s after every product, taking cores from the OpenMP
# threads that run the Pixelfly kernels next (see pytorch/README.md, Speed).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import torch
import torch.nn as nn
import torch.nn.functional as F

import pixelfly_torch
from pixelfly_torch import sizing
from pixelfly_torch.autocast import autocast_norms

# Names a model's constructor gives its config object (the analysis' list: server/analysis/analyze.ts).
CONFIG_ARG = re.compile(r"^(config|cfg|args|hparams|params|conf|model_args|model_config)$", re.I)
CONFIG_CLASS = re.compile(r"(config|cfg|args|params)$", re.I)
# Where a language model keeps its context length, and a vision model its image size.
CONTEXT_KEYS = ("block_size", "n_positions", "max_position_embeddings", "max_seq_len", "seq_len", "context_length", "n_ctx", "max_len")
IMAGE_KEYS = ("img_size", "image_size", "input_size", "resolution")
CHANNEL_KEYS = ("channels", "in_chans", "in_channels", "num_channels")
# Module-level constants a file states its image size with (``IMAGE = 28``), for a convolution-first model.
IMAGE_CONSTANTS = ("IMAGE", "IMAGE_SIZE", "IMG_SIZE", "INPUT_SIZE", "RESOLUTION")
# The image side of the datasets the runner reads, for a convolution-first model that states none.
DATASET_IMAGE = {"fashion-mnist": 28}
SYNTHETIC_TOKENS = (65536, 8192)
SYNTHETIC_SAMPLES = (4096, 1024)
DEFAULT_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


class Rejected(Exception):
    """Input that cannot be used (the dataset, the inputs, a plan that does not fit): said as is."""


class ModelError(Exception):
    """The user's code raised: the message carries its traceback."""


class CheckpointError(Exception):
    pass


def _allocator():
    """The malloc this process runs on, in words: the daemon preloads tcmalloc where installed."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "malloc unknown"
    return "tcmalloc" if "libtcmalloc" in maps else "glibc malloc"


def _memory():
    """(resident, peak resident) bytes of this process."""
    rss = peak = 0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
    except OSError:
        import resource
        peak = rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return rss, max(rss, peak)


def _user_traceback(what, exc):
    """The Python error as the user would see it, without this runner's frames."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(str(Path(__file__).parent))]
    lines = traceback.format_list(frames[-8:]) + traceback.format_exception_only(type(exc), exc)
    return f"{what}: {type(exc).__name__}: {exc}\n" + "".join(lines).rstrip()


# --- importing and building the user's model ---------------------------------------------------

def _package_root(file):
    """The outermost folder above ``file`` that is still a package (has __init__.py), or None."""
    root = None
    d = file.parent
    while (d / "__init__.py").exists():
        root = d
        d = d.parent
    return root


def import_file(file, paths):
    """The module of ``file``, imported by path the way its project imports it: a file inside a
    package (folders with __init__.py) as ``package.module`` so its relative imports work, without
    putting the package's parent folder ahead of the installed libraries; a lone file as a script
    (its folder first on sys.path, like ``python file.py``). ``paths`` (workspace folders, library
    folders) come after."""
    file = Path(file).resolve()
    for p in paths:
        if p not in sys.path:
            sys.path.append(p)
    root = _package_root(file)
    if root is None:
        sys.path.insert(0, str(file.parent))
        name = "pixelfly_user_" + re.sub(r"\W", "_", file.stem)
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    # The package itself, loaded from its own __init__.py (its siblings do not become importable).
    top = root.name
    if top not in sys.modules:
        init = root / "__init__.py"
        spec = importlib.util.spec_from_file_location(top, init, submodule_search_locations=[str(root)])
        pkg = importlib.util.module_from_spec(spec)
        sys.modules[top] = pkg
        spec.loader.exec_module(pkg)
    dotted = ".".join((top, *file.relative_to(root).with_suffix("").parts))
    if dotted.endswith(".__init__"):
        dotted = dotted[: -len(".__init__")]
    return importlib.import_module(dotted)


def _config_class(module, cls):
    """The class a model's config object is made from: Hugging Face's ``config_class``, else the
    file's last class named like a config (GPTConfig, ModelArgs), else its last dataclass."""
    if isinstance(getattr(cls, "config_class", None), type):
        return cls.config_class
    own = [v for v in vars(module).values() if isinstance(v, type) and not issubclass(v, nn.Module)]
    named = [v for v in own if CONFIG_CLASS.search(v.__name__)]
    if named:
        return named[-1]
    data = [v for v in own if hasattr(v, "__dataclass_fields__")]
    return data[-1] if data else None


def _make_config(module, cls, param, settings):
    """The config object ``cls`` takes in ``param``, with ``settings`` as its fields."""
    factory = getattr(cls, "get_default_config", None)
    if callable(factory):  # minGPT's convention
        config = factory()
    else:
        ann = param.annotation if isinstance(param.annotation, type) and param.annotation is not param.empty else None
        ccls = ann or _config_class(module, cls)
        if ccls is None:
            raise Rejected(f"{cls.__name__} takes a config object ({param.name}) and the file defines no config class to build it from")
        try:
            return ccls(**settings)
        except TypeError:
            config = ccls()
    for k, v in settings.items():
        setattr(config, k, v)
    return config


def build_model(module, name, settings):
    """The model ``name`` of ``module`` built with ``settings``: constructor or factory keyword
    arguments, or the fields of the config object the constructor takes (as the analysis' --set).
    Returns the model and the settings it took no parameter for."""
    obj = getattr(module, name, None)
    if obj is None:
        found = [k for k, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == module.__name__]
        raise Rejected(f"{module.__file__} defines no {name!r} (its models: {', '.join(found) or 'none'})")
    if isinstance(obj, type):
        sig = pyinspect.signature(obj.__init__)
        params = [p for p in list(sig.parameters.values())[1:] if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        cfg = next((p for p in params if CONFIG_ARG.match(p.name) and p.name not in settings and p.default is p.empty), None)
        if cfg is not None:
            direct = {k: v for k, v in settings.items() if k in sig.parameters and k != cfg.name}
            fields = {k: v for k, v in settings.items() if k not in direct}
            return obj(**{cfg.name: _make_config(module, obj, cfg, fields)}, **direct), []
        return _call_with(obj, sig, settings)
    if callable(obj):
        return _call_with(obj, pyinspect.signature(obj), settings)
    raise Rejected(f"{name} in {module.__file__} is a {type(obj).__name__}, not a model class or a function that builds one")


def _call_with(fn, sig, settings):
    """fn(**settings), leaving out settings it takes no parameter for (pins only the analysis
    needs, such as an image size or the tokens per sample) unless it takes **kwargs; returns the
    model and the names left out."""
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return fn(**settings), []
    taken = {k: v for k, v in settings.items() if k in sig.parameters}
    return fn(**taken), sorted(set(settings) - set(taken))


def _setting(model, settings, keys):
    for k in keys:
        if k in settings and isinstance(settings[k], int):
            return settings[k]
    for holder in (getattr(model, "config", None), getattr(model, "params", None), getattr(model, "args", None)):
        for k in keys:
            v = getattr(holder, k, None)
            if isinstance(v, int) and not isinstance(v, bool):
                return v
    return None


def _module_image_size(module):
    for name in IMAGE_CONSTANTS:
        v = getattr(module, name, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v, f"the file's {name} = {v}"
    return None, None


def infer_inputs(model, settings, module=None, dataset_kind=None):
    """What the model eats, read off the built model: token ids (its first layer is an embedding),
    images (an image size in its settings or config, or a convolution first), or feature vectors
    (a linear layer first). A convolution-first model that states no size in its settings or config
    takes the one its file states (``IMAGE = 28``), else the dataset's own (Fashion-MNIST: 28); the
    second value says where such a size came from (else None)."""
    first = next((m for m in model.modules() if isinstance(m, (nn.Embedding, nn.modules.conv._ConvNd, nn.Linear))), None)
    if isinstance(first, nn.Embedding):
        context = _setting(model, settings, CONTEXT_KEYS)
        if context is None:
            pos = [m for m in model.modules() if isinstance(m, nn.Embedding) and m is not first]
            context = pos[0].num_embeddings if pos else None
        if context is None:
            raise Rejected("the model eats token ids but its context length is not in its settings or config "
                           f"({', '.join(CONTEXT_KEYS)}): give the job's model.inputs")
        return {"kind": "tokens", "vocab": first.num_embeddings, "context": context}, None
    size = _setting(model, settings, IMAGE_KEYS)
    conv = isinstance(first, nn.modules.conv._ConvNd)
    if size is not None:
        # A patch embedding may be a Linear over flattened patches (lucidrains): the image size says images.
        channels = _setting(model, settings, CHANNEL_KEYS) or (first.in_channels if conv else 3)
        return {"kind": "images", "channels": channels, "height": size, "width": size}, None
    if conv:
        size, where = _module_image_size(module) if module is not None else (None, None)
        if size is None and dataset_kind in DATASET_IMAGE:
            size, where = DATASET_IMAGE[dataset_kind], f"the {dataset_kind} images"
        if size is not None:
            return {"kind": "images", "channels": first.in_channels, "height": size, "width": size}, f"image size {size}×{size} from {where}"
        raise Rejected(f"the model eats images but its size is not in its settings ({', '.join(IMAGE_KEYS)}) or its file "
                       f"({', '.join(IMAGE_CONSTANTS)}), and the dataset does not fix one: give the job's model.inputs")
    if isinstance(first, nn.Linear):
        return {"kind": "features", "features": first.in_features}, None
    raise Rejected("cannot tell what the model eats (no embedding, convolution or linear layer): give the job's model.inputs")


# --- calling the model and finding its loss ------------------------------------------------------

class Call:
    """How a batch goes into the model and a loss comes out: the model's own loss when its forward
    takes targets (nanoGPT, minGPT: ``targets``) or labels (Hugging Face: ``labels``, shifted
    inside) and returns a loss; otherwise cross-entropy on its output."""

    def __init__(self, model, inputs):
        sig = pyinspect.signature(model.forward).parameters
        names = [n for n, p in sig.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        self.tokens = inputs["kind"] == "tokens"
        self.first = names[0] if names else None
        self.target_arg = next((n for n in ("targets", "labels", "target", "y") if n in sig), None) if self.tokens else None
        self.note = None

    def loss(self, model, x, y):
        if self.target_arg is not None:
            # Hugging Face shifts labels inside: it gets the window itself; the others get the next tokens.
            target = x if self.target_arg == "labels" else y
            out = model(**{self.first: x, self.target_arg: target}) if self.first else model(x, **{self.target_arg: target})
            loss = _own_loss(out)
            if loss is not None:
                self.note = self.note or f"the model's own loss (forward given {self.target_arg})"
                return loss, out
        else:
            out = model(x)
        logits = _logits(out)
        self.note = self.note or "cross-entropy on the model's output"
        if self.tokens:
            if logits.dim() != 3:
                raise Rejected(f"a token model's output should be logits [batch, tokens, vocab], got {tuple(logits.shape)}")
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)), out
        if logits.dim() != 2:
            raise Rejected(f"a classifier's output should be logits [batch, classes], got {tuple(logits.shape)}")
        return F.cross_entropy(logits, y), out


def _own_loss(out):
    loss = getattr(out, "loss", None)
    if loss is None and isinstance(out, dict):
        loss = out.get("loss")
    if loss is None and isinstance(out, (tuple, list)):
        loss = next((o for o in out if torch.is_tensor(o) and o.dim() == 0), None)
    return loss if torch.is_tensor(loss) and loss.dim() == 0 else None


def _logits(out):
    if torch.is_tensor(out):
        return out
    for key in ("logits",):
        v = getattr(out, key, None) if not isinstance(out, dict) else out.get(key)
        if torch.is_tensor(v):
            return v
    if isinstance(out, (tuple, list)):
        v = next((o for o in out if torch.is_tensor(o) and o.dim() > 0), None)
        if v is not None:
            return v
    raise Rejected(f"cannot find logits in the model's output ({type(out).__name__})")


# --- data ---------------------------------------------------------------------------------------

def _read_bounded(path, limit):
    p = Path(path)
    if not p.is_file():
        raise Rejected(f"dataset: {path} is not a file")
    if p.stat().st_size > limit:
        raise Rejected(f"dataset: {path} is {p.stat().st_size:,} bytes, over the {limit:,} this job may load")
    data = p.read_bytes()
    if p.suffix == ".gz":
        with gzip.GzipFile(fileobj=__import__("io").BytesIO(data)) as g:
            data = g.read(limit + 1)
        if len(data) > limit:
            raise Rejected(f"dataset: {path} inflates beyond the {limit:,} bytes this job may load")
    return data


def _idx(path, limit):
    data = _read_bounded(path, limit)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise Rejected(f"dataset: {path} is not an IDX file of unsigned bytes")
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    body = data[4 + 4 * dims:]
    if len(body) != math.prod(shape):
        raise Rejected(f"dataset: {path} holds {len(body):,} bytes for shape {shape}")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape)


def _find(folder, stem):
    for name in (stem, stem + ".gz"):
        if (Path(folder) / name).exists():
            return Path(folder) / name
    raise Rejected(f"dataset: {folder} has no {stem} (or {stem}.gz)")


def _fit_images(x, inputs):
    """[N, H, W] or [N, C, H, W] images (any range) to the model's C×H×W: centred zero padding when
    the model's images are larger, bilinear resizing when smaller; grey channels repeated."""
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if x.dim() == 3:
        x = x.unsqueeze(1)
    c, h, w = inputs["channels"], inputs["height"], inputs["width"]
    how = []
    if x.shape[2] <= h and x.shape[3] <= w:
        if (x.shape[2], x.shape[3]) != (h, w):
            top, left = (h - x.shape[2]) // 2, (w - x.shape[3]) // 2
            x = F.pad(x, (left, w - x.shape[3] - left, top, h - x.shape[2] - top))
            how.append(f"padded to {h}×{w}")
    else:
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        how.append(f"resized to {h}×{w}")
    if x.shape[1] != c:
        if x.shape[1] != 1:
            raise Rejected(f"dataset images have {x.shape[1]} channels, the model takes {c}")
        x = x.expand(-1, c, -1, -1).contiguous()
        how.append(f"grey repeated to {c} channels")
    return (x - 0.5) / 0.5, how


class Data:
    """A train and a test split of what the model eats. Classification inputs are kept as loaded
    (Fashion-MNIST: 28×28 bytes) and made the model's input a batch at a time by ``transform``."""

    def __init__(self, name, kind, train, test, note=None, transform=None):
        self.name, self.kind, self.note = name, kind, note
        self.train, self.test = train, test  # tokens: 1-D LongTensor; else (x, y)
        self.transform = transform or (lambda x: x)

    def with_note(self, note):
        self.note = note
        return self


def load_data(req, inputs, seed, limit):
    kind = req["kind"]
    path = req.get("path")
    tokens = inputs["kind"] == "tokens"
    g = torch.Generator().manual_seed(seed)
    if kind == "fashion-mnist" and tokens:
        if path:
            raise Rejected("dataset: Fashion-MNIST holds images; this model eats token ids: pick a text file (text:FILE) or synthetic")
        kind, note = "synthetic", "Fashion-MNIST holds images and this model eats token ids: training on seeded synthetic tokens (pick a text file for a real corpus)"
    else:
        note = None
    if kind == "synthetic":
        if tokens:
            v = inputs["vocab"]
            n = sum(SYNTHETIC_TOKENS)
            # A learnable stream: each token is an affine function of the one before, with some noise.
            noise = torch.randint(0, 4, (n,), generator=g).tolist()
            vals = [0]
            for i in range(1, n):
                vals.append((5 * vals[-1] + 3 + noise[i]) % v)
            t = torch.tensor(vals, dtype=torch.long)
            return Data(f"synthetic tokens (seeded, vocab {v})", "synthetic", t[:SYNTHETIC_TOKENS[0]], t[SYNTHETIC_TOKENS[0]:], note)
        shape = (inputs["channels"], inputs["height"], inputs["width"]) if inputs["kind"] == "images" else (inputs["features"],)
        n = sum(SYNTHETIC_SAMPLES)
        x = torch.randn(n, *shape, generator=g)
        teacher = torch.randn(math.prod(shape), 10, generator=g)
        y = (x.reshape(n, -1) @ teacher).argmax(1)
        cut = SYNTHETIC_SAMPLES[0]
        what = "×".join(map(str, shape))
        return Data(f"synthetic {what} inputs, 10 classes (seeded)", "synthetic", (x[:cut], y[:cut]), (x[cut:], y[cut:]), note)
    if kind == "text":
        if not tokens:
            raise Rejected("dataset: a text corpus feeds token models; this model eats " + inputs["kind"])
        raw = _read_bounded(path, limit)
        v = inputs["vocab"]
        if v >= 256:
            t = torch.frombuffer(bytearray(raw), dtype=torch.uint8).long()
            how = "bytes"
        else:
            chars = sorted(set(raw.decode("utf-8", errors="replace")))
            if len(chars) > v:
                raise Rejected(f"dataset: {path} has {len(chars)} distinct characters but the model's vocabulary is {v} "
                               "(byte tokens need a vocabulary of at least 256)")
            index = {c: i for i, c in enumerate(chars)}
            t = torch.tensor([index[c] for c in raw.decode("utf-8", errors="replace")], dtype=torch.long)
            how = f"characters ({len(chars)} distinct)"
        if t.numel() < 2 * (inputs["context"] + 1):
            raise Rejected(f"dataset: {path} holds {t.numel()} tokens, too few for windows of {inputs['context']}")
        cut = int(0.9 * t.numel())
        return Data(f"{Path(path).name} ({t.numel():,} tokens as {how})", "text", t[:cut], t[cut:], note)
    if kind == "fashion-mnist":
        folder = path or os.environ.get("PIXELFLY_FASHION_MNIST") or DEFAULT_FASHION_MNIST
        try:
            xs = [_idx(_find(folder, f"{s}-images-idx3-ubyte"), limit) for s in ("train", "t10k")]
            ys = [_idx(_find(folder, f"{s}-labels-idx1-ubyte"), limit).long() for s in ("train", "t10k")]
        except Rejected:
            if path:
                raise
            return load_data({"kind": "synthetic"}, inputs, seed, limit).with_note(
                f"Fashion-MNIST is not installed in {folder} (Debian package dataset-fashion-mnist): training on synthetic inputs")
        return _classification("Fashion-MNIST", "fashion-mnist", xs, ys, inputs)
    if kind == "npy":
        import numpy as np
        folder = Path(path)
        def arr(name):
            f = folder / name
            if f.stat().st_size > limit:
                raise Rejected(f"dataset: {f} is over the {limit:,} bytes this job may load")
            return torch.from_numpy(np.load(f, allow_pickle=False))
        if not (folder / "x.npy").exists():
            raise Rejected(f"dataset: {folder} has no x.npy")
        if tokens:
            t = arr("x.npy").reshape(-1).long()
            if int(t.max()) >= inputs["vocab"] or int(t.min()) < 0:
                raise Rejected(f"dataset: {folder}/x.npy holds token ids outside 0..{inputs['vocab'] - 1}")
            cut = int(0.9 * t.numel())
            return Data(f"{folder.name}/x.npy ({t.numel():,} tokens)", "npy", t[:cut], t[cut:])
        x, y = arr("x.npy"), arr("y.npy").long()
        if (folder / "x_test.npy").exists():
            xs, ys = [x, arr("x_test.npy")], [y, arr("y_test.npy").long()]
        else:
            cut = int(0.9 * len(y))
            xs, ys = [x[:cut], x[cut:]], [y[:cut], y[cut:]]
        return _classification(f"{folder.name} (.npy)", "npy", xs, ys, inputs)
    raise Rejected(f"dataset kind {kind!r} is not known")


def _classification(name, kind, xs, ys, inputs):
    if inputs["kind"] == "images":
        _, how = _fit_images(xs[0][:1], inputs)  # the channels must fit (raises), and how they are fitted
        transform = lambda b: _fit_images(b, inputs)[0]
    else:
        how = []
        xs = [x.reshape(len(x), -1) for x in xs]
        if xs[0].shape[1] != inputs["features"]:
            raise Rejected(f"dataset {name} has {xs[0].shape[1]} values per sample; the model takes {inputs['features']} features")
        transform = lambda b: b.float() / 255.0 if b.dtype == torch.uint8 else b.float()
    return Data(name + (f" ({', '.join(how)})" if how else ""), kind, (xs[0], ys[0]), (xs[1], ys[1]), transform=transform)


def _split(windows):
    """Inputs and next-token targets of [batch, context + 1] windows, each contiguous (models call .view on them)."""
    return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()


class Batches:
    """One variant's pass over the training split: a seeded shuffled order, the same for both variants."""

    def __init__(self, data, inputs, batch, seed):
        self.data, self.batch, self.seed = data, batch, seed
        self.tokens = inputs["kind"] == "tokens"
        self.context = inputs.get("context")
        n = (data.train.numel() - 1) // self.context if self.tokens else len(data.train[1])
        self.samples = n
        if n < batch:
            raise Rejected(f"dataset {data.name} has {n} training {'windows' if self.tokens else 'samples'}, fewer than a batch of {batch}")
        self.epoch, self.pos = 0, 0
        self._order()

    def _order(self):
        self.order = torch.randperm(self.samples, generator=torch.Generator().manual_seed(self.seed + self.epoch))

    @property
    def steps_per_epoch(self):
        return self.samples // self.batch

    def next(self):
        if self.pos + self.batch > self.samples:
            self.epoch, self.pos = self.epoch + 1, 0
            self._order()
        idx = self.order[self.pos:self.pos + self.batch]
        self.pos += self.batch
        if self.tokens:
            starts = idx * self.context
            w = torch.stack([self.data.train[s:s + self.context + 1] for s in starts.tolist()])
            return _split(w)
        x, y = self.data.train
        return self.data.transform(x[idx]), y[idx]

    def state(self):
        return {"epoch": self.epoch, "pos": self.pos}

    def restore(self, s):
        self.epoch, self.pos = int(s["epoch"]), int(s["pos"])
        self._order()


def test_batches(data, inputs, batch, max_samples):
    if inputs["kind"] == "tokens":
        t, T = data.test, inputs["context"]
        n = (t.numel() - 1) // T
        if max_samples > 0:
            n = min(n, max(1, max_samples // T))
        for i in range(0, n, batch):
            w = torch.stack([t[s * T:s * T + T + 1] for s in range(i, min(n, i + batch))])
            yield _split(w)
        return
    x, y = data.test
    n = len(y) if max_samples <= 0 else min(len(y), max_samples)
    for i in range(0, n, batch):
        yield data.transform(x[i:i + batch]), y[i:i + batch]


# --- the job ------------------------------------------------------------------------------------

def resolve_precision(asked, probe):
    """The job's product precision and why ('fp16' never arrives: the daemon refuses it for this
    runner). 'bf16' runs both variants under torch.autocast: products in bf16, weights, gradients and
    optimizer state fp32. 'auto' is bf16 where the kernels have bf16 products (AMX, AVX512-BF16), as
    the engine's is, once ``probe()`` (a forward and backward under autocast) has run: torch 1.13's
    CPU autocast leaves some layers' inputs uncast (a LayerNorm after an autocast product fails), and
    such a model trains in fp32, saying why, rather than failing at its first step."""
    if asked != "auto":
        return asked, None
    ops = pixelfly_torch.extension.ops
    if ops is None:
        return "fp32", f"precision auto: fp32, as pixelfly_torch runs masked-dense ({pixelfly_torch.extension.native_reason()})"[:400]
    path = ops.bf16_path()
    if path == "fp32-fallback":
        return "fp32", "precision auto: fp32 (the kernels have no bf16 products on this CPU)"
    try:
        probe()
    except Exception as e:  # noqa: BLE001 - any failure of the user's model under autocast means fp32
        last = (str(e).strip().splitlines() or [""])[-1]
        return "fp32", f"precision auto: fp32, as torch {torch.__version__}'s autocast(bfloat16) fails on this model ({type(e).__name__}: {last})"[:400]
    return "bf16", f"precision auto: bf16 products ({path}) under torch.autocast, weights fp32"


class Variant:
    def __init__(self, model, call, hyper, total_steps, precision="fp32"):
        self.model, self.call, self.hyper = model, call, hyper
        self.autocast = precision == "bf16"
        decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
        rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": hyper["weightDecay"]}, {"params": rest, "weight_decay": 0.0}],
                                     lr=hyper["lr"])
        warm, total = hyper["warmupSteps"], max(1, total_steps)
        # Linear warm-up, then cosine decay to a tenth of the learning rate.
        def factor(step):
            if step < warm:
                return (step + 1) / warm
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, factor)
        self.batches = None
        self.params = sum(p.numel() for p in model.parameters())
        # The model's own random stream (dropout and whatever else its forward draws), the same seed
        # for both variants: each sees the noise it would see alone, and a checkpoint that saves the
        # stream resumes the run exactly where it stopped.
        self.rng = torch.Generator().manual_seed(hyper["seed"] + 2).get_state()

    def step(self):
        x, y = self.batches.next()
        self.model.train()
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.rng)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
                loss, _ = self.call.loss(self.model, x, y)
            self.rng = torch.get_rng_state()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.hyper["gradClip"] > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.hyper["gradClip"])
        lr = self.opt.param_groups[0]["lr"]
        self.opt.step()
        self.sched.step()
        ms = (time.perf_counter() - t0) * 1000
        return {"loss": float(loss), "ms": ms, "lr": lr}

    @torch.no_grad()
    def evaluate(self, data, inputs, batch, max_samples):
        self.model.eval()
        total, count, correct = 0.0, 0, 0
        for x, y in test_batches(data, inputs, batch, max_samples):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
                loss, out = self.call.loss(self.model, x, y)
            loss = loss.float()
            n = y.numel()
            total += float(loss) * n
            count += n
            if inputs["kind"] != "tokens":
                correct += int((_logits(out).argmax(-1) == y).sum())
        if count == 0:
            return {"loss": float("nan")}
        loss = total / count
        if inputs["kind"] == "tokens":
            return {"loss": loss, "perplexity": math.exp(min(loss, 50))}
        return {"loss": loss, "accuracy": correct / count}


def saved_bytes_per_sample(model, call, inputs, device="cpu"):
    """Bytes one sample's forward (and loss) keeps for the backward, on a batch of one (each storage
    once), plus the output and its gradient; on the meta device, without allocating them."""
    x, y = _example(inputs, 1, device)

    def run():
        _, out = call.loss(model, x, y)
        return _logits(out) if not torch.is_tensor(out) or out.dim() > 0 else out

    saved, out_bytes = sizing.saved_bytes(model, run)
    return saved + 2 * out_bytes


def _example(inputs, n, device="cpu"):
    if inputs["kind"] == "tokens":
        w = torch.randint(0, inputs["vocab"], (n, inputs["context"] + 1), device=device)
        return _split(w)
    shape = (inputs["channels"], inputs["height"], inputs["width"]) if inputs["kind"] == "images" else (inputs["features"],)
    return torch.randn(n, *shape, device=device), torch.zeros(n, dtype=torch.long, device=device)


class Job:
    def __init__(self):
        self.models = {}
        self.module = None
        self.base_bytes = 0

    def _module(self, req):
        """The user's module (imported once a job, after this process' own memory is read: baseBytes),
        with torch's threads set as the job asks."""
        hyper, spec = req["hyper"], req["model"]
        torch.set_num_threads(hyper["threads"] if hyper["threads"] > 0 else os.cpu_count() or 1)
        if self.module is None:
            self.base_bytes = _memory()[0]
            try:
                self.module = import_file(spec["file"], spec.get("paths") or [])
            except Exception as e:
                raise ModelError(_user_traceback(f"importing {spec['file']} failed", e)) from None
        return self.module

    def _dense(self, req):
        """(the dense model, settings it took no parameter for, its inputs, where their size came from)."""
        spec, settings = req["model"], req["model"].get("settings") or {}
        module = self.module
        torch.manual_seed(req["hyper"]["seed"])
        try:
            dense, unused = build_model(module, spec["name"], settings)
        except Rejected:
            raise
        except Exception as e:
            raise ModelError(_user_traceback(f"building {spec['name']}({', '.join(f'{k}={v!r}' for k, v in settings.items())}) failed", e)) from None
        if not isinstance(dense, nn.Module):
            raise Rejected(f"{spec['name']}(...) returned a {type(dense).__name__}, not a torch.nn.Module")
        inputs, note = (spec["inputs"], None) if spec.get("inputs") else infer_inputs(dense, settings, module, req["dataset"].get("kind"))
        return dense, unused, inputs, note

    def _pixelfly(self, dense, req):
        """(a Pixelfly copy of dense, made by the job's plan; the layers it replaced)."""
        torch.manual_seed(req["hyper"]["seed"] + 1)
        pixelfly = copy.deepcopy(dense)
        try:
            replaced = pixelfly_torch.sparsify(pixelfly, req["plan"])
        except pixelfly_torch.PixelflyPlanError as e:
            raise Rejected(f"the plan does not fit {req['model']['name']}: {e}") from None
        if not replaced:
            raise Rejected("the plan sparsifies no layer of this model: nothing to compare (plan for a smaller FLOP budget)")
        return pixelfly, replaced

    def _facts(self, dense, pixelfly, inputs, req, device="cpu"):
        """What the daemon's memory estimate needs (protocol/engineJob.ts ModelFacts), and the Call."""
        call = Call(dense, inputs)
        per_sample = {"dense": saved_bytes_per_sample(dense, call, inputs, device) if req["compare"] else 0,
                      "pixelfly": saved_bytes_per_sample(pixelfly, call, inputs, device)}
        count = lambda m: sum(p.numel() for p in m.parameters())
        params = {"pixelfly": count(pixelfly), **({"dense": count(dense)} if req["compare"] else {})}
        return call, {"params": params, "inputs": inputs, "activationBytesPerSample": per_sample, "baseBytes": self.base_bytes}

    def size(self, req):
        """inspect's figures without building the model: it is built and run once on the meta device
        (sizes, no data), so the daemon can refuse a job too big for the machine before anything is
        allocated. A model whose code cannot run there (it reads values back while building) answers
        ``{"sized": False, "reason"}``, and is admitted once built. Errors of the job itself (no such
        model, a plan that does not fit) are raised as inspect would raise them."""
        self._module(req)
        try:
            with sizing.on_meta(keep_small=True):
                dense, _, inputs, _ = self._dense(req)
            sizing.to_meta(dense)
        except Rejected:
            raise
        except Exception as e:
            return {"sized": False, "reason": _meta_reason("building", e)}
        pixelfly, _ = self._pixelfly(dense, req)
        try:
            with sizing.on_meta():
                _, facts = self._facts(dense, pixelfly, inputs, req, "meta")
        except Rejected:
            raise
        except Exception as e:
            return {"sized": False, "reason": _meta_reason("its forward", e)}
        return {"sized": True, **facts}

    def inspect(self, req):
        self._module(req)
        dense, self.unused, inputs, self.inputs_note = self._dense(req)
        pixelfly, replaced = self._pixelfly(dense, req)
        try:
            call, facts = self._facts(dense, pixelfly, inputs, req)
        except Rejected:
            raise
        except Exception as e:
            raise ModelError(_user_traceback("the model's forward on one example failed", e)) from None
        self.models = {"pixelfly": pixelfly, **({"dense": dense} if req["compare"] else {})}
        self.call, self.inputs, self.req = call, inputs, req
        return {
            **facts,
            "replaced": len(replaced),
            "runtime": f"PyTorch {torch.__version__}, Python {sys.version.split()[0]}, {_allocator()}",
            "kernels": pixelfly_torch.backend(),
        }

    def prepare(self, req, max_data_bytes):
        if not self.models:
            raise RuntimeError("inspect the job first")
        hyper = req["hyper"]
        # Both variants' norms in fp32 under autocast (torch 1.13's CPU autocast fails on them otherwise).
        for model in self.models.values():
            autocast_norms(model)
        self.precision, precision_note = resolve_precision(hyper.get("precision", "auto"), self._autocast_probe)
        self.batch = req.get("batchSize") or hyper["batchSize"]
        self.data = load_data(req["dataset"], self.inputs, hyper["seed"], int(max_data_bytes))
        probe = Batches(self.data, self.inputs, self.batch, hyper["seed"])
        steps_per_epoch = max(1, probe.steps_per_epoch)
        by_epochs = max(1, math.ceil(hyper["epochs"] * steps_per_epoch))
        total = min(hyper["maxSteps"], by_epochs) if hyper["maxSteps"] > 0 else by_epochs
        self.variants = {}
        for name, model in self.models.items():
            v = Variant(model, self.call, hyper, total, self.precision)
            v.batches = Batches(self.data, self.inputs, self.batch, hyper["seed"])
            self.variants[name] = v
        tokens = self.inputs["kind"] == "tokens"
        unused = f"settings {', '.join(self.unused)} are not {self.req['model']['name']}'s parameters (the analysis' own pins): not passed" if self.unused else None
        note = "; ".join(n for n in (self.data.note, self.inputs_note, f"loss: {self.call.note or 'to be seen at the first step'}", unused) if n)
        return {
            "dataset": {
                "kind": self.data.kind, "name": self.data.name, "synthetic": self.data.kind == "synthetic", "note": note,
                "trainSize": self.data.train.numel() if tokens else len(self.data.train[1]),
                "testSize": self.data.test.numel() if tokens else len(self.data.test[1]),
            },
            "stepsPerEpoch": steps_per_epoch,
            "tokensPerStep": self.batch * (self.inputs["context"] if tokens else 1),
            "params": {k: v.params for k, v in self.variants.items()},
            "backend": "cpu",
            "precision": self.precision,
            **({"precisionNote": precision_note} if precision_note else {}),
            "kernels": pixelfly_torch.backend(dtype=torch.bfloat16 if self.precision == "bf16" else torch.float32),
        }

    def _autocast_probe(self):
        """One forward and backward of each model on two samples under autocast(bfloat16); what the
        models hold afterwards (gradients, normalisation statistics, the random stream) is as before."""
        with torch.random.fork_rng(devices=[]):
            x, y = _example(self.inputs, 2)
            for model in self.models.values():
                buffers = [(b, b.clone()) for b in model.buffers()]
                try:
                    model.train()
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        loss, _ = self.call.loss(model, x, y)
                    loss.float().backward()
                finally:
                    model.zero_grad(set_to_none=True)
                    with torch.no_grad():
                        for b, saved in buffers:
                            b.copy_(saved)

    def variant(self, name):
        if name not in getattr(self, "variants", {}):
            raise RuntimeError(f"no {name} model: prepare the job first")
        return self.variants[name]

    def step(self, name):
        try:
            return self.variant(name).step()
        except Rejected:
            raise
        except Exception as e:
            what = f"training step of the {name} model failed"
            if self.precision == "bf16" and "BFloat16" in str(e):
                what += f" under torch.autocast(bfloat16), which torch {torch.__version__} does not apply to every layer of this model (train it with precision 'fp32')"
            raise ModelError(_user_traceback(what, e)) from None

    def evaluate(self, name):
        try:
            return self.variant(name).evaluate(self.data, self.inputs, max(self.batch, 16), self.req["hyper"]["evalSamples"] or 2048)
        except Exception as e:
            raise ModelError(_user_traceback(f"evaluating the {name} model failed", e)) from None

    def save(self, name, file):
        v = self.variant(name)
        tmp = f"{file}.tmp"
        torch.save({"model": v.model.state_dict(), "opt": v.opt.state_dict(), "sched": v.sched.state_dict(), "data": v.batches.state(),
                    "rng": v.rng}, tmp)
        os.replace(tmp, file)

    def load(self, name, file):
        v = self.variant(name)
        try:
            state = torch.load(file, map_location="cpu")
            v.model.load_state_dict(state["model"])
            v.opt.load_state_dict(state["opt"])
            v.sched.load_state_dict(state["sched"])
            v.batches.restore(state["data"])
            if "rng" in state:  # checkpoints written before the stream was saved resume with a fresh one
                v.rng = state["rng"]
        except (OSError, RuntimeError, KeyError, TypeError, ValueError, EOFError) as e:
            raise CheckpointError(f"{file}: {e}") from None


def _meta_reason(what, e):
    """Why the model could not be sized on the meta device: the exception's last line."""
    last = (str(e).strip().splitlines() or [""])[-1]
    return f"{what} on the meta device raised {type(e).__name__}: {last}"[:400]


def _failure(e):
    if isinstance(e, Rejected):
        return {"kind": "rejected", "message": str(e)}
    if isinstance(e, ModelError):
        return {"kind": "model", "message": str(e)}
    if isinstance(e, CheckpointError):
        return {"kind": "checkpoint", "message": str(e)}
    if isinstance(e, OSError) and e.errno:
        import errno
        return {"kind": "io", "code": errno.errorcode.get(e.errno, "EIO"), "message": str(e)}
    if isinstance(e, MemoryError):
        return {"kind": "internal", "message": "out of memory in the PyTorch runner (MemoryError)"}
    return {"kind": "internal", "message": "".join(traceback.format_exception(type(e), e, e.__traceback__))[-4000:]}


def _json(value):
    """JSON without NaN or infinities (a diverged loss becomes null, which the daemon reports as diverged)."""
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(value), default=str)


def serve():
    fd = os.environ.pop("NODE_CHANNEL_FD", None)
    if fd is None:
        sys.stderr.write("this is the Pixelfly daemon's PyTorch runner; the daemon starts it, not a person\n")
        return 2
    chan = socket.socket(fileno=int(fd))
    os.set_inheritable(chan.fileno(), False)
    reader = chan.makefile("rb")
    job = Job()
    for line in reader:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            op = req["op"]
            if op == "size":
                result = job.size(req["request"])
            elif op == "inspect":
                result = job.inspect(req["request"])
            elif op == "prepare":
                result = job.prepare(req["request"], req["maxDataBytes"])
            elif op == "step":
                result = job.step(req["variant"])
            elif op == "evaluate":
                result = job.evaluate(req["variant"])
            elif op == "save":
                result = job.save(req["variant"], req["file"])
            elif op == "load":
                result = job.load(req["variant"], req["file"])
            else:
                raise RuntimeError(f"unknown op {op!r}")
            reply = {"id": req["id"], "ok": True, "result": result}
        except (Exception, SystemExit) as e:  # every failure, the user's code's included, is the job's: said to the daemon
            reply = {"id": req["id"], "ok": False, "error": _failure(e)}
        rss, peak = _memory()
        reply.update(rssBytes=rss, peakRssBytes=peak)
        chan.sendall((_json(reply) + "\n").encode())
    # The daemon let go (the job ended, or the daemon died).
    return 0


if __name__ == "__main__":
    sys.exit(serve())

#!/usr/bin/env python3
"""Builds the ``pixelfly_torch`` package: its Python modules and the ``_C.so`` torch extension,
compiled from the same C++ sources as the Node addon (``native/src``: the kernels, once per
instruction set, and PixelflyLinear's forward/backward) plus the operator registrations in
``pytorch/csrc``.

    python3 pytorch/build.py --out dist/python          # what `npm run build` runs
    /path/to/venv/bin/python pytorch/build.py --out "$(/path/to/venv/bin/python -c 'import site; print(site.getsitepackages()[0])')"

The interpreter that runs this script is the one the extension is built for: its torch's headers,
C++ ABI and version. Objects are cached per torch version under ``--build-dir`` and rebuilt when a
source, a header it includes or a flag changes. Without a working compiler (``--python-only``, or
where the toolchain is missing, with ``--allow-python-only``) the package is installed without ``_C.so`` and runs its
masked-dense fallback, saying so (``_build_info.json`` records why).

The source lists and per-instruction-set flags are read from ``native/binding.gyp`` (one list for
both builds): the kernel libraries ``kernels_*`` and the addon's sources named in ``ADDON_SOURCES``.
"""
import argparse
import ast
import concurrent.futures
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = HERE / "pixelfly_torch"
CSRC = HERE / "csrc"

# The addon's sources the extension needs besides the per-ISA kernels: the kernel API and checks
# (the attention cores' too, which the CPU backend calls), the CPU backend (with the attention
# low-rank term it makes) and PixelflyLinear's math. (The rest of the addon is Node bindings and
# the engine's models and data.)
ADDON_SOURCES = [
    "src/kernels/dispatch.cc",
    "src/kernels/validate.cc",
    "src/kernels/attention.cc",
    "src/engine/backend_cpu.cc",
    "src/engine/cpu_layers.cc",
    "src/engine/performer.cc",
    "src/engine/pointwise.cc",
    "src/engine/pixelfly_linear.cc",
]
OPS_SOURCES = ["op_args.cc", "ops.cc"]
# With CUDA: the CUDA backend (binding.gyp's pixelfly_cuda target plus the addon's backend_cuda.cc)
# and the operators over it.
CUDA_ADDON_SOURCES = ["src/cuda/backend_cuda.cc"]
CUDA_OPS_SOURCES = ["ops_cuda.cc"]


class BuildError(RuntimeError):
    """The extension did not compile or link: a bug to fix, never papered over."""


class MissingToolchain(BuildError):
    """No compiler or no torch headers here: the package can still be installed without its extension."""


def read_gyp(path):
    """binding.gyp is a Python literal with comments (gyp evaluates it the same way)."""
    return ast.literal_eval(path.read_text())


def expand(flags, variables):
    out = []
    for f in flags:
        if f.startswith("<@(") and f.endswith(")"):
            out.extend(variables[f[3:-1]])
        else:
            out.append(f)
    return out


def base_flags(native):
    """binding.gyp's flags for every C++ file (its target_defaults, without the Node API defines)."""
    defaults = read_gyp(native / "binding.gyp")["target_defaults"]
    return list(defaults["cflags_cc"]) + ["-D" + d for d in defaults["defines"] if not d.startswith("NAPI")]


def gyp_units(native):
    """(source, flags, group) for every C++ file of the extension that comes from native/src."""
    gyp = read_gyp(native / "binding.gyp")
    variables = gyp["variables"]
    base = base_flags(native)
    units = []
    targets = {t["target_name"]: t for t in gyp["targets"]}
    for name, t in targets.items():
        if not name.startswith("kernels_"):
            continue
        flags = base + expand(t.get("cflags_cc", []), variables) + ["-D" + d for d in t.get("defines", [])]
        for src in t["sources"]:
            units.append((native / src, flags, name))
    addon = targets["pixelfly"]["sources"]
    for src in ADDON_SOURCES:
        if src not in addon:
            raise BuildError(f"{src} is not among binding.gyp's addon sources any more: update ADDON_SOURCES in {__file__}")
        units.append((native / src, base, None))
    return units


def cuda_home():
    """The CUDA toolkit binding.gyp would use (native/src/cuda/find_nvcc.js's rules), or None."""
    if os.environ.get("PIXELFLY_CUDA") == "0":
        return None
    nvcc = shutil.which("nvcc")
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"),
                  str(Path(nvcc).resolve().parent.parent) if nvcc else None, "/usr/local/cuda"]
    for c in filter(None, candidates):
        home = Path(c).resolve()
        if (home / "bin" / "nvcc").exists() and (home / "lib64" / "libcudart_static.a").exists():
            return home
    return None


def gyp_cuda(native, home):
    """(nvcc flags, .cu sources, other sources) of binding.gyp's pixelfly_cuda target for a real GPU build."""
    gyp = read_gyp(native / "binding.gyp")
    target = next(t for t in gyp["targets"] if t["target_name"] == "pixelfly_cuda")
    build = next(c[1] for c in target["conditions"] if "cuda_emulation==0" in c[0])
    action = build["rules"][0]["action"]
    flags = [a.replace("<(module_root_dir)", str(native)) for a in action[1:action.index("-c")]]
    cu = [native / s for s in build["sources"] if s.endswith(".cu")]
    other = [native / s for s in build["sources"] if not s.endswith(".cu")]
    addon = next(t for t in gyp["targets"] if t["target_name"] == "pixelfly")["sources"]
    for src in CUDA_ADDON_SOURCES:
        if src not in addon:
            raise BuildError(f"{src} is not among binding.gyp's addon sources any more: update CUDA_ADDON_SOURCES in {__file__}")
    return flags, cu, other + [native / s for s in CUDA_ADDON_SOURCES]


def torch_flags():
    """Compile flags and library folders for the running interpreter's torch (what
    torch.utils.cpp_extension derives, without importing it: it needs setuptools and prints CUDA
    notices)."""
    import torch

    root = Path(torch.__file__).resolve().parent
    includes = [root / "include", root / "include" / "torch" / "csrc" / "api" / "include"]
    if not (includes[0] / "torch" / "library.h").exists():
        raise MissingToolchain(f"torch's C++ headers are missing under {includes[0]} (on Debian: `apt-get install libtorch-dev`)")
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    flags = [f"-isystem{p}" for p in includes] + [f"-D_GLIBCXX_USE_CXX11_ABI={abi}"]
    return torch, flags, [str(root / "lib")]


def stale(obj, dep, signature):
    """True when the object must be rebuilt: missing, other flags, or older than a file it depends on."""
    sig = obj.with_suffix(".sig")
    if not obj.exists() or not dep.exists() or not sig.exists() or sig.read_text() != signature:
        return True
    t = obj.stat().st_mtime
    text = dep.read_text().replace("\\\n", " ")
    files = text.split(":", 1)[1].split() if ":" in text else []
    return any(not os.path.exists(f) or os.path.getmtime(f) > t for f in files)


def compile_unit(cxx, src, flags, obj):
    dep = obj.with_suffix(".d")
    syntax_only = "-fsyntax-only" in flags
    out = [] if syntax_only else ["-c", str(src), "-o", str(obj)]
    cmd = [cxx, *flags, "-MMD", "-MF", str(dep), *([str(src)] if syntax_only else []), *out]
    if syntax_only:  # a compile check leaves no object: its signature file stands for one
        obj = obj.with_suffix(".checked")
    signature = " ".join(cmd)
    if not stale(obj, dep, signature):
        return False
    obj.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"compiling {src} failed:\n{shlex.join(cmd)}\n{r.stderr[-4000:]}")
    obj.with_suffix(".sig").write_text(signature)
    if syntax_only:
        obj.touch()
    return True


def build_extension(native, build_dir, target, jobs, log):
    torch, tflags, libdirs = torch_flags()
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        raise MissingToolchain(f"no C++ compiler: {cxx} is not on PATH (install g++, e.g. `apt-get install build-essential`)")
    build_dir.mkdir(parents=True, exist_ok=True)
    include = ["-I" + str(native / "src")]
    work = []
    for src, flags, group in gyp_units(native):
        stem = src.stem + (f".{group}" if group else "")
        work.append((src, flags + include, build_dir / f"{stem}.o"))
    ops_flags = ["-std=c++17", "-O3", "-fPIC", "-fopenmp", "-fvisibility=hidden", "-fvisibility-inlines-hidden",
                 *tflags, *include]
    for name in OPS_SOURCES:
        work.append((CSRC / name, ops_flags, build_dir / (Path(name).stem + ".torch.o")))
    # CUDA: built where it can run (torch with CUDA, and nvcc); with nvcc alone the operators are
    # compile-checked, so a change that breaks them fails here too.
    home = cuda_home()
    cuda = {"cuda": False, "cuda_reason": "no CUDA toolkit (nvcc with libcudart_static.a) was found"}
    link_cuda = []
    checks = []
    if home and torch.version.cuda:
        nvcc_flags, cu, other = gyp_cuda(native, home)
        for src in cu:
            work.append((src, nvcc_flags + ["-DPIXELFLY_CUDA=1"], build_dir / f"{src.stem}.cuda.o"))
        for src in other:
            work.append((src, base_flags(native) + ["-DPIXELFLY_CUDA=1", f"-I{home / 'include'}", *include], build_dir / f"{src.stem}.cuda.o"))
        for name in CUDA_OPS_SOURCES:
            work.append((CSRC / name, ops_flags + ["-DPIXELFLY_CUDA=1"], build_dir / (Path(name).stem + ".torch.o")))
        link_cuda = [str(home / "lib64" / "libcudart_static.a"), "-lrt", "-lpthread"]
        cuda = {"cuda": True, "cuda_toolkit": str(home), "torch_cuda": torch.version.cuda}
    elif home:
        for name in CUDA_OPS_SOURCES:
            checks.append((CSRC / name, ops_flags + ["-DPIXELFLY_CUDA=1", "-fsyntax-only"], build_dir / (Path(name).stem + ".torch.o")))
        cuda = {"cuda": False, "cuda_reason": f"torch {torch.__version__} was built without CUDA (its operators were compile-checked only)"}
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        rebuilt = sum(pool.map(lambda w: compile_unit(str(home / "bin" / "nvcc") if w[0].suffix == ".cu" else cxx, *w), work + checks))
    objs = [str(o) for _, _, o in work]
    link = [cxx, "-shared", "-fopenmp", "-o", str(target), *objs, *link_cuda, *[f"-L{d}" for d in libdirs],
            *[f"-Wl,-rpath,{d}" for d in libdirs], "-lc10", "-ltorch_cpu", "-ldl"]
    if rebuilt or not target.exists() or any(os.path.getmtime(o) > target.stat().st_mtime for o in objs):
        r = subprocess.run(link, capture_output=True, text=True)
        if r.returncode != 0:
            raise BuildError(f"linking {target.name} failed:\n{shlex.join(link)}\n{r.stderr[-4000:]}")
    log(f"extension: {rebuilt} of {len(work) + len(checks)} units compiled, {time.time() - t0:.1f} s -> {target}"
        + ("" if cuda["cuda"] else f" (CPU only: {cuda['cuda_reason']})"))
    return {"torch": torch.__version__, "cxx11_abi": int(torch._C._GLIBCXX_USE_CXX11_ABI), **cuda}


def copy_package(dest):
    dest.mkdir(parents=True, exist_ok=True)
    for f in PACKAGE.glob("*.py"):
        shutil.copyfile(f, dest / f.name)
    for stale_file in dest.glob("*.py"):
        if not (PACKAGE / stale_file.name).exists():
            stale_file.unlink()


def write_info(dest, info):
    (dest / "_build_info.json").write_text(json.dumps(info, indent=2) + "\n")


def python_only(dest, reason, log):
    """The modules without the extension; _build_info.json says why, for backend() and the tests."""
    (dest / "_C.so").unlink(missing_ok=True)
    write_info(dest, {"native": False, "reason": reason})
    log(f"Python modules only, no extension ({reason}) -> {dest}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder that receives the pixelfly_torch package (e.g. dist/python, a site-packages)")
    ap.add_argument("--native", default=str(HERE.parent / "native"), help="the native/ folder whose src/ and binding.gyp are compiled")
    ap.add_argument("--build-dir", help="object cache (default: <native>/build/torch/<python>-torch<version>)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--python-only", action="store_true", help="install the Python modules only (masked-dense fallback)")
    ap.add_argument("--reason", default="installed with --python-only", help="with --python-only: why, as backend() will say")
    ap.add_argument("--allow-python-only", action="store_true",
                    help="without a compiler or torch's headers, install the Python modules alone and exit 0 (a failing compile still fails)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    log = (lambda _m: None) if args.quiet else (lambda m: print(f"[pixelfly_torch] {m}", flush=True))
    dest = Path(args.out).resolve() / "pixelfly_torch"
    copy_package(dest)
    if args.python_only:
        python_only(dest, args.reason, log)
        return 0
    native = Path(args.native).resolve()
    try:
        import torch
    except ImportError as e:
        print(f"[pixelfly_torch] {sys.executable} has no torch ({e}): install PyTorch into it first", file=sys.stderr)
        return 2
    tag = f"py{sys.version_info.major}{sys.version_info.minor}-torch{torch.__version__}"
    build_dir = Path(args.build_dir) if args.build_dir else native / "build" / "torch" / tag
    try:
        info = build_extension(native, build_dir, dest / "_C.so", max(1, args.jobs), log)
    except MissingToolchain as e:
        if not args.allow_python_only:
            print(f"[pixelfly_torch] cannot build the extension: {e}", file=sys.stderr)
            return 1
        python_only(dest, str(e), log)
        return 0
    except BuildError as e:
        print(f"[pixelfly_torch] extension build failed: {e}", file=sys.stderr)
        return 1
    info["python"] = sysconfig.get_python_version()
    write_info(dest, {"native": True, **info})
    return 0


if __name__ == "__main__":
    sys.exit(main())

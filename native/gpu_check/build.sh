#!/usr/bin/env bash
# Builds native/gpu_check/gpu_check without Node or node-gyp, for a GPU machine that has only nvcc
# and g++ (issue 8). The same sources and flags as native/binding.gyp's addon, minus the N-API
# binding files: nvcc for the device code, g++ for the engine, the CPU kernels (isa_kernels.cc and
# attention_isa.cc once per instruction set, as binding.gyp's kernels_* targets), the cuBLAS loader,
# the CUDA backend and gpu_check.cc; cudart linked
# statically like the addon (it opens libcuda.so.1 lazily, so the program starts without a driver and
# says why there is no device).
#
#   bash native/gpu_check/build.sh [--emulate] [--out-dir DIR] [--jobs N] [--kernel-libs DIR]
#
# --emulate: the device code compiled by g++ against the host emulation (src/cuda/emulation.h,
# binding.gyp's cuda_emulation=1), so the whole check runs on a machine without a GPU.
# --kernel-libs DIR: link the CPU kernel libraries the addon's build made (DIR/kernels_*.a, e.g.
# native/build/Release/obj.target) instead of compiling them again: the same sources and flags.
# Output: DIR/gpu_check (default native/build/gpu_check/cuda or .../emulate).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "$here/../src" && pwd)"
mode=cuda
out=""
kernel_libs=""
jobs="$(nproc 2>/dev/null || echo 2)"
while [ $# -gt 0 ]; do
  case "$1" in
    --emulate) mode=emulate ;;
    --out-dir) [ $# -ge 2 ] || { echo "build.sh: --out-dir needs a folder" >&2; exit 2; }; out="$2"; shift ;;
    --kernel-libs) [ $# -ge 2 ] || { echo "build.sh: --kernel-libs needs a folder" >&2; exit 2; }; kernel_libs="$2"; shift ;;
    --jobs) [ $# -ge 2 ] || { echo "build.sh: --jobs needs a number" >&2; exit 2; }; jobs="$2"; shift ;;
    *) echo "build.sh: unknown option '$1' (options: --emulate, --out-dir DIR, --jobs N, --kernel-libs DIR)" >&2; exit 2 ;;
  esac
  shift
done
out="${out:-$here/../build/gpu_check/$mode}"
mkdir -p "$out/obj"
out="$(cd "$out" && pwd)"
CXX="${CXX:-g++}"

# The toolkit the way src/cuda/find_nvcc.js finds it for binding.gyp: CUDA_HOME, CUDA_PATH, nvcc on
# PATH, /usr/local/cuda; it must have nvcc and the static runtime.
cuda_home=""
if [ "$mode" = cuda ]; then
  from_path=""
  if command -v nvcc >/dev/null 2>&1; then from_path="$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")"; fi
  for c in "${CUDA_HOME:-}" "${CUDA_PATH:-}" "$from_path" /usr/local/cuda; do
    [ -n "$c" ] || continue
    c="$(readlink -f "$c" 2>/dev/null || echo "$c")"
    if [ -x "$c/bin/nvcc" ] && [ -f "$c/lib64/libcudart_static.a" ]; then cuda_home="$c"; break; fi
  done
  if [ -z "$cuda_home" ]; then
    echo "build.sh: no CUDA toolkit with bin/nvcc and lib64/libcudart_static.a (tried CUDA_HOME, CUDA_PATH, nvcc on PATH, /usr/local/cuda); use --emulate to build against the host emulation" >&2
    exit 1
  fi
fi

# Flags as in binding.gyp: target_defaults' cflags_cc, kernel_cflags, the addon's defines.
common=(-std=c++17 -O3 -fopenmp -fPIC -fexceptions "-I$src")
defines=(-DPIXELFLY_CUDA=1)
[ "$mode" = emulate ] && defines+=(-DPIXELFLY_CUDA_EMULATION=1)
kernel=(-O3 -fPIC -fopenmp -ffp-contract=fast -fno-math-errno -std=c++17 "-I$src")

# A small job pool: compile commands run `jobs` at a time; the first failure stops the build.
objs=()
pids=()
compile() {  # compile OBJECT_NAME COMMAND...
  local obj="$out/obj/$1"; shift
  objs+=("$obj")
  echo "  ${*: -1} -> obj/$(basename "$obj")"
  "$@" -o "$obj" &
  pids+=($!)
  if [ "${#pids[@]}" -ge "$jobs" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
}

echo "building gpu_check ($mode) in $out"
# The engine's and the CUDA backend's sources as binding.gyp lists them for the addon (less its Node
# bindings), so a file added there is built here too instead of a second hand-kept list.
gyp="$here/../binding.gyp"
[ -f "$gyp" ] || { echo "build.sh: $gyp not found (the source list comes from it)" >&2; exit 1; }
gyp_sources() {  # gyp_sources FOLDER EXTENSION -> FOLDER/NAME ... (no extension, binding.cc left out)
  grep -o "'src/$1/[a-z_]*\.$2'" "$gyp" | tr -d "'" | sed "s|^src/||; s|\.$2\$||" | grep -v '/binding$' | sort -u
}
for cu in $(gyp_sources cuda cu); do
  if [ "$mode" = cuda ]; then
    compile "$(basename "$cu").o" "$cuda_home/bin/nvcc" -std=c++20 -O3 -Xcompiler -fPIC "-I$src" -DPIXELFLY_CUDA=1 \
      -gencode arch=compute_80,code=sm_80 -gencode 'arch=compute_90,code=[sm_90,compute_90]' -c "$src/$cu.cu"
  else
    compile "$(basename "$cu").o" "$CXX" -std=c++20 -O2 -fPIC -pthread -xc++ -DPIXELFLY_CUDA=1 -DPIXELFLY_CUDA_EMULATION=1 \
      "-I$src" -c "$src/$cu.cu"
  fi
done
# The kernel libraries (isa_kernels.cc and attention_isa.cc once per instruction set: binding.gyp's
# kernels_* targets), each source with its target's defines and instruction-set flags, read from
# binding.gyp (a Python literal) too.
kernel_builds() {  # -> one line per object: NAME SOURCE FLAG...
  python3 -c 'import ast, sys
for t in ast.literal_eval(open(sys.argv[1]).read())["targets"]:
    if t["target_name"].startswith("kernels_"):
        flags = ["-D" + d for d in t.get("defines", [])] + [f for f in t.get("cflags_cc", []) if not f.startswith("<@(")]
        for src in t["sources"]:
            print(t["target_name"][len("kernels_"):], src, *flags)' "$gyp"
}
kernel_archives=()
if [ -n "$kernel_libs" ]; then
  for name in $(kernel_builds | cut -d' ' -f1 | sort -u); do
    lib="$kernel_libs/kernels_$name.a"
    [ -f "$lib" ] || { echo "build.sh: --kernel-libs: $lib not found (build the addon first: node-gyp rebuild in native/)" >&2; exit 1; }
    kernel_archives+=("$lib")
  done
else
  while read -r name source flags; do
    # shellcheck disable=SC2086  # the flags are separate words
    compile "$(basename "$source" .cc)_$name.o" "$CXX" "${kernel[@]}" $flags -c "$here/../$source"
  done < <(kernel_builds)
fi
for f in kernels/dispatch kernels/validate kernels/attention $(gyp_sources engine cc) $(gyp_sources cuda cc); do
  compile "$(basename "$f").o" "$CXX" "${common[@]}" "${defines[@]}" -c "$src/$f.cc"
done
compile gpu_check.o "$CXX" "${common[@]}" "${defines[@]}" -c "$here/gpu_check.cc"
for p in "${pids[@]}"; do wait "$p"; done

if [ "$mode" = cuda ]; then
  libs=("$cuda_home/lib64/libcudart_static.a" -ldl -lrt -lpthread)
else
  libs=(-pthread -ldl)
fi
"$CXX" -fopenmp -o "$out/gpu_check" "${objs[@]}" "${kernel_archives[@]}" "${libs[@]}"
echo "built $out/gpu_check"

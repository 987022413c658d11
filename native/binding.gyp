# Native addon: `node-gyp configure build --directory native` (scripts/setup.mjs runs it; it uses the
# system's Node headers offline via npm_config_nodedir=/usr).
# The kernels' inner loops are compiled once per instruction set (static libraries below, each with
# its own -m flags) and chosen at load time by kernels/dispatch.cc; everything else is baseline x86-64.
{
  'variables': {
    'napi_include': '<!(node -p "require(\'node-addon-api\').include_dir")',
    # CUDA toolkit root, or '' to build CPU-only (src/cuda/find_nvcc.js; PIXELFLY_CUDA=0 opts out).
    'cuda_home': '<!(node src/cuda/find_nvcc.js)',
    # 1: the CUDA backend's host code against the host emulation of the kernels and runtime
    # (src/cuda/emulation.h), for test/cuda/emulatedAddon.test.ts; never a shipped build.
    'cuda_emulation%': 0,
    # A folder holding the kernels_*.a of a build of these same sources: link those instead of
    # building the kernels again (the emulated build in test/cuda/emulatedAddon.test.ts, whose
    # kernels are the same objects as the real build's).
    'kernel_libs_from%': '',
    'kernel_cflags': ['-O3', '-fPIC', '-fopenmp', '-ffp-contract=fast', '-fno-math-errno', '-std=c++17'],
  },
  'target_defaults': {
    'cflags!': ['-fno-exceptions', '-O2', '-O0'],
    'cflags_cc!': ['-fno-exceptions', '-fno-rtti', '-std=gnu++17', '-std=gnu++1y', '-std=gnu++20'],
    'cflags_cc': ['-fexceptions', '-std=c++17', '-O3', '-fopenmp', '-fPIC'],
    'defines': ['NAPI_VERSION=8', 'NAPI_CPP_EXCEPTIONS'],
    'include_dirs': ['<(napi_include)', 'src'],
  },
  'targets': [
    # ---- kernels: one static library per instruction set ------------------------------------
    {
      'target_name': 'kernels_portable',
      'type': 'static_library',
      'sources': ['src/kernels/isa_kernels.cc', 'src/kernels/attention_isa.cc'],
      'defines': ['PIXELFLY_ISA=0'],
      'cflags_cc': ['<@(kernel_cflags)'],
    },
    {
      'target_name': 'kernels_avx2',
      'type': 'static_library',
      'sources': ['src/kernels/isa_kernels.cc', 'src/kernels/attention_isa.cc'],
      'defines': ['PIXELFLY_ISA=1'],
      'cflags_cc': ['<@(kernel_cflags)', '-mavx2', '-mfma'],
    },
    {
      'target_name': 'kernels_avx512',
      'type': 'static_library',
      'sources': ['src/kernels/isa_kernels.cc', 'src/kernels/attention_isa.cc'],
      'defines': ['PIXELFLY_ISA=2'],
      'cflags_cc': ['<@(kernel_cflags)', '-mavx512f', '-mavx512vl', '-mavx512dq', '-mavx512bw', '-mfma', '-mavx2',
                    '-mprefer-vector-width=512'],
    },
    # The AVX-512 kernels again, with bf16 products on vdpbf16ps, then on AMX tiles: chosen only
    # where cpuid (and, for AMX, the kernel's arch_prctl permission) allows them.
    {
      'target_name': 'kernels_avx512bf16',
      'type': 'static_library',
      'sources': ['src/kernels/isa_kernels.cc'],
      'defines': ['PIXELFLY_ISA=3'],
      'cflags_cc': ['<@(kernel_cflags)', '-mavx512f', '-mavx512vl', '-mavx512dq', '-mavx512bw', '-mavx512bf16', '-mfma',
                    '-mavx2', '-mprefer-vector-width=512'],
    },
    {
      'target_name': 'kernels_amx',
      'type': 'static_library',
      'sources': ['src/kernels/isa_kernels.cc'],
      'defines': ['PIXELFLY_ISA=4'],
      'cflags_cc': ['<@(kernel_cflags)', '-mavx512f', '-mavx512vl', '-mavx512dq', '-mavx512bw', '-mavx512bf16', '-mfma',
                    '-mavx2', '-mamx-tile', '-mamx-bf16', '-mprefer-vector-width=512'],
    },
    # ---- CUDA backend (issue 8): device code in its own library, so nvcc runs beside the C++ -----
    {
      'target_name': 'pixelfly_cuda',
      'type': 'none',
      'conditions': [
        # With nvcc: cubins for sm_80 and sm_90, plus PTX for newer parts.
        ['cuda_home!="" and cuda_emulation==0', {
          'type': 'static_library',
          'sources': ['src/cuda/context.cu', 'src/cuda/layers.cu', 'src/cuda/cublas_loader.cc'],
          'defines': ['PIXELFLY_CUDA=1'],
          'rules': [{
            'rule_name': 'nvcc',
            'extension': 'cu',
            'inputs': ['src/cuda/kernels.cuh', 'src/cuda/layer_kernels.cuh', 'src/cuda/attention_kernels.cuh', 'src/cuda/performer_kernels.cuh', 'src/cuda/device_runtime.h', 'src/cuda/bsr_schedule.h',
                       'src/cuda/cuda_api.h', 'src/cuda/cublas_loader.h', 'src/engine/backend.h'],
            'outputs': ['<(INTERMEDIATE_DIR)/<(RULE_INPUT_ROOT).o'],
            'action': ['<(cuda_home)/bin/nvcc', '-std=c++20', '-O3', '-Xcompiler', '-fPIC', '-I<(module_root_dir)/src',
                       '-gencode', 'arch=compute_80,code=sm_80', '-gencode', 'arch=compute_90,code=[sm_90,compute_90]',
                       '-c', '<(RULE_INPUT_PATH)', '-o', '<@(_outputs)'],
            'message': 'nvcc <(RULE_INPUT_PATH)',
            'process_outputs_as_sources': 1,
          }],
        }],
        ['cuda_emulation==1', {
          'type': 'static_library',
          'sources': ['src/cuda/context.cu', 'src/cuda/layers.cu', 'src/cuda/cublas_loader.cc'],
          'defines': ['PIXELFLY_CUDA=1', 'PIXELFLY_CUDA_EMULATION=1'],
          'rules': [{
            'rule_name': 'cu_as_cxx',
            'extension': 'cu',
            'inputs': ['src/cuda/kernels.cuh', 'src/cuda/layer_kernels.cuh', 'src/cuda/attention_kernels.cuh', 'src/cuda/performer_kernels.cuh', 'src/cuda/device_runtime.h', 'src/cuda/emulation.h',
                       'src/cuda/bsr_schedule.h', 'src/cuda/cuda_api.h', 'src/engine/backend.h'],
            'outputs': ['<(INTERMEDIATE_DIR)/<(RULE_INPUT_ROOT).o'],
            'action': ['c++', '-std=c++20', '-O2', '-fPIC', '-pthread', '-xc++', '-DPIXELFLY_CUDA=1',
                       '-DPIXELFLY_CUDA_EMULATION=1', '-I<(module_root_dir)/src', '-c', '<(RULE_INPUT_PATH)', '-o', '<@(_outputs)'],
            'message': 'c++ (CUDA emulation) <(RULE_INPUT_PATH)',
            'process_outputs_as_sources': 1,
          }],
        }],
      ],
    },
    # ---- the addon ---------------------------------------------------------------------------
    {
      'target_name': 'pixelfly',
      'sources': [
        'src/addon.cc',
        # kernels (issue 3)
        'src/kernels/dispatch.cc',
        'src/kernels/validate.cc',
        'src/kernels/binding.cc',
        'src/kernels/openblas_baseline.cc',
        # attention cores (issue 18)
        'src/kernels/attention.cc',
        'src/kernels/attention_reference.cc',
        'src/kernels/attention_binding.cc',
        # engine (issue 4): add engine sources below this line
        'src/engine/backend_cpu.cc',
        'src/engine/binding.cc',
        'src/engine/cpu_layers.cc',
        'src/engine/data.cc',
        'src/engine/model.cc',
        'src/engine/modules.cc',
        'src/engine/performer.cc',
        'src/engine/pixelfly_linear.cc',
        'src/engine/pointwise.cc',
        'src/engine/svd.cc',
        # CUDA backend (issue 8): these two build without nvcc too (they then report it missing)
        'src/cuda/binding.cc',
        'src/cuda/backend_cuda.cc',
      ],
      'libraries': ['-fopenmp', '-ldl'],
      'ldflags': ['-fopenmp'],
      'conditions': [
        ['kernel_libs_from==""', {
          'dependencies': ['kernels_portable', 'kernels_avx2', 'kernels_avx512', 'kernels_avx512bf16', 'kernels_amx'],
        }, {
          'libraries': ['<(kernel_libs_from)/kernels_portable.a', '<(kernel_libs_from)/kernels_avx2.a', '<(kernel_libs_from)/kernels_avx512.a',
                        '<(kernel_libs_from)/kernels_avx512bf16.a', '<(kernel_libs_from)/kernels_amx.a'],
        }],
        ['cuda_home!="" and cuda_emulation==0', {
          'dependencies': ['pixelfly_cuda'],
          'defines': ['PIXELFLY_CUDA=1'],
          # the CUDA runtime linked statically: it opens the driver lazily, so the addon loads without one
          'libraries': ['<(cuda_home)/lib64/libcudart_static.a', '-lrt', '-lpthread'],
        }],
        ['cuda_emulation==1', {
          'dependencies': ['pixelfly_cuda'],
          'defines': ['PIXELFLY_CUDA=1', 'PIXELFLY_CUDA_EMULATION=1'],
          'libraries': ['-pthread'],
        }],
      ],
    },
  ],
}

#!/usr/bin/env node
// `node scripts/gpu-check.mjs [--small] [--dir .gpu-kit]` (after `npx tsc -p .`): writes the kit that
// native/gpu_check/gpu_check runs on a GPU machine without Node (issue 8): the block layouts of the
// issue's target shapes and of a Pixelfly Mixer's plan, made here by core/ (the one implementation
// of the Pixelfly math: the C++ program never derives a mask), then prints the commands to run there.
//
// The layouts file (layouts.txt) is whitespace-separated tokens, one section per line group:
//   pixelfly-gpu-kit 1
//   bench <M> <repeats>                       rows of the timed products, median of `repeats`
//   model <key> <value> ...                   the Mixer (model.h's ModelConfig fields), for training
//   layout <bench|plan> <name> <out> <in> <block> <blockRows> <blockCols> <nnz> <rank>
//   <rowPtr: blockRows+1 ints>
//   <colIdx: nnz ints>  <colPtr: blockCols+1 ints>  <rowIdx: nnz ints>  <tBlock: nnz ints>
// core/blockIndex.ts's buildBlockIndex defines the arrays and the block order.
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const load = (p) => {
  try {
    return require(join(root, 'out', p));
  } catch (e) {
    throw new Error(`cannot load out/${p} (run \`npx tsc -p .\` first): ${e.message}`);
  }
};

function parseArgs(argv) {
  const o = { small: false, dir: join(root, '.gpu-kit') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--small') o.small = true;
    else if (a === '--dir') {
      if (!argv[i + 1]) throw new Error('--dir: expected a folder');
      o.dir = resolve(argv[++i]);
    } else throw new Error(`unknown option '${a}' (options: --small, --dir FOLDER)`);
  }
  return o;
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  // The benchmark's own choice of layout for a density, so the GPU check times the masks bench:kernels times.
  const { layoutNear } = load('bench/kernels.js');
  const { buildBlockIndex } = load('core/blockIndex.js');
  const { resolvePlan, engineModelConfig } = load('native/engine.js');
  // The Mixer test/cuda/gpu.test.ts trains on CUDA against the CPU: same spec, same plan.
  const { MIXER, MIXER_PLAN } = load('test/engine/fixtures.js');

  // Issue 8's targets: (768, 3072) and (1024, 4096) at M = 4096, densities ≈ 1/8 and 1/4, block 32.
  // --small: the emulation on the CPU is a thread per CUDA thread, so one small shape.
  const m = opts.small ? 256 : 4096;
  const repeats = opts.small ? 1 : 20;
  const shapes = opts.small ? [[256, 512]] : [[768, 3072], [1024, 4096]];
  const lines = ['pixelfly-gpu-kit 1', `bench ${m} ${repeats}`];

  const layout = (role, name, out, inF, l, rank) => {
    const ix = buildBlockIndex(l);
    lines.push(`layout ${role} ${name} ${out} ${inF} ${ix.block} ${ix.blockRows} ${ix.blockCols} ${ix.nnz} ${rank}`);
    for (const a of [ix.rowPtr, ix.colIdx, ix.colPtr, ix.rowIdx, ix.tBlock]) lines.push(Array.from(a).join(' '));
  };
  for (const [inF, out] of shapes)
    for (const density of [1 / 8, 1 / 4]) {
      // Both directions of the MLP, fc1 (in → 4·in) and fc2 (4·in → in); --small: fc1 only (the
      // emulated fallback GEMM that stands in for cuBLAS takes seconds a product).
      for (const [o, i] of opts.small ? [[out, inF]] : [[out, inF], [inF, out]]) {
        const l = layoutNear(o, i, 32, density);
        layout('bench', `${i}x${o}@${l.density.toFixed(4)}`, o, i, l, 0);
      }
    }

  const plan = resolvePlan(MIXER, MIXER_PLAN);
  const cfg = engineModelConfig(MIXER, plan);
  const model = ['model'];
  for (const [k, v] of Object.entries(cfg)) if (typeof v === 'number' || typeof v === 'string') model.push(k, String(v));
  lines.push(model.join(' '));
  for (const l of plan) layout('plan', l.name, l.layout.outFeatures, l.layout.inFeatures, l.layout, l.config.rank);

  mkdirSync(opts.dir, { recursive: true });
  const file = join(opts.dir, 'layouts.txt');
  writeFileSync(file, lines.join('\n') + '\n');
  const rel = relative(root, file);
  console.log(`wrote ${rel}: ${lines.filter((l) => l.startsWith('layout ')).length} layouts, M = ${m}`);
  console.log('\nOn a GPU machine (nvcc, g++; no Node needed), from the repository root:');
  console.log(`  bash native/gpu_check/build.sh && native/build/gpu_check/cuda/gpu_check ${rel} --out ${relative(root, join(opts.dir, 'gpu-check.json'))}`);
  console.log(`With the device tool: run(command: "<the line above>", carry: ["${relative(root, opts.dir)}"])`);
}

try {
  main();
} catch (e) {
  console.error(`gpu-check: ${e.message}`);
  process.exit(1);
}

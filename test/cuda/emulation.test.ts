// The REAL CUDA kernels (native/src/cuda/kernels.cuh), run on the host through
// native/src/cuda/emulation.h (a thread per CUDA thread, barriers, wmma tiles emulated), against the
// CPU kernels: fp32 exactly up to summation order, bf16 against the host reference fed the same
// rounding, fp16 within fp16 rounding. This checks indexing, fragment layouts, padding, the dW chunk
// path and accumulate on machines without a GPU; speed and the real hardware remain for gpu.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bsrBackwardData, bsrBackwardWeight, bsrForward } from '../../native/kernels';
import { nativeCuda, nativeLayoutOf } from '../../native/cuda';
import { productCases, relError, type ProductCase } from './cases';

const root = join(__dirname, '..', '..', '..');
const PRECISIONS = { fp32: 0, bf16: 1, fp16: 2 } as const;
// dW in chunks of 64 rows: a single direct chunk for m = 1, several chunks plus the ordered
// reduction for the others.
const CHUNK_ROWS = 64;

let binary = '';
let buildError: string | false = false;
const dir = mkdtempSync(join(tmpdir(), 'pixelfly-cuda-emu-'));
{
  binary = join(dir, 'emulate_kernels');
  const r = spawnSync('g++', ['-std=c++20', '-O2', '-pthread', '-I', join(root, 'native', 'src'), '-o', binary,
    join(root, 'test', 'cuda', 'emulate_kernels.cc')], { encoding: 'utf8' });
  if (r.error) buildError = `SKIPPED: g++ is not available (${r.error.message}); install build-essential`;
  else if (r.status !== 0) buildError = '';  // a compile error is a failure, reported by the test below
  if (r.status !== 0 && !r.error) binary = `compile error:\n${r.stderr}`;
}

interface Outputs { y: Float32Array; dx: Float32Array; dw: Float32Array; y2: Float32Array }

function emulate(c: ProductCase, precision: keyof typeof PRECISIONS): Outputs {
  const ix = c.index;
  const header = Int32Array.from([PRECISIONS[precision], ix.block, ix.blockRows, ix.blockCols, ix.nnz, c.out, c.in, c.m, CHUNK_ROWS, 1]);
  const parts = [header, ix.rowPtr, ix.colIdx, ix.colPtr, ix.rowIdx, ix.tBlock, c.weights, c.x, c.dy, c.bias];
  const input = Buffer.concat(parts.map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength)));
  const r = spawnSync(binary, [], { input, maxBuffer: 1 << 28 });
  assert.equal(r.status, 0, `emulator failed: ${r.stderr?.toString()}`);
  const out = new Float32Array(r.stdout.buffer, r.stdout.byteOffset, r.stdout.byteLength / 4).slice();
  const ny = c.m * c.out, nx = c.m * c.in, nw = c.weights.length;
  assert.equal(out.length, 2 * ny + nx + nw, 'emulator output size');
  return { y: out.subarray(0, ny), dx: out.subarray(ny, ny + nx), dw: out.subarray(ny + nx, ny + nx + nw), y2: out.subarray(ny + nx + nw) };
}

async function cpuExpected(c: ProductCase, precision: keyof typeof PRECISIONS) {
  const args = { layout: nativeLayoutOf(c.index), out: c.out, in: c.in, m: c.m };
  if (precision === 'bf16') {
    const ref = nativeCuda().reference;
    const y = new Float32Array(c.m * c.out), dx = new Float32Array(c.m * c.in), dw = new Float32Array(c.weights.length);
    await ref.bsrForward({ ...args, weights: c.weights, x: c.x, y, bias: c.bias, precision });
    await ref.bsrBackwardData({ ...args, weights: c.weights, dy: c.dy, dx, precision });
    await ref.bsrBackwardWeight({ ...args, dy: c.dy, x: c.x, dw, precision, chunkRows: CHUNK_ROWS });
    return { y, dx, dw };
  }
  const w = { index: c.index, out: c.out, in: c.in, weights: c.weights };
  return {
    y: await bsrForward(w, c.x, c.m, { bias: c.bias }),
    dx: await bsrBackwardData(w, c.dy, c.m),
    dw: await bsrBackwardWeight(w, c.dy, c.x, c.m),
  };
}

const TOL = { fp32: 2e-5, bf16: 1e-4, fp16: 5e-3 } as const;
// The 1000-row case adds minutes of thread start-ups and nothing the smaller ones do not cover.
const cases = productCases().filter((c) => c.m <= 200);

test('the kernel emulator builds', { skip: buildError || false }, () => {
  assert.ok(!binary.startsWith('compile error'), binary);
});

for (const precision of ['fp32', 'bf16', 'fp16'] as const) {
  test(`emulated ${precision} kernels = CPU (every block size, padding, odd M, empty rows/columns, dW chunks)`, { skip: buildError || false, timeout: 600_000 }, async () => {
    assert.ok(!binary.startsWith('compile error'), binary);
    for (const c of cases) {
      const got = emulate(c, precision);
      const want = await cpuExpected(c, precision);
      assert.ok(relError(got.y, want.y) < TOL[precision], `${c.name} forward: ${relError(got.y, want.y)}`);
      assert.ok(relError(got.dx, want.dx) < TOL[precision], `${c.name} dX: ${relError(got.dx, want.dx)}`);
      assert.ok(relError(got.dw, want.dw) < TOL[precision], `${c.name} dW: ${relError(got.dw, want.dw)}`);
      assert.ok(relError(got.y2, got.y.map((v) => v + 1)) < 1e-6, `${c.name} accumulate`);
    }
  });
}

test('emulator scratch cleaned up', () => rmSync(dir, { recursive: true, force: true }));

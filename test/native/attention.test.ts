// The attention cores: core's score layouts, the native plain reference against an independent
// float64 masked softmax written here (forward) and its finite differences (backward), then the
// kernels against the reference on every instruction-set path this CPU has, at many T, block,
// head sizes, causal and not; determinism across thread counts; the error paths.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ATTENTION_BLOCK_SIZES, attentionLayout, attentionCoreFlops, DENSE_ATTENTION_BLOCK, performerProjection, type AttentionSpec } from '../../core/attention';
import { flatBlockButterflyLayout } from '../../core/layout';
import { blockIndexFromMask, buildBlockIndex, type BlockIndex } from '../../core/blockIndex';
import { PixelflyConfigError } from '../../core/errors';
import { attentionBackward, attentionBlocks, attentionForward, type AttentionProblem } from '../../native/attention';
import { forceIsa, kernelInfo } from '../../native/kernels';
import { validateModelSpec } from '../../core/modelSpec';
import { createModel, EngineDataset } from '../../native/engine';
import { syntheticTokens } from '../../native/datasets';
import { mulberry32 } from '../../core/random';

function randomArray(n: number, rand: () => number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rand() * 2 - 1) * scale;
  return a;
}

/** A random score layout with every diagonal block (and, when causal, nothing above it). */
function randomIndex(T: number, block: number, causal: boolean, keep: number, rand: () => number): BlockIndex {
  const n = Math.ceil(T / block);
  const mask = new Uint8Array(n * n);
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) mask[r * n + c] = r === c || ((!causal || c < r) && rand() < keep) ? 1 : 0;
  }
  return blockIndexFromMask(mask, n, n, block);
}

interface Problem extends AttentionProblem {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
}

function makeProblem(index: BlockIndex, T: number, heads: number, headDim: number, batch: number, causal: boolean, rand: () => number): Problem {
  const n = batch * T * heads * headDim;
  // Scores of a few units, so the softmax is neither flat nor one-hot.
  return { index, batch, heads, T, headDim, causal, q: randomArray(n, rand, 1.5), k: randomArray(n, rand, 1.5), v: randomArray(n, rand) };
}

/** Float64 attention over a T×T 0/1 mask built straight from the block mask, as plainly as possible. */
function denseMaskedAttention(p: Problem, q: Float64Array = Float64Array.from(p.q), k: Float64Array = Float64Array.from(p.k)): { o: Float64Array; lse: Float64Array } {
  const { index, batch, heads, T, headDim: d } = p;
  const scale = 1 / Math.sqrt(d);
  const kept = (i: number, j: number): boolean => {
    if (p.causal && j > i) return false;
    const r = Math.floor(i / index.block);
    const c = Math.floor(j / index.block);
    for (let t = index.rowPtr[r]; t < index.rowPtr[r + 1]; t++) if (index.colIdx[t] === c) return true;
    return false;
  };
  const at = (b: number, t: number, h: number) => ((b * T + t) * heads + h) * d;
  const o = new Float64Array(p.q.length);
  const lse = new Float64Array(batch * heads * T);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < T; i++) {
        const s: number[] = [];
        const js: number[] = [];
        for (let j = 0; j < T; j++) {
          if (!kept(i, j)) continue;
          let dot = 0;
          for (let e = 0; e < d; e++) dot += q[at(b, i, h) + e] * k[at(b, j, h) + e];
          s.push(dot * scale);
          js.push(j);
        }
        const mx = Math.max(...s);
        const w = s.map((x) => Math.exp(x - mx));
        const sum = w.reduce((a, x) => a + x, 0);
        lse[(b * heads + h) * T + i] = mx + Math.log(sum);
        for (let n = 0; n < js.length; n++) {
          for (let e = 0; e < d; e++) o[at(b, i, h) + e] += (w[n] / sum) * p.v[at(b, js[n], h) + e];
        }
      }
    }
  }
  return { o, lse };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

// ------------------------------------------------------------------------------ core layouts

test('Pixelfly score layouts are the flat block butterfly of T×T, cut to the lower triangle when causal', () => {
  const spec: AttentionSpec = { kind: 'pixelfly', block: 32, butterflySize: 16, nFactors: 3, globalSize: 40 };
  const full = flatBlockButterflyLayout(1000, 1000, { block: 32, butterflySize: 16, nFactors: 3, globalSize: 40 });
  const bi = attentionLayout(1000, spec, false);
  assert.deepEqual(bi.layout.mask, full.mask);
  assert.equal(bi.density, full.nnzBlocks / (32 * 32));
  const causal = attentionLayout(1000, spec, true);
  const n = full.blockRows;
  let kept = 0;
  for (let r = 0; r < n; r++) {
    assert.equal(causal.layout.mask[r * n + r], 1, `diagonal block ${r} kept`);
    for (let c = 0; c < n; c++) {
      const want = c <= r ? full.mask[r * n + c] : 0;
      assert.equal(causal.layout.mask[r * n + c], want, `block (${r}, ${c})`);
      kept += want;
    }
  }
  assert.equal(causal.layout.nnzBlocks, kept);
  assert.equal(causal.density, kept / ((n * (n + 1)) / 2));
  // Dense attention: every block of the kernels' preferred size, density 1 either way.
  const dense = attentionLayout(300, { kind: 'dense' }, true);
  assert.equal(dense.layout.block, DENSE_ATTENTION_BLOCK);
  assert.equal(dense.density, 1);
  assert.equal(dense.layout.nnzBlocks, 5 * 6 / 2);
});

test('attention layouts name the parameter at fault, in the context\'s terms', () => {
  assert.throws(
    () => attentionLayout(1000, { kind: 'pixelfly', block: 16, butterflySize: 32, nFactors: 2 }, true),
    (e: unknown) => e instanceof PixelflyConfigError && e.param === 'attention.butterfly_size' && /does not divide the context 1008/.test(e.message) && !/features/.test(e.message),
  );
  assert.throws(() => attentionLayout(1000, { kind: 'pixelfly', block: 48, butterflySize: 4, nFactors: 2 }, true), /attention\.block: must be one of 16, 32, 64, 128/);
  assert.deepEqual(attentionBlocks(), [...ATTENTION_BLOCK_SIZES], 'the attention kernels implement the block sizes core plans attention with');
});

test('attention core FLOPs: 4·T²·d forward, halved when causal, scaled by density; backward twice that', () => {
  assert.deepEqual(attentionCoreFlops(1024, 768, false), { forward: 4 * 1024 * 1024 * 768, backward: 8 * 1024 * 1024 * 768 });
  assert.deepEqual(attentionCoreFlops(1024, 768, true, 0.25), { forward: 0.5 * 1024 * 1024 * 768, backward: 1024 * 1024 * 768 });
});

test('model specs take attention {kind: "pixelfly", ...} on vit and gpt, and report bad ones with their paths', () => {
  const gpt = { kind: 'gpt', vocab: 16, context: 100, dim: 16, depth: 1, heads: 2, mlpHidden: 32 };
  assert.ok(validateModelSpec({ ...gpt, attention: { kind: 'pixelfly', block: 16, butterflySize: 4, nFactors: 2, globalSize: 8 } }).ok);
  assert.ok(validateModelSpec({ ...gpt, attention: { kind: 'dense' } }).ok);
  const issues = (attention: unknown) => {
    const r = validateModelSpec({ ...gpt, attention });
    return r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`);
  };
  assert.deepEqual(issues({ kind: 'sparse' }), ['attention.kind: must be one of dense, pixelfly, got "sparse"']);
  assert.deepEqual(issues({ kind: 'pixelfly', block: 16, nFactors: 2 }), ['attention.butterflySize: is required']);
  assert.deepEqual(issues({ kind: 'dense', block: 16 }), ['attention.block: is not a field of dense attention (expected kind)']);
  // 100 tokens pad to 112 in blocks of 16: a butterfly of 32 cannot stretch over them.
  assert.match(issues({ kind: 'pixelfly', block: 16, butterflySize: 32, nFactors: 2 })[0], /^attention\.butterflySize: 32 does not divide the context 112/);
  assert.match(issues({ kind: 'pixelfly', block: 24, butterflySize: 4, nFactors: 2 })[0], /^attention\.block: must be one of 16, 32, 64, 128/);
  // The low-rank term's Performer features come in ± pairs.
  assert.ok(validateModelSpec({ ...gpt, attention: { kind: 'pixelfly', block: 16, butterflySize: 4, nFactors: 2, features: 64 } }).ok);
  assert.deepEqual(issues({ kind: 'pixelfly', block: 16, butterflySize: 4, nFactors: 2, features: 7 }), [
    'attention.features: must be an even integer in [0, 1024] (Performer features, used in ± pairs), got 7',
  ]);
  assert.match(issues({ kind: 'dense', features: 8 })[0], /^attention\.features: is not a field of dense attention/);
  const mlp = validateModelSpec({ kind: 'mlp', inputFeatures: 4, hidden: [], classes: 2, attention: { kind: 'dense' } });
  assert.ok(!mlp.ok && mlp.issues[0].path === 'attention');
});

test('a GPT with Pixelfly attention trains through the engine, its attention core timed as a part of its own', async () => {
  const spec = {
    kind: 'gpt', vocab: 16, context: 96, dim: 16, depth: 2, heads: 2, mlpHidden: 32,
    attention: { kind: 'pixelfly', block: 16, butterflySize: 4, nFactors: 2, globalSize: 16 },
  };
  const m = await createModel({ spec, seed: 2, threads: 2, train: { batch: 4, lr: 3e-3, totalSteps: 30 } });
  const data = new EngineDataset(syntheticTokens({ vocab: 16, train: 4096, test: 512 }));
  const steps = await m.trainSteps(data, 30);
  assert.ok(steps.every((s) => Number.isFinite(s.loss)));
  assert.ok(steps[29].loss < steps[0].loss - 0.3, `loss ${steps[0].loss} → ${steps[29].loss}`);
  const attention = steps[29].ms.parts.find((p) => p.name === 'attention');
  assert.ok(attention && attention.forward > 0 && attention.backward > 0);
});

// ------------------------------------------------------------------------------ the reference

test('the reference forward is the masked softmax of the kept scores (float64, built from the block mask)', async () => {
  const rand = mulberry32(1);
  for (const [T, block, causal, heads, d] of [[37, 16, false, 2, 5], [70, 32, true, 1, 8], [64, 16, true, 3, 4]] as const) {
    const p = makeProblem(randomIndex(T, block, causal, 0.4, rand), T, heads, d, 2, causal, rand);
    const want = denseMaskedAttention(p);
    const got = await attentionForward({ ...p, reference: true }, p);
    assert.ok(maxAbsDiff(got.o, want.o) < 2e-6, `o at T ${T}: ${maxAbsDiff(got.o, want.o)}`);
    assert.ok(maxAbsDiff(got.lse, want.lse) < 2e-6, `lse at T ${T}`);
  }
});

test('the reference backward matches finite differences of the float64 masked softmax', async () => {
  const rand = mulberry32(2);
  const T = 40;
  const p = makeProblem(randomIndex(T, 16, true, 0.5, rand), T, 2, 6, 1, true, rand);
  const dO = randomArray(p.q.length, rand);
  const g = await attentionBackward({ ...p, reference: true }, { ...p, dO });
  const loss = (q: Float64Array<ArrayBuffer>, k: Float64Array<ArrayBuffer>, v: Float32Array): number => {
    const { o } = denseMaskedAttention({ ...p, v }, q, k);
    let s = 0;
    for (let i = 0; i < o.length; i++) s += o[i] * dO[i];
    return s;
  };
  const h = 1e-4;
  for (const which of ['q', 'k', 'v'] as const) {
    const grad = which === 'q' ? g.dq : which === 'k' ? g.dk : g.dv;
    for (let n = 0; n < 12; n++) {
      const at = Math.floor(rand() * p.q.length);
      const q = Float64Array.from(p.q);
      const k = Float64Array.from(p.k);
      let fd: number;
      if (which === 'v') {
        // v enters linearly: a float32 step is exact enough.
        const plus = Float32Array.from(p.v);
        const minus = Float32Array.from(p.v);
        plus[at] += 0.5;
        minus[at] -= 0.5;
        fd = loss(q, k, plus) - loss(q, k, minus);
      } else {
        const x = which === 'q' ? q : k;
        x[at] += h;
        const up = loss(q, k, p.v);
        x[at] -= 2 * h;
        fd = (up - loss(q, k, p.v)) / (2 * h);
      }
      assert.ok(Math.abs(fd - grad[at]) < 2e-5 + 1e-4 * Math.abs(fd), `d${which}[${at}]: finite difference ${fd}, reference ${grad[at]}`);
    }
  }
});

// ------------------------------------------------------------------------------ the kernels

const SHAPES: Array<{ T: number; block: number; d: number; heads: number; batch: number; keep: number }> = [
  { T: 1, block: 16, d: 8, heads: 1, batch: 1, keep: 1 },
  { T: 15, block: 16, d: 16, heads: 2, batch: 1, keep: 1 },
  { T: 64, block: 16, d: 4, heads: 1, batch: 2, keep: 0.5 },
  { T: 100, block: 32, d: 24, heads: 3, batch: 1, keep: 0.4 },
  { T: 130, block: 64, d: 64, heads: 2, batch: 1, keep: 0.3 },
  { T: 257, block: 32, d: 40, heads: 1, batch: 1, keep: 0.2 },
  { T: 200, block: 128, d: 80, heads: 1, batch: 1, keep: 1 },
  { T: 96, block: 16, d: 130, heads: 1, batch: 1, keep: 0.5 },
];

async function checkAgainstReference(p: Problem, label: string, rand: () => number): Promise<void> {
  const ref = await attentionForward({ ...p, reference: true }, p);
  const got = await attentionForward(p, p);
  const scaleO = Math.max(1, maxAbs(ref.o));
  assert.ok(maxAbsDiff(got.o, ref.o) < 2e-6 * scaleO, `${label}: o differs by ${maxAbsDiff(got.o, ref.o)}`);
  assert.ok(maxAbsDiff(got.lse, ref.lse) < 4e-6 * Math.max(1, maxAbs(ref.lse)), `${label}: lse differs by ${maxAbsDiff(got.lse, ref.lse)}`);
  const dO = randomArray(p.q.length, rand);
  const gRef = await attentionBackward({ ...p, reference: true }, { ...p, dO });
  const g = await attentionBackward(p, { ...p, dO, o: got.o, lse: got.lse });
  for (const k of ['dq', 'dk', 'dv'] as const) {
    const tol = 1e-5 * Math.max(1, maxAbs(gRef[k]));
    assert.ok(maxAbsDiff(g[k], gRef[k]) < tol, `${label}: ${k} differs by ${maxAbsDiff(g[k], gRef[k])}`);
  }
}

test('the kernels match the reference on every instruction-set path, at many T, block and head sizes', async (t) => {
  const info = kernelInfo();
  const rand = mulberry32(3);
  try {
    for (const isa of ['portable', 'avx2', 'avx512'] as const) {
      if (!info.supportedIsas.includes(isa)) {
        t.diagnostic(`SKIPPED ${isa}: this CPU lacks it (compiled, not run)`);
        continue;
      }
      forceIsa(isa);
      for (const s of SHAPES) {
        for (const causal of [false, true]) {
          const index = s.keep === 1 && causal === false
            ? buildBlockIndex(attentionLayout(s.T, { kind: 'dense' }, false).layout)
            : randomIndex(s.T, s.block, causal, s.keep, rand);
          // The dense layout's block is the kernels' default; the shapes pick theirs otherwise.
          const p = makeProblem(index, s.T, s.heads, s.d, s.batch, causal, rand);
          await checkAgainstReference(p, `${isa} T ${s.T} block ${index.block} d ${s.d} ${causal ? 'causal' : 'bidirectional'}`, rand);
        }
      }
      // A real Pixelfly layout, causal, with global tokens.
      const T = 512;
      const layout = attentionLayout(T, { kind: 'pixelfly', block: 32, butterflySize: 16, nFactors: 4, globalSize: 32 }, true);
      await checkAgainstReference(makeProblem(buildBlockIndex(layout.layout), T, 2, 32, 1, true, rand), `${isa} Pixelfly T 512`, rand);
    }
  } finally {
    forceIsa(info.bestIsa);
  }
});

test('results are bitwise identical for 1 and 2 threads', async () => {
  const rand = mulberry32(4);
  const T = 300;
  const p = makeProblem(buildBlockIndex(attentionLayout(T, { kind: 'pixelfly', block: 32, butterflySize: 8, nFactors: 3 }, true).layout), T, 3, 32, 2, true, rand);
  const dO = randomArray(p.q.length, rand);
  const run = async (threads: number) => {
    const f = await attentionForward({ ...p, threads }, p);
    return { ...f, ...(await attentionBackward({ ...p, threads }, { ...p, dO, ...f })) };
  };
  const [a, b] = [await run(1), await run(2)];
  for (const k of ['o', 'lse', 'dq', 'dk', 'dv'] as const) assert.deepEqual(a[k], b[k], k);
});

test('bad layouts and shapes are refused with the reason, before any work', async () => {
  const rand = mulberry32(5);
  const T = 64;
  const noDiagonal = blockIndexFromMask(Uint8Array.from([1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1].map((x, i) => (i === 5 ? 0 : x))), 4, 4, 16);
  const p = makeProblem(noDiagonal, T, 1, 8, 1, false, rand);
  await assert.rejects(attentionForward(p, p), /diagonal block 1 is not kept/);
  const above = blockIndexFromMask(Uint8Array.from([1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]), 4, 4, 16);
  await assert.rejects(attentionForward({ ...p, index: above, causal: true }, p), /above the diagonal/);
  await assert.rejects(attentionForward({ ...p, T: 65 }, p), /grid: 4x4 blocks, expected 5x5/);
  const ok = buildBlockIndex(attentionLayout(T, { kind: 'dense' }, false).layout);
  await assert.rejects(attentionForward({ ...p, index: ok }, { ...p, q: new Float32Array(3) }), /q has 3 floats, expected batch\*T\*heads\*headDim = 512/);
  await assert.rejects(attentionBackward({ ...p, index: ok }, { ...p, dO: new Float32Array(512) }), /o must be a Float32Array/);
});

test("the low-rank term's projection: per core, blocks of head_dim orthogonal rows, each of a Gaussian vector's length, drawn from the seed", () => {
  const hd = 8;
  const m = 2 * (2 * hd + 3); // m/2 = 19 rows: two full blocks of 8 and one of 3
  const w = performerProjection(2, m, hd, 7);
  assert.equal(w.length, 2 * (m / 2) * hd);
  assert.deepEqual(performerProjection(2, m, hd, 7), w, 'the same seed draws the same projection');
  assert.notDeepEqual(performerProjection(2, m, hd, 8), w);
  const row = (l: number, r: number) => Array.from(w.subarray((l * (m / 2) + r) * hd, (l * (m / 2) + r + 1) * hd));
  const dot = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i], 0);
  for (const l of [0, 1]) {
    for (const [lo, hi] of [[0, 8], [8, 16], [16, 19]]) {
      for (let r = lo; r < hi; r++) {
        for (let s = r + 1; s < hi; s++) {
          const cos = dot(row(l, r), row(l, s)) / Math.sqrt(dot(row(l, r), row(l, r)) * dot(row(l, s), row(l, s)));
          assert.ok(Math.abs(cos) < 1e-5, `core ${l}: rows ${r} and ${s} of one block are orthogonal (cos ${cos})`);
        }
      }
    }
  }
  assert.notDeepEqual(row(0, 0), row(1, 0), 'each core has its own');
  const lengths = Array.from({ length: m / 2 }, (_, r) => Math.sqrt(dot(row(0, r), row(0, r))));
  assert.ok(lengths.every((x) => x > 0.5 && x < 6), `lengths like a Gaussian vector's in ${hd} dimensions (about √${hd}): ${lengths.map((x) => x.toFixed(2))}`);
});

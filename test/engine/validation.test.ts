// Bad specs, plans and data are refused with errors that name the field or file and the problem.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateModelSpec, specInventory, parseModelSpec, type ModelSpec } from '../../core/modelSpec';
import { cpuHasBf16, createModel, EngineDataset } from '../../native/engine';
import { kernelInfo } from '../../native/kernels';
import {
  DEBIAN_FASHION_MNIST, loadFashionMnist, loadNpyFolder, loadTextCorpus, parseIdx, parseNpy, syntheticClassification,
} from '../../native/datasets';
import { npyFile } from '../support/dataFiles';

const MIXER: ModelSpec = {
  kind: 'mixer', image: { channels: 1, height: 28, width: 28 }, patch: 4, dim: 64, depth: 2, tokenHidden: 32, channelHidden: 128, classes: 10,
};
const TRAIN = { batch: 8, lr: 1e-3, totalSteps: 10 };

function issues(v: unknown): string[] {
  const r = validateModelSpec(v);
  return r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`);
}

test('model spec validation reports every problem with its path', () => {
  assert.deepEqual(issues(MIXER), []);
  assert.deepEqual(issues(null), [': must be a JSON object']);
  assert.match(issues({ kind: 'resnet' })[0], /^kind: must be one of mlp, mixer, vit, gpt/);
  const bad = issues({ ...MIXER, patch: 5, dim: 0, depth: 2.5, extra: 1 });
  assert.ok(bad.some((m) => m.startsWith('patch: 5 must divide the image size 28×28')), bad.join('\n'));
  assert.ok(bad.some((m) => m.startsWith('dim: must be between 1')), bad.join('\n'));
  assert.ok(bad.some((m) => m.startsWith('depth: must be an integer')), bad.join('\n'));
  assert.ok(bad.some((m) => m.startsWith('extra: is not a field of a mixer spec')), bad.join('\n'));
  assert.ok(issues({ kind: 'gpt', vocab: 65, context: 64, dim: 100, depth: 2, heads: 3, mlpHidden: 400 }).includes('heads: 3 must divide dim 100'));
  assert.ok(issues({ kind: 'mlp', inputFeatures: 784, hidden: [64, -1], classes: 10 }).some((m) => m.startsWith('hidden[1]:')));
  assert.ok(issues({ kind: 'vit', image: { channels: 1, height: 28 }, patch: 4, dim: 64, depth: 1, heads: 2, mlpHidden: 64, classes: 10 })
    .some((m) => m.startsWith('image.width: is required')));
  assert.throws(() => parseModelSpec({ ...MIXER, classes: 1 }), /invalid model spec: classes: must be between 2/);
});

test('the inventory lists every matmul once with its rows per sample', () => {
  const inv = specInventory(MIXER).layers;
  assert.deepEqual(inv.map((l) => [l.name, l.role, l.in, l.out, l.count, l.rowsPerSample]), [
    ['patch_embed', 'patch_embed', 16, 64, 1, 49],
    ['blocks.token_mix.fc1', 'token_mix', 49, 32, 2, 64],
    ['blocks.token_mix.fc2', 'token_mix', 32, 49, 2, 64],
    ['blocks.channel_mix.fc1', 'mlp_fc1', 64, 128, 2, 49],
    ['blocks.channel_mix.fc2', 'mlp_fc2', 128, 64, 2, 49],
    ['head', 'head', 64, 10, 1, 1],
  ]);
  const gpt = specInventory({ kind: 'gpt', vocab: 65, context: 32, dim: 64, depth: 3, heads: 4, mlpHidden: 256 }).layers;
  assert.deepEqual(gpt.map((l) => l.name), ['embedding', 'blocks.attn.qkv', 'blocks.attn.(core)', 'blocks.attn.proj', 'blocks.mlp.fc1', 'blocks.mlp.fc2', 'head']);
  assert.equal(gpt[1].out, 192);
  // The attention core: d = dim, keys = context, causal; it has no weights and is never sparsified.
  assert.deepEqual([gpt[2].role, gpt[2].in, gpt[2].out, gpt[2].count, gpt[2].rowsPerSample, gpt[2].causal], ['attn_core', 64, 32, 3, 32, true]);
});

test('bad specs and plans are refused before anything is built', async () => {
  await assert.rejects(createModel({ spec: { ...MIXER, patch: 3 }, train: TRAIN }), /patch: 3 must divide/);
  const cfg = { block: 16, butterflySize: 4, nFactors: 2, globalSize: 0, shuffle: false, rank: 4 };
  await assert.rejects(createModel({ spec: MIXER, plan: { layers: [{ name: 'blocks.mlp.fc1', sparsify: true, config: cfg }] }, train: TRAIN }),
    /plan layer 'blocks.mlp.fc1': not a matmul of this mixer spec/);
  await assert.rejects(createModel({ spec: MIXER, plan: { layers: [{ name: 'blocks.channel_mix.fc1', sparsify: true, config: { ...cfg, butterflySize: 3 } }] }, train: TRAIN }),
    /plan layer 'blocks.channel_mix.fc1' \(128×64\): butterfly_size/);
  await assert.rejects(createModel({ spec: MIXER, plan: { layers: [{ name: 'blocks.channel_mix.fc1', sparsify: true, config: { ...cfg, rank: 999 } }] }, train: TRAIN }),
    /rank must be an integer in 0\.\.64/);
  await assert.rejects(createModel({ spec: MIXER, plan: { layers: [{ name: 'blocks.channel_mix.fc1', sparsify: true }] }, train: TRAIN }),
    /config is missing/);
  const gpt: ModelSpec = { kind: 'gpt', vocab: 16, context: 8, dim: 32, depth: 1, heads: 2, mlpHidden: 64 };
  await assert.rejects(createModel({ spec: gpt, plan: { layers: [{ name: 'embedding', sparsify: true, config: cfg }] }, train: TRAIN }),
    /embedding is a lookup/);
  await assert.rejects(createModel({ spec: MIXER, train: { ...TRAIN, batch: 0 } }), /batch: must be a positive integer/);
  await assert.rejects(createModel({ spec: MIXER, train: TRAIN, threads: 0 }), /threads: must be between 1 and 256/);
});

test('a precision the backend cannot run is refused; auto means bf16 on a CPU with bf16 instructions, fp32 on others', async () => {
  await assert.rejects(createModel({ spec: MIXER, train: TRAIN, backend: 'cpu', precision: 'fp16' }),
    /precision: 'fp16' runs on the CUDA backend only; the cpu backend computes fp32 or bf16 products/);
  await assert.rejects(createModel({ spec: MIXER, train: TRAIN, backend: 'cpu', precision: 'fp8' as never }),
    /precision: must be 'fp32', 'bf16' or 'fp16', got 'fp8'/);
  const info = kernelInfo();
  const native = info.supportedIsas.includes('avx512bf16') || info.supportedIsas.includes('amx');
  assert.equal(cpuHasBf16(), native);
  const auto = await createModel({ spec: MIXER, train: TRAIN, backend: 'cpu', precision: 'auto' });
  assert.equal(auto.precision, native ? 'bf16' : 'fp32');
  const bf16 = await createModel({ spec: MIXER, train: TRAIN, backend: 'cpu', precision: 'bf16' });
  assert.equal(bf16.precision, 'bf16');
  assert.equal(bf16.kernels, `${info.isa} kernels, bf16 on ${info.bf16}`);
  assert.equal((await createModel({ spec: MIXER, train: TRAIN, backend: 'cpu' })).kernels, `${info.isa} kernels`);
});

test('datasets that do not fit the model are refused, and a busy model refuses a second call', async () => {
  const m = await createModel({ spec: MIXER, train: TRAIN });
  const wrong = new EngineDataset(syntheticClassification({ features: 100, classes: 10, train: 64, test: 16 }));
  assert.throws(() => m.trainSteps(wrong, 1), /dataset 'synthetic': samples have 100 values but the model's input takes 784/);
  const right = new EngineDataset(syntheticClassification({ features: 784, classes: 10, train: 64, test: 16 }));
  const first = m.trainSteps(right, 2);
  assert.throws(() => m.trainSteps(right, 1), /model is busy/);
  await first;
  assert.throws(() => new EngineDataset({ ...syntheticClassification({ features: 4, classes: 3, train: 8, test: 4 }), classes: 2 }), /label 2 outside 0\.\.1/);
  const d = syntheticClassification({ features: 4, classes: 3, train: 8, test: 4 });
  assert.throws(() => new EngineDataset({ ...d, trainY: d.trainY.slice(1) }), /dataset\.trainX: 32 values is not 7 labels × 4 features/);
});

test('malformed data files are refused with the file named', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-data-'));
  try {
    assert.throws(() => parseIdx('a.idx', Buffer.from([1, 2])), /a\.idx: too short/);
    assert.throws(() => parseIdx('a.idx', Buffer.from([1, 0, 8, 1, 0, 0, 0, 1, 5])), /a\.idx: not an IDX file/);
    assert.throws(() => parseIdx('a.idx', Buffer.from([0, 0, 8, 1, 0, 0, 0, 3, 5])), /a\.idx: IDX payload has 1 bytes, the header \(3\) says 3/);
    await assert.rejects(loadFashionMnist(dir), new RegExp(`${dir}/train-images-idx3-ubyte.gz: file not found`));
    // A truncated gzip file.
    writeFileSync(join(dir, 'train-images-idx3-ubyte.gz'), gzipSync(Buffer.from([0, 0, 8, 3, 0, 0, 0, 2])).subarray(0, 12));
    await assert.rejects(loadFashionMnist(dir), /train-images-idx3-ubyte\.gz: corrupt gzip data/);
    await assert.rejects(loadTextCorpus(join(dir, 'none.txt')), /none\.txt: file not found/);
    writeFileSync(join(dir, 'tiny.txt'), 'abc');
    await assert.rejects(loadTextCorpus(join(dir, 'tiny.txt')), /tiny\.txt: only 3 characters/);
    assert.throws(() => parseNpy('x.npy', Buffer.from('hello world')), /x\.npy: not a \.npy file/);
    await assert.rejects(loadNpyFolder(dir), /x\.npy: file not found/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('.npy arrays load (float32 x, int64 y) and a held-out split is made', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-npy-'));
  try {
    const n = 20;
    const x = Buffer.from(Float32Array.from({ length: n * 3 }, (_, i) => i / 10).buffer);
    const y = Buffer.alloc(8 * n);
    for (let i = 0; i < n; i++) y.writeBigInt64LE(BigInt(i % 3), 8 * i);
    writeFileSync(join(dir, 'x.npy'), npyFile('<f4', [n, 3], x));
    writeFileSync(join(dir, 'y.npy'), npyFile('<i8', [n], y));
    const d = await loadNpyFolder(dir);
    assert.equal(d.features, 3);
    assert.equal(d.classes, 3);
    assert.equal(d.trainY.length, 18);
    assert.equal(d.testY.length, 2);
    assert.ok(Math.abs((d.testX as Float32Array)[0] - 5.4) < 1e-6);
    writeFileSync(join(dir, 'y.npy'), npyFile('<i8', [n - 1], y.subarray(8)));
    await assert.rejects(loadNpyFolder(dir), /y\.npy: 19 labels for 20 samples/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const noFmnist = existsSync(DEBIAN_FASHION_MNIST)
  ? false
  : `SKIPPED LOUDLY: ${DEBIAN_FASHION_MNIST} is missing (apt-get install dataset-fashion-mnist)`;

test('Fashion-MNIST loads from the Debian package', { skip: noFmnist }, async () => {
  const d = await loadFashionMnist();
  assert.equal(d.features, 784);
  assert.equal(d.trainY.length, 60000);
  assert.equal(d.testY.length, 10000);
  const ds = new EngineDataset(d);
  assert.deepEqual(ds.info(), { name: 'fashion-mnist', kind: 'classification', features: 784, classes: 10, train: 60000, test: 10000 });
});

// PixelflyLinear, an MLP-Mixer block and a transformer block (dense and Pixelfly attention) against
// PyTorch (Debian's python3-torch): the same weights and input go into both; outputs, input
// gradients and every parameter gradient must agree.
// The PyTorch side (torch_crosscheck.py) rebuilds the layers from the authors' formulas in float64.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { flatBlockButterflyLayout, layoutRows, type ButterflyParams } from '../../core/layout';
import { attentionLayout, lowRankFeatures, performerProjection, type AttentionSpec } from '../../core/attention';
import { createModel, createProbe, EngineDataset, pixelflyLayerConfig } from '../../native/engine';
import { syntheticClassification } from '../../native/datasets';
import { mulberry32 } from '../../core/random';
import { PYTHON, torchMissing } from '../support/torch';

const SCRIPT = join(__dirname, '..', '..', '..', 'test', 'engine', 'torch_crosscheck.py');

const skip = torchMissing();

interface PfLayer {
  name: string;
  in: number;
  out: number;
  cfg: ButterflyParams & { rank: number };
}

async function crossCheck(layer: string, model: Record<string, unknown>, pf: PfLayer[], batch: number) {
  const pixelfly: Record<string, unknown> = {};
  const layouts: Record<string, unknown> = {};
  for (const l of pf) {
    pixelfly[l.name] = pixelflyLayerConfig(l.in, l.out, l.cfg);
    // The probe names its lone layer "layer" and a block's layers "block.<name without blocks.>".
    const prefix = l.name === 'layer' ? 'layer' : l.name.replace(/^blocks\./, 'block.');
    layouts[prefix] = { in: l.in, out: l.out, rows: layoutRows(flatBlockButterflyLayout(l.out, l.in, l.cfg)) };
  }
  const m = await createProbe({ probeLayer: layer, ...model, pixelfly }, 11);
  const dims = m.dims();
  const rand = mulberry32(5);
  const x = Float32Array.from({ length: batch * dims.inT * dims.inD }, () => rand() * 2 - 1);
  const dy = Float32Array.from({ length: batch * dims.outT * dims.outD }, () => rand() * 2 - 1);
  const { y, dx, grad } = m.probe(x, batch, dy);
  const params = m.getState().params;
  const info = m.paramInfo();
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-xcheck-'));
  try {
    const input = join(dir, 'case.json');
    const output = join(dir, 'torch.json');
    // A transformer block's score layout, as the engine built it (createProbe, from the same spec).
    const causal = model.causal === true;
    const scores = layer === 'transformer_block' ? attentionLayout(dims.inT, (model.attention as AttentionSpec) ?? { kind: 'dense' }, causal).layout : undefined;
    // The low-rank term's projection is drawn from the probe's seed (11), as createProbe draws it.
    const features = lowRankFeatures(model.attention as AttentionSpec | undefined);
    const lowRank = features > 0 ? { features, projection: Array.from(performerProjection(1, features, (model.dim as number) / (model.heads as number), 11)) } : {};
    const attention = scores && { rows: layoutRows(scores), block: scores.block, causal, heads: model.heads, ...lowRank };
    writeFileSync(
      input,
      JSON.stringify({
        layer, batch, T: dims.inT, inD: dims.inD, x: Array.from(x), dy: Array.from(dy), layouts, attention,
        params: Object.fromEntries(info.map((p) => [p.name, { shape: p.shape, data: Array.from(params.subarray(p.offset, p.offset + p.size)) }])),
      }),
    );
    const r = spawnSync(PYTHON, [SCRIPT, input, output], { encoding: 'utf8' });
    assert.equal(r.status, 0, `torch_crosscheck.py failed: ${r.stderr}`);
    const ref = JSON.parse(readFileSync(output, 'utf8')) as { y: number[]; dx: number[]; grads: Record<string, number[] | null> };
    close('y', y, ref.y);
    close('dx', dx as Float32Array, ref.dx);
    for (const p of info) {
      const g = ref.grads[p.name];
      assert.ok(g, `PyTorch computed no gradient for ${p.name}`);
      close(`grad ${p.name}`, (grad as Float32Array).subarray(p.offset, p.offset + p.size), g);
    }
    return info;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** float32 engine vs float64 PyTorch: errors relative to the tensor's largest entry. */
function close(what: string, got: Float32Array, want: number[]) {
  assert.equal(got.length, want.length, `${what}: ${got.length} values vs PyTorch's ${want.length}`);
  let scale = 1e-6;
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]));
    worst = Math.max(worst, Math.abs(got[i] - want[i]));
  }
  assert.ok(worst / scale < 1e-4, `${what}: max |engine − torch| = ${worst.toExponential(2)} (scale ${scale.toExponential(2)})`);
}

const PF = { block: 16, butterflySize: 4, nFactors: 2 };

test('PixelflyLinear matches PyTorch (outputs, dX, every parameter gradient)', { skip }, async () => {
  const info = await crossCheck('pixelfly', { features: 64, classes: 96, probeT: 5 }, [{ name: 'layer', in: 64, out: 96, cfg: { ...PF, rank: 8 } }], 3);
  assert.deepEqual(info.map((p) => p.name), [
    'layer.sparse.weight', 'layer.low_rank.lr_weight1', 'layer.low_rank.lr_weight2', 'layer.gate.weight', 'layer.gate.bias', 'layer.bias',
  ]);
});

test('PixelflyLinear with padding (in 40, out 36, block 16) matches PyTorch', { skip }, async () => {
  await crossCheck('pixelfly', { features: 40, classes: 36, probeT: 3 }, [{ name: 'layer', in: 40, out: 36, cfg: { ...PF, rank: 4 } }], 2);
});

test('an MLP-Mixer block (Pixelfly channel and token mixing) matches PyTorch', { skip }, async () => {
  const info = await crossCheck(
    'mixer_block',
    { dim: 32, probeT: 16, tokenHidden: 32, channelHidden: 64 },
    [
      { name: 'blocks.channel_mix.fc1', in: 32, out: 64, cfg: { ...PF, rank: 4 } },
      { name: 'blocks.channel_mix.fc2', in: 64, out: 32, cfg: { ...PF, rank: 4 } },
      { name: 'blocks.token_mix.fc1', in: 16, out: 32, cfg: { ...PF, butterflySize: 2, nFactors: 1, rank: 2 } },
    ],
    2,
  );
  assert.ok(info.some((p) => p.name === 'block.token_mix.fc2.weight'), 'token_mix.fc2 stayed dense');
});

test('a dense MLP-Mixer block matches PyTorch', { skip }, async () => {
  await crossCheck('mixer_block', { dim: 24, probeT: 9, tokenHidden: 12, channelHidden: 48 }, [], 3);
});

test('a dense causal transformer block matches PyTorch', { skip }, async () => {
  await crossCheck('transformer_block', { dim: 16, probeT: 21, heads: 2, mlpHidden: 32, causal: true }, [], 2);
});

test('a transformer block with Pixelfly attention (butterfly score layout, global tokens) matches PyTorch, causal and not', { skip }, async () => {
  for (const causal of [true, false]) {
    const attention = { kind: 'pixelfly', block: 16, butterflySize: 4, nFactors: 1, globalSize: causal ? 0 : 5 };
    await crossCheck('transformer_block', { dim: 16, probeT: 70, heads: 2, mlpHidden: 32, causal, attention }, [
      { name: 'blocks.attn.qkv', in: 16, out: 48, cfg: { ...PF, butterflySize: 2, nFactors: 1, rank: 2 } },
    ], 2);
  }
});

test('Pixelfly attention with its low-rank term matches (A1) written out in PyTorch, causal and not', { skip }, async () => {
  for (const causal of [true, false]) {
    // 70 tokens in blocks of 16: five block rows, of which the butterfly keeps a few per row; the
    // rest of the allowed scores are the Performer estimate's.
    const attention = { kind: 'pixelfly', block: 16, butterflySize: 4, nFactors: 1, globalSize: causal ? 0 : 3, features: 8 };
    await crossCheck('transformer_block', { dim: 16, probeT: 70, heads: 2, mlpHidden: 32, causal, attention }, [], 2);
  }
});

test('the safetensors weight export rebuilds the trained Pixelfly Mixer in PyTorch (same logits)', { skip }, async () => {
  const cfg = { block: 16, butterflySize: 2, nFactors: 1, globalSize: 0, shuffle: false, rank: 4 };
  const spec = { kind: 'mixer', image: { channels: 1, height: 8, width: 8 }, patch: 2, dim: 32, depth: 2, tokenHidden: 16, channelHidden: 64, classes: 4 };
  const plan = { layers: ['blocks.channel_mix.fc1', 'blocks.channel_mix.fc2', 'blocks.token_mix.fc1'].map((name) => ({ name, sparsify: true, config: cfg })) };
  const m = await createModel({ spec, plan, seed: 3, threads: 1, train: { batch: 16, lr: 3e-3, totalSteps: 5 } });
  await m.trainSteps(new EngineDataset(syntheticClassification({ features: 64, classes: 4, train: 256, test: 32 })), 5);
  const rand = mulberry32(9);
  const x = Float32Array.from({ length: 3 * 64 }, () => rand() * 2 - 1);
  const { y } = m.probe(x, 3);
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-export-'));
  try {
    const weights = join(dir, 'mixer.safetensors');
    await m.exportWeights(weights);
    writeFileSync(join(dir, 'x.json'), JSON.stringify(Array.from(x)));
    const r = spawnSync(PYTHON, [SCRIPT, '--mixer', weights, join(dir, 'x.json'), join(dir, 'out.json')], { encoding: 'utf8' });
    assert.equal(r.status, 0, `torch_crosscheck.py --mixer failed: ${r.stderr}`);
    close('logits', y, (JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as { logits: number[] }).logits);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// Finite-difference gradient checks of every engine layer, dense and Pixelfly: the analytic input
// and parameter gradients of L = Σ y·dy (one backward pass) against central differences of L
// computed from forward passes alone, at sampled coordinates of the input and of every parameter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createProbe, pixelflyLayerConfig, type ProbeModel } from '../../native/engine';
import { mulberry32 } from '../../core/random';

const PF = { block: 16, butterflySize: 4, nFactors: 2 };

interface Case {
  name: string;
  model: Record<string, unknown>;
  batch: number;
  /** Integer inputs (token ids below this bound) instead of real ones; no input gradient. */
  ids?: number;
}

const CASES: Case[] = [
  { name: 'linear', model: { probeLayer: 'linear', features: 24, classes: 20, probeT: 3 }, batch: 2 },
  {
    name: 'pixelfly (sparse + low-rank + gate)',
    model: { probeLayer: 'pixelfly', features: 64, classes: 48, probeT: 3, pixelfly: { layer: pixelflyLayerConfig(64, 48, { ...PF, rank: 4 }) } },
    batch: 2,
  },
  {
    name: 'pixelfly with padded in/out (40→36)',
    model: { probeLayer: 'pixelfly', features: 40, classes: 36, probeT: 2, pixelfly: { layer: pixelflyLayerConfig(40, 36, { ...PF, rank: 3 }) } },
    batch: 3,
  },
  {
    name: 'pixelfly block-sparse only (rank 0)',
    model: { probeLayer: 'pixelfly', features: 64, classes: 64, probeT: 2, pixelfly: { layer: pixelflyLayerConfig(64, 64, { ...PF, rank: 0 }) } },
    batch: 2,
  },
  { name: 'gelu', model: { probeLayer: 'gelu', dim: 10, probeT: 3 }, batch: 2 },
  { name: 'layernorm', model: { probeLayer: 'layernorm', dim: 12, probeT: 3 }, batch: 2 },
  { name: 'transpose (token mixing)', model: { probeLayer: 'transpose', dim: 5, probeT: 3 }, batch: 2 },
  { name: 'mean pool', model: { probeLayer: 'pool_mean', dim: 6, probeT: 4 }, batch: 2 },
  { name: 'class-token pool', model: { probeLayer: 'pool_cls', dim: 6, probeT: 4 }, batch: 2 },
  { name: 'class token + position embedding', model: { probeLayer: 'cls_pos', dim: 6, probeT: 4 }, batch: 2 },
  { name: 'patch extraction', model: { probeLayer: 'patchify', channels: 2, height: 4, width: 6, patch: 2 }, batch: 2 },
  { name: 'token + position embeddings', model: { probeLayer: 'embedding', vocab: 11, dim: 8, probeT: 5 }, batch: 2, ids: 11 },
  {
    name: 'mixer block, dense',
    model: { probeLayer: 'mixer_block', dim: 8, probeT: 6, tokenHidden: 5, channelHidden: 12 },
    batch: 2,
  },
  {
    name: 'mixer block, Pixelfly channel and token mixing',
    model: {
      probeLayer: 'mixer_block', dim: 32, probeT: 16, tokenHidden: 32, channelHidden: 64,
      pixelfly: {
        'blocks.channel_mix.fc1': pixelflyLayerConfig(32, 64, { ...PF, rank: 2 }),
        'blocks.channel_mix.fc2': pixelflyLayerConfig(64, 32, { ...PF, rank: 2 }),
        'blocks.token_mix.fc1': pixelflyLayerConfig(16, 32, { ...PF, butterflySize: 2, nFactors: 1, rank: 2 }),
      },
    },
    batch: 2,
  },
  {
    name: 'transformer block (attention), non-causal',
    model: { probeLayer: 'transformer_block', dim: 8, probeT: 5, heads: 2, mlpHidden: 16 },
    batch: 2,
  },
  {
    name: 'transformer block, Pixelfly attention (butterfly score layout, a global token), causal',
    model: {
      probeLayer: 'transformer_block', dim: 8, probeT: 50, heads: 2, mlpHidden: 16, causal: true,
      attention: { kind: 'pixelfly', block: 16, butterflySize: 4, nFactors: 1, globalSize: 1 },
    },
    batch: 2,
  },
  {
    // The low-rank term: Performer features estimate the dropped blocks' scores, mixed through one normaliser.
    name: 'transformer block, Pixelfly attention with its low-rank term (Performer features), causal',
    model: {
      probeLayer: 'transformer_block', dim: 8, probeT: 50, heads: 2, mlpHidden: 16, causal: true,
      attention: { kind: 'pixelfly', block: 16, butterflySize: 4, nFactors: 1, features: 6 },
    },
    batch: 2,
  },
  {
    name: 'transformer block, Pixelfly attention with its low-rank term, not causal, a global token',
    model: {
      probeLayer: 'transformer_block', dim: 8, probeT: 40, heads: 2, mlpHidden: 16,
      attention: { kind: 'pixelfly', block: 16, butterflySize: 4, nFactors: 1, globalSize: 1, features: 4 },
    },
    batch: 2,
  },
  {
    name: 'transformer block, causal, Pixelfly qkv/proj/mlp',
    model: {
      probeLayer: 'transformer_block', dim: 32, probeT: 4, heads: 4, mlpHidden: 64, causal: true,
      pixelfly: {
        'blocks.attn.qkv': pixelflyLayerConfig(32, 96, { ...PF, butterflySize: 2, nFactors: 1, rank: 2 }),
        'blocks.attn.proj': pixelflyLayerConfig(32, 32, { ...PF, butterflySize: 2, nFactors: 1, rank: 2 }),
        'blocks.mlp.fc2': pixelflyLayerConfig(64, 32, { ...PF, rank: 2 }),
      },
    },
    batch: 2,
  },
];

function lossOf(m: ProbeModel, x: Float32Array, batch: number, dy: Float32Array): number {
  const { y } = m.probe(x, batch);
  let s = 0;
  for (let i = 0; i < y.length; i++) s += y[i] * dy[i];
  return s;
}

/** Worst |analytic − numeric| over sampled coordinates, relative to the largest gradient seen. */
function check(
  what: string,
  analytic: Float32Array,
  count: number,
  perturb: (i: number, delta: number) => void,
  loss: () => number,
  rand: () => number,
): void {
  const eps = 1e-2;
  const idx = count <= 24 ? [...Array(count).keys()] : Array.from({ length: 24 }, () => Math.floor(rand() * count));
  let worst = 0;
  let scale = 1e-3;
  for (const i of idx) {
    perturb(i, eps);
    const up = loss();
    perturb(i, -2 * eps);
    const down = loss();
    perturb(i, eps);
    const numeric = (up - down) / (2 * eps);
    worst = Math.max(worst, Math.abs(numeric - analytic[i]));
    scale = Math.max(scale, Math.abs(numeric), Math.abs(analytic[i]));
  }
  assert.ok(worst / scale < 2e-2, `${what}: max |analytic − numeric| = ${worst.toExponential(2)} vs gradient scale ${scale.toExponential(2)}`);
}

for (const c of CASES) {
  test(`gradient check: ${c.name}`, async () => {
    const rand = mulberry32(7);
    const m = await createProbe(c.model, 3);
    const dims = m.dims();
    const x = new Float32Array(c.batch * dims.inT * dims.inD);
    for (let i = 0; i < x.length; i++) x[i] = c.ids ? Math.floor(rand() * c.ids) : rand() * 2 - 1;
    const dy = new Float32Array(c.batch * dims.outT * dims.outD);
    for (let i = 0; i < dy.length; i++) dy[i] = rand() * 2 - 1;
    const { grad, dx } = m.probe(x, c.batch, dy);
    assert.ok(grad && dx);
    const state = m.getState();
    const params = state.params;
    const loss = () => lossOf(m, x, c.batch, dy);
    if (!c.ids) {
      check('input', dx, x.length, (i, d) => (x[i] += d), loss, rand);
    }
    for (const p of m.paramInfo()) {
      check(
        p.name,
        grad.subarray(p.offset, p.offset + p.size),
        p.size,
        (i, d) => {
          params[p.offset + i] += d;
          m.setState({ params });
        },
        loss,
        rand,
      );
    }
    if (c.model.pixelfly || c.model.probeLayer === 'pixelfly') {
      assert.ok(m.paramInfo().some((p) => p.name.endsWith('sparse.weight')), 'the plan made a Pixelfly layer');
    }
  });
}

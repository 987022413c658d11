// The planner: paper rules, targets met, monotone in the target, deterministic, explained.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { planModel, type Plan } from '../../core/planner';
import { parseInventory, type Inventory, type InventoryLayer } from '../../core/inventory';
import { flatBlockButterflyLayout } from '../../core/layout';
import { PixelflyConfigError } from '../../core/errors';
import { mulberry32 } from '../support/random';

const root = join(__dirname, '..', '..', '..');
const load = (name: string): Inventory => parseInventory(JSON.parse(readFileSync(join(root, 'examples', 'inventories', name), 'utf8')));
const vit = load('vit_b16.json');
const gpt2 = load('gpt2_small.json');

function byName(plan: Plan, name: string) {
  const l = plan.layers.find((x) => x.name === name);
  assert.ok(l, `layer ${name} in plan`);
  return l;
}

test('budgets are met and every sparsified layer carries a valid layout config', () => {
  for (const [inv, budgets] of [
    [vit, [0.8, 0.5, 0.3, 0.2]],
    [gpt2, [0.8, 0.5]],
  ] as const) {
    for (const budget of budgets) {
      const plan = planModel(inv, { budget });
      assert.ok(plan.targetMet, plan.summary);
      assert.ok(plan.planFlops <= budget * plan.denseFlops * (1 + 1e-9), `${plan.planFlops} ≤ ${budget}·${plan.denseFlops}`);
      for (const l of plan.layers.filter((x) => x.sparsify)) {
        const c = l.config!;
        const layout = flatBlockButterflyLayout(l.out, l.in, c);
        assert.equal(layout.density, l.density);
        assert.ok(l.estSpeedup > 1);
        assert.ok(l.planParams < l.denseParams);
      }
    }
  }
});

test('the paper keeps embeddings, heads and patch embeddings dense and sparsifies the large projections', () => {
  const plan = planModel(gpt2, { budget: 0.5 });
  for (const name of ['transformer.wte', 'transformer.wpe', 'lm_head']) assert.equal(byName(plan, name).sparsify, false, name);
  for (const name of ['transformer.h.*.attn.c_attn', 'transformer.h.*.mlp.c_fc', 'transformer.h.*.mlp.c_proj']) {
    assert.equal(byName(plan, name).sparsify, true, name);
  }
  assert.equal(byName(plan, 'transformer.wte').denseFlops, 0, 'a lookup has no matmul FLOPs');
  const vitPlan = planModel(vit, { budget: 0.3 });
  assert.equal(byName(vitPlan, 'patch_embed.proj').sparsify, false);
  assert.equal(byName(vitPlan, 'head').sparsify, false);
});

test('small layers, pinned layers and layers never built stay dense, and say why', () => {
  const inv: Inventory = {
    layers: [
      { name: 'big', role: 'mlp_fc1', in: 1024, out: 4096, count: 4, rowsPerSample: 128 },
      { name: 'small', role: 'mlp_fc1', in: 64, out: 256, count: 4, rowsPerSample: 128 },
      { name: 'pinned', role: 'mlp_fc2', in: 4096, out: 1024, count: 4, rowsPerSample: 128, pinnedDense: true },
      { name: 'unused', role: 'attn_qkv', in: 1024, out: 3072, count: 0, rowsPerSample: 128 },
    ],
  };
  const plan = planModel(inv, { budget: 0.4 });
  assert.equal(byName(plan, 'big').sparsify, true);
  assert.match(byName(plan, 'small').reason, /too small/);
  assert.match(byName(plan, 'pinned').reason, /pinned with `# pixelfly: dense`/);
  assert.match(byName(plan, 'unused').reason, /Not built/);
  assert.equal(byName(plan, 'unused').denseFlops, 0);
});

test('every decision is explained in one sentence', () => {
  for (const plan of [planModel(vit, { budget: 0.5 }), planModel(gpt2, { speedup: 1.5 })]) {
    for (const l of plan.layers) {
      assert.match(l.reason, /^[A-Z][^]*\.$/, l.reason);
      assert.equal(l.reason.split(/\.\s+[A-Z]/).length, 1, `one sentence: ${l.reason}`);
    }
  }
});

function randomInventory(seed: number, n: number): Inventory {
  const rand = mulberry32(seed);
  const dims = [64, 128, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096];
  const roles = ['attn_qkv', 'attn_out', 'mlp_fc1', 'mlp_fc2', 'token_mix', 'head', 'embedding', 'other'] as const;
  const layers: InventoryLayer[] = [];
  for (let i = 0; i < n; i++) {
    layers.push({
      name: `layer${i}`,
      role: roles[Math.floor(rand() * roles.length)],
      in: dims[Math.floor(rand() * dims.length)],
      out: dims[Math.floor(rand() * dims.length)],
      count: 1 + Math.floor(rand() * 24),
      rowsPerSample: 1 + Math.floor(rand() * 1024),
      pinnedDense: rand() < 0.05,
    });
  }
  return { layers };
}

test('monotone: a tighter budget or a higher speedup target never gives a denser plan', () => {
  for (const inv of [vit, gpt2, randomInventory(1, 60), randomInventory(2, 200)]) {
    for (const [targets, make] of [
      [[1, 0.9, 0.7, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05], (x: number) => ({ budget: x })],
      [[1, 1.2, 1.5, 2, 2.5, 3, 5, 10], (x: number) => ({ speedup: x })],
    ] as const) {
      let previous: Plan | undefined;
      for (const x of targets) {
        const plan = planModel(inv, make(x));
        if (previous) {
          assert.ok(plan.planFlops <= previous.planFlops * (1 + 1e-12), `model FLOPs grew at ${x}`);
          plan.layers.forEach((l, i) => {
            assert.ok(l.planFlops <= previous!.layers[i].planFlops * (1 + 1e-12), `${l.name} got denser at ${x}`);
          });
        }
        previous = plan;
      }
    }
  }
});

test('deterministic: the same inventory and target give the same plan', () => {
  const inv = randomInventory(3, 300);
  assert.deepEqual(planModel(inv, { budget: 0.35 }), planModel(inv, { budget: 0.35 }));
});

test('budget 1 keeps everything dense; an impossible budget gives the sparsest plan and says so', () => {
  const dense = planModel(vit, { budget: 1 });
  assert.ok(dense.layers.every((l) => !l.sparsify));
  assert.equal(dense.flopFraction, 1);
  const impossible = planModel(gpt2, { budget: 0.01 });
  assert.equal(impossible.targetMet, false);
  // GPT-2 small's LM head alone is about a third of its matmul FLOPs and stays dense.
  assert.match(impossible.summary, /cannot be met.*Layers kept dense alone take 3\d% of dense FLOPs \(lm_head 3\d%\)/);
  const sparsest = planModel(gpt2, { budget: 0.02 });
  assert.deepEqual(impossible.layers, sparsest.layers);
});

test('speedup targets are met when reachable', () => {
  const plan = planModel(vit, { speedup: 1.5 });
  assert.ok(plan.targetMet);
  assert.ok(plan.estSpeedup >= 1.5);
});

test('bad targets and options are refused, naming the parameter', () => {
  const param = (fn: () => unknown, p: string) =>
    assert.throws(fn, (e: unknown) => e instanceof PixelflyConfigError && e.param === p);
  param(() => planModel(vit, { budget: 0 }), 'budget');
  param(() => planModel(vit, { budget: 1.5 }), 'budget');
  param(() => planModel(vit, { speedup: 0.5 }), 'speedup');
  param(() => planModel(vit, { budget: 0.5 }, { blockSizes: [24] }), 'block');
});

test('inventories from untrusted JSON are validated', () => {
  assert.throws(() => parseInventory({}), /"layers" array/);
  assert.throws(() => parseInventory({ layers: [{ name: 'a', role: 'mlp', in: 1, out: 1, count: 1, rowsPerSample: 1 }] }), /layers\[0\] \(a\) role must be one of/);
  assert.throws(() => parseInventory({ layers: [{ name: 'a', role: 'head', in: 0, out: 1, count: 1, rowsPerSample: 1 }] }), /in must be a positive integer/);
  const l = { name: 'a', role: 'head', in: 1, out: 1, count: 1, rowsPerSample: 1 };
  assert.throws(() => parseInventory({ layers: [l, l] }), /name is used twice/);
});

test('an embedding counts its table and nothing else', () => {
  const plan = planModel(gpt2, { budget: 0.5 });
  const wte = byName(plan, 'transformer.wte');
  assert.equal(wte.denseParams, 50257 * 768, 'nn.Embedding has no bias');
  assert.equal(wte.denseFlops, 0);
});

test('proposed butterflies keep at least one block per support cell', () => {
  for (const inv of [vit, gpt2, randomInventory(4, 100)]) {
    for (const l of planModel(inv, { budget: 0.3 }).layers.filter((x) => x.sparsify)) {
      const { block, butterflySize } = l.config!;
      assert.ok(butterflySize * block <= Math.min(l.in, l.out) + block - 1, `${l.name}: S=${butterflySize} at block ${block} for ${l.out}×${l.in}`);
    }
  }
});

test('smaller blocks reach sparser plans', () => {
  const coarse = planModel(gpt2, { budget: 0.4 }, { blockSizes: [32] });
  const fine = planModel(gpt2, { budget: 0.4 }, { blockSizes: [16, 32] });
  assert.equal(coarse.targetMet, false);
  assert.ok(fine.planFlops < coarse.planFlops);
});

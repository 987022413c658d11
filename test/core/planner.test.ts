// The planner: paper rules, targets met, monotone in the target, deterministic, explained.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { calibrationShapes, planModel, type Plan } from '../../core/planner';
import { layerDenseCost, parseInventory, type Inventory, type InventoryLayer } from '../../core/inventory';
import { adviseAttention, attentionCoreFlops, attentionLayout, suggestedAttention, SPARSE_ATTENTION_EFFICIENCY } from '../../core/attention';
import { flatBlockButterflyLayout } from '../../core/layout';
import { PixelflyConfigError } from '../../core/errors';
import { mulberry32 } from '../../core/random';

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

test('a layer that already is a Pixelfly layer keeps its config and counts as sparse in the totals', () => {
  const config = { block: 32, butterflySize: 8, nFactors: 2, rank: 16 };
  const inv: Inventory = {
    layers: [
      { name: 'fixed', role: 'mlp_fc1', in: 1024, out: 4096, count: 4, rowsPerSample: 128, pixelfly: config },
      { name: 'free', role: 'mlp_fc2', in: 4096, out: 1024, count: 4, rowsPerSample: 128 },
    ],
  };
  const plan = planModel(inv, { budget: 0.9 });
  const fixed = byName(plan, 'fixed');
  assert.equal(fixed.sparsify, true);
  assert.deepEqual(fixed.config, { ...config, globalSize: 0, shuffle: false });
  assert.equal(fixed.density, flatBlockButterflyLayout(4096, 1024, fixed.config!).density);
  assert.match(fixed.reason, /^Already a Pixelfly layer: a flat butterfly \(size 8, 2 factors\) on 32×32 blocks/);
  // Its FLOPs count at its own config, so a loose budget needs nothing else sparsified.
  assert.ok(fixed.planFlops < fixed.denseFlops);
  assert.equal(byName(plan, 'free').sparsify, false);
  assert.ok(Math.abs(plan.planFlops - fixed.planFlops - byName(plan, 'free').denseFlops) < 1e-6 * plan.planFlops);
  assert.match(plan.summary, /^1 of 2 layers sparse/);
  // Whatever the target, the config stays (even a denser level would not move it).
  assert.deepEqual(byName(planModel(inv, { budget: 0.2 }), 'fixed').config, fixed.config);
  // A config the layout cannot honour names the layer.
  assert.throws(() => planModel({ layers: [{ ...inv.layers[0], pixelfly: { ...config, butterflySize: 7 } }] }, { budget: 0.5 }), /butterfly_size.*\(layer fixed\)/);
});

test('attention cores and convolutions count in the totals, stay dense and say why; layers the source keeps dense say its reason', () => {
  const T = 1024;
  const d = 768;
  const inv: Inventory = {
    layers: [
      { name: 'qkv', role: 'attn_qkv', in: d, out: 3 * d, count: 12, rowsPerSample: T },
      { name: 'core', role: 'attn_core', in: d, out: T, count: 12, rowsPerSample: T, causal: true },
      { name: 'conv', role: 'conv', in: 64 * 9, out: 64, count: 3, rowsPerSample: 3136, bias: false },
      { name: 'mha.in_proj', role: 'attn_qkv', in: d, out: 3 * d, count: 12, rowsPerSample: T, keptDense: 'nn.MultiheadAttention keeps in_proj as a parameter' },
    ],
  };
  const plan = planModel(inv, { budget: 0.5 });
  const core = byName(plan, 'core');
  // QKᵀ and scores·V: 2·T·T·d multiply-adds each, forward; causal halves it; backward twice the forward.
  assert.equal(core.denseFlops, 3 * 0.5 * 4 * T * T * d * 12);
  assert.equal(core.denseParams, 0);
  assert.equal(core.sparsify, false);
  assert.equal(core.planFlops, core.denseFlops, 'attention advice does not change the plan');
  assert.match(core.reason, /^Pixelfly attention pays here: at 1024 tokens/);
  const conv = byName(plan, 'conv');
  assert.equal(conv.denseFlops, 3 * 2 * 3136 * 64 * 9 * 64 * 3, 'no bias adds');
  assert.match(conv.reason, /^Kept dense: a convolution with a spatial kernel/);
  assert.equal(byName(plan, 'mha.in_proj').sparsify, false);
  assert.equal(byName(plan, 'mha.in_proj').reason, 'Kept dense: nn.MultiheadAttention keeps in_proj as a parameter.');
  assert.equal(plan.denseFlops, plan.layers.reduce((s, l) => s + l.denseFlops, 0));
  assert.match(plan.summary, /^1 of 3 layers sparse/, 'the attention core is no layer');
});

test("an attention core's FLOPs are core/attention.ts's (the engine's Pixelfly attention counts with it)", () => {
  for (const [T, d, causal] of [[1024, 768, true], [197, 384, false], [64, 256, true]] as const) {
    const ours = layerDenseCost({ role: 'attn_core', in: d, out: T, causal }, T).flops;
    assert.deepEqual(ours, attentionCoreFlops(T, d, causal), `T ${T}, d ${d}, causal ${causal}`);
  }
});

test("a head's reason matches its share of the FLOPs", () => {
  const head = (vocab: number): string =>
    byName(planModel({ layers: [{ name: 'fc', role: 'mlp_fc1', in: 768, out: 3072, count: 12, rowsPerSample: 1024 }, { name: 'head', role: 'head', in: 768, out: vocab, count: 1, rowsPerSample: 1024 }] }, { budget: 0.5 }), 'head').reason;
  assert.match(head(1000), /^Kept dense: classifier and LM heads stay dense, as in the paper: they are a small share of FLOPs \(2\.\d%\) and sensitive to sparsity\.$/);
  const big = head(50257);
  assert.doesNotMatch(big, /small share/);
  assert.match(big, /^Kept dense: classifier and LM heads stay dense, as in the paper, because the output layer is sensitive to sparsity, although at 5\d% of this model's FLOPs it limits the speedup\.$/);
});

test('parseInventory checks the optional fields', () => {
  const base = { name: 'l', role: 'attn_core', in: 64, out: 128, count: 1, rowsPerSample: 128 };
  assert.equal(parseInventory({ layers: [{ ...base, causal: true, bias: false, keptDense: 'why' }] }).layers[0].causal, true);
  assert.throws(() => parseInventory({ layers: [{ ...base, causal: 'yes' }] }), /layers\[0\] \(l\) causal must be a boolean/);
  assert.throws(() => parseInventory({ layers: [{ ...base, keptDense: '' }] }), /keptDense must be a non-empty string/);
  assert.throws(() => parseInventory({ layers: [{ ...base, pixelfly: { block: 32, butterflySize: 4, nFactors: 2, rank: -1 } }] }), /pixelfly\.rank must be an integer ≥ 0/);
});

/** A GPT block's layers at context T and width d (12 blocks), with the attention core. */
function gptBlocks(T: number, d: number, mlp = 4 * d): InventoryLayer[] {
  return [
    { name: 'qkv', role: 'attn_qkv', in: d, out: 3 * d, count: 12, rowsPerSample: T },
    { name: 'out', role: 'attn_out', in: d, out: d, count: 12, rowsPerSample: T },
    { name: 'core', role: 'attn_core', in: d, out: T, count: 12, rowsPerSample: T, causal: true },
    { name: 'fc1', role: 'mlp_fc1', in: d, out: mlp, count: 12, rowsPerSample: T },
    { name: 'fc2', role: 'mlp_fc2', in: mlp, out: d, count: 12, rowsPerSample: T },
  ];
}

test('Pixelfly attention is suggested where it pays (long contexts), with the layout and its estimates', () => {
  const plan = planModel({ layers: gptBlocks(4096, 768) }, { budget: 0.5 });
  const core = byName(plan, 'core');
  assert.equal(core.sparsify, false, 'an attention core has no weights: advice, not a sparsified layer');
  assert.ok(core.attention, core.reason);
  assert.deepEqual(core.attention.spec, { kind: 'pixelfly', block: 64, butterflySize: 64, nFactors: 6 });
  const { density } = attentionLayout(4096, core.attention.spec, true);
  assert.equal(core.attention.density, density);
  assert.ok(density < 0.2, `density ${density}`);
  assert.equal(core.attention.coreSpeedup, SPARSE_ATTENTION_EFFICIENCY / density);
  assert.ok(core.attention.stepSpeedup > 1.05 && core.attention.stepSpeedup < core.attention.coreSpeedup);
  assert.match(core.reason, /^Pixelfly attention pays here: at 4096 tokens a flat butterfly \(size 64, 6 factors\) on 64×64 score blocks keeps \d+(\.\d)?% of the score blocks of the causal triangle, an est\. \d+\.\d× faster attention core, which is \d+% of the step: ≈\d\.\d\d× overall\./);
  assert.match(core.reason, /"attention": \{"kind": "pixelfly", "block": 64, "butterflySize": 64, "nFactors": 6\}/);
  assert.match(core.reason, /pixelfly_torch\.PixelflyAttention\(head_dim, 4096, causal=True\)/);
  assert.equal(plan.denseFlops, plan.layers.reduce((a, l) => a + l.denseFlops, 0));
});

test('attention stays dense where Pixelfly attention does not pay, saying why', () => {
  // Short context: the butterfly keeps every block.
  const short = byName(planModel({ layers: gptBlocks(256, 768) }, { budget: 0.5 }), 'core');
  assert.equal(short.attention, undefined);
  assert.match(short.reason, /^Kept dense: at 256 tokens a flat butterfly \(size 4, 2 factors\) on 64×64 score blocks keeps 80% of the score blocks, too many for block-sparse attention to beat dense/);
  // A sparse layout, but the core is a small share of the step (a very wide MLP).
  const small = byName(planModel({ layers: gptBlocks(2048, 256, 65536) }, { budget: 0.5 }), 'core');
  assert.equal(small.attention, undefined);
  assert.match(small.reason, /^Kept dense: Pixelfly attention \(.*\) would run this core an est\. \d+\.\d× faster, but the core is only \d+(\.\d)?% of the step: ≈1\.0\d× overall/);
  // Windowed attention: keys per query below the context.
  const windowed = byName(planModel({ layers: [{ name: 'core', role: 'attn_core', in: 512, out: 256, count: 4, rowsPerSample: 4096 }] }, { budget: 0.5 }), 'core');
  assert.equal(windowed.attention, undefined);
  assert.match(windowed.reason, /^Kept dense: each query sees 256 of 4096 keys \(windowed or cross attention\)/);
});

test('the suggested attention layout is a valid one at any context, and advice is monotone in the share', () => {
  for (let T = 1; T <= 9000; T += 97) {
    const spec = suggestedAttention(T);
    assert.doesNotThrow(() => attentionLayout(T, spec, true), `T ${T}: ${JSON.stringify(spec)}`);
  }
  let last = 1;
  for (const share of [0, 0.1, 0.3, 0.6, 0.9, 1]) {
    const a = adviseAttention(8192, 8192, true, share);
    assert.ok(a.stepSpeedup >= last, `share ${share}`);
    last = a.stepSpeedup;
  }
  assert.ok(Math.abs(adviseAttention(8192, 8192, true, 1).stepSpeedup - adviseAttention(8192, 8192, true, 1).coreSpeedup) < 1e-12);
});

test('calibrationShapes covers what the planner weighs: each product shape once, the configs it may choose at the layers it may sparsify', () => {
  for (const inventory of [vit, gpt2]) {
    const shapes = calibrationShapes(inventory, 8);
    const keys = shapes.map((s) => `${s.in}x${s.out}`);
    assert.equal(new Set(keys).size, keys.length, 'no shape measured twice');
    for (const l of inventory.layers) {
      const measured = shapes.find((s) => s.in === l.in && s.out === l.out);
      if (l.role === 'attn_core' || l.role === 'embedding') continue;
      assert.ok(measured, `${l.name} ${l.in}x${l.out} has its dense rate measured`);
      assert.ok(measured.rows >= 1 && measured.rows * Math.max(l.in, l.out) <= 16 << 20, `${l.name}: rows ${measured.rows}`);
    }
    for (const s of shapes) {
      assert.ok(s.configs.length <= 64);
      for (const c of s.configs) assert.ok(flatBlockButterflyLayout(s.out, s.in, c).density <= 0.5, `${s.name} ${JSON.stringify(c)}`);
    }
    // Heads stay dense whatever is measured: nothing to time beyond their GEMM rate.
    for (const l of inventory.layers.filter((x) => x.role === 'head')) assert.deepEqual(shapes.find((s) => s.name === l.name)?.configs ?? [], []);
    // Every layer the planner sparsifies at these budgets is costed from measured points: its block
    // and density (the profile's efficiency curve) and its rank, at its own shape.
    for (const budget of [0.1, 0.25, 0.5]) {
      for (const l of planModel(inventory, { budget }).layers.filter((x) => x.sparsify && (x.density ?? 1) <= 0.5)) {
        const s = shapes.find((x) => x.in === l.in && x.out === l.out)!;
        const what = `${l.name} at budget ${budget}: ${JSON.stringify(l.config)}`;
        assert.ok(s.configs.some((c) => c.block === l.config!.block && Math.abs(flatBlockButterflyLayout(s.out, s.in, c).density - l.density!) < 1e-9), `${what}: layout not measured`);
        assert.ok(s.configs.some((c) => c.rank === l.config!.rank), `${what}: rank not measured`);
      }
    }
  }
});

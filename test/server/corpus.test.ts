// The corpus: model definitions written in the styles of widely used codebases, with the
// inventories a reader would write down by hand (sizes as the matmul sees them, instance counts,
// roles). Each expectation was derived from the model code, not from the analyser's output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parsePinValue } from '../../server/analysis/pragmas';
import type { Value } from '../../server/analysis/values';
import { fixture, inventory, repoRoot, row, run } from './helpers';

const pins = (o: Record<string, string>): Map<string, Value> => new Map(Object.entries(o).map(([k, v]) => [k, parsePinValue(v)]));

test('nanoGPT: dataclass config defaults, fused c_attn, ModuleDict of a ModuleList comprehension', async () => {
  const a = await run({ file: fixture('nanogpt', 'model.py') });
  assert.equal(a.model?.name, 'GPT');
  assert.deepEqual(inventory(a), [
    ['transformer.h.*.attn.c_attn', 'Linear', 768, 2304, 12, 'attn_qkv'],
    // QKᵀ and scores·V over 12 heads of 64 (d = 768) and 1024 keys, causal (is_causal=True, the tril mask).
    ['transformer.h.*.attn.(core)', 'attention', 768, 1024, 12, 'attn_core'],
    ['transformer.h.*.attn.c_proj', 'Linear', 768, 768, 12, 'attn_out'],
    ['transformer.h.*.mlp.c_fc', 'Linear', 768, 3072, 12, 'mlp_fc1'],
    ['transformer.h.*.mlp.c_proj', 'Linear', 3072, 768, 12, 'mlp_fc2'],
    ['transformer.wte', 'Embedding', 50304, 768, 1, 'embedding'],
    ['transformer.wpe', 'Embedding', 1024, 768, 1, 'embedding'],
    ['lm_head', 'Linear', 768, 50304, 1, 'head'],
  ]);
  assert.equal(a.tokensPerSample, 1024, 'block_size positions from the wpe table');
  assert.equal(row(a, 'transformer.h.*.attn.c_attn').line, 29);
  const share = a.layers.reduce((s, l) => s + (l.flops_share ?? 0), 0);
  assert.ok(Math.abs(share - 1) < 1e-9, `FLOP shares sum to 1, got ${share}`);
  // c_fc and c_proj have the same matmul FLOPs (they differ only by the bias adds); qkv is 3/4 of either.
  const fc = row(a, 'transformer.h.*.mlp.c_fc').flops_share!;
  assert.ok(Math.abs(fc / row(a, 'transformer.h.*.mlp.c_proj').flops_share! - 1) < 1e-3);
  assert.ok(Math.abs(row(a, 'transformer.h.*.attn.c_attn').flops_share! / fc - 0.75) < 1e-3);
  // The causal core: half of 4·T²·d forward = 2·1024·768 per token, against c_fc's 2·768·3072 (+ bias): 1/3.
  const core = row(a, 'transformer.h.*.attn.(core)');
  assert.equal(core.causal, true);
  assert.ok(Math.abs(core.flops_share! / fc - (1024 * 768) / (768 * 3072 + 3072)) < 1e-3, `core/fc ${core.flops_share! / fc}`);
  // At 1024 tokens the core is 7% of the step: Pixelfly attention would not pay, and the reason says so.
  assert.match(core.decision?.reason ?? '', /^Kept dense: Pixelfly attention \(.*\) would run this core an est\. 2\.0× faster, but the core is only 7\.1% of the step/);
  // The LM head is 27% of the FLOPs here: its reason must not call it a small share.
  assert.ok(row(a, 'lm_head').flops_share! > 0.25);
  assert.doesNotMatch(row(a, 'lm_head').decision?.reason ?? '', /small share/);
  assert.match(row(a, 'lm_head').decision?.reason ?? '', /sensitive to sparsity, although at 2\d% of this model's FLOPs it limits the speedup/);
  assert.equal(row(a, 'lm_head').decision?.sparsify, false);
  assert.equal(row(a, 'transformer.wte').decision?.sparsify, false);
  assert.ok(a.layers.some((l) => l.decision?.sparsify), 'a 50% FLOP budget sparsifies some block layers');
});

test('nanoGPT: --set pins override the config defaults', async () => {
  const a = await run({ file: fixture('nanogpt', 'model.py'), pins: pins({ n_layer: '24', n_embd: '1024' }) });
  assert.deepEqual(inventory(a)[0], ['transformer.h.*.attn.c_attn', 'Linear', 1024, 3072, 24, 'attn_qkv']);
});

test('minGPT: get_default_config, model_type dict dispatch via merge_from_dict, pins in a comment', async () => {
  const a = await run({ file: fixture('mingpt', 'mingpt', 'model.py') });
  // The file pins model_type=gpt-mini (n_layer 6, n_embd 192), vocab_size 50257, block_size 128.
  assert.deepEqual(inventory(a), [
    ['transformer.h.*.attn.c_attn', 'Linear', 192, 576, 6, 'attn_qkv'],
    ['transformer.h.*.attn.(core)', 'attention', 192, 128, 6, 'attn_core'],
    ['transformer.h.*.attn.c_proj', 'Linear', 192, 192, 6, 'attn_out'],
    ['transformer.h.*.mlp.c_fc', 'Linear', 192, 768, 6, 'mlp_fc1'],
    ['transformer.h.*.mlp.c_proj', 'Linear', 768, 192, 6, 'mlp_fc2'],
    ['transformer.wte', 'Embedding', 50257, 192, 1, 'embedding'],
    ['transformer.wpe', 'Embedding', 128, 192, 1, 'embedding'],
    ['lm_head', 'Linear', 192, 50257, 1, 'head'],
  ]);
  assert.equal(a.tokensPerSample, 128);
  // Layers this small stay dense (the planner's minimum width), whatever the budget.
  assert.ok(a.layers.every((l) => l.decision && !l.decision.sparsify));
  const big = await run({ file: fixture('mingpt', 'mingpt', 'model.py'), pins: pins({ model_type: 'gpt2-medium' }) });
  assert.deepEqual(inventory(big)[0], ['transformer.h.*.attn.c_attn', 'Linear', 1024, 3072, 24, 'attn_qkv']);
});

test('timm ViT: the class defaults are ViT-B/16 (PatchEmbed and Mlp from timm.layers, Sequential(*[...]))', async () => {
  const a = await run({ file: fixture('timm', 'vision_transformer.py') });
  assert.equal(a.model?.name, 'VisionTransformer');
  assert.deepEqual(inventory(a), [
    ['blocks.*.attn.qkv', 'Linear', 768, 2304, 12, 'attn_qkv'],
    ['blocks.*.attn.(core)', 'attention', 768, 197, 12, 'attn_core'],
    ['blocks.*.attn.proj', 'Linear', 768, 768, 12, 'attn_out'],
    ['blocks.*.mlp.fc1', 'Linear', 768, 3072, 12, 'mlp_fc1'],
    ['blocks.*.mlp.fc2', 'Linear', 3072, 768, 12, 'mlp_fc2'],
    ['patch_embed.proj', 'Conv2d', 3 * 16 * 16, 768, 1, 'patch_embed'],
    ['head', 'Linear', 768, 1000, 1, 'head'],
  ]);
  // 14x14 patches plus the class token.
  assert.equal(a.tokensPerSample, 197);
  assert.equal(row(a, 'head').rowsPerSample, 1, 'a classifier head sees the pooled token');
  assert.equal(row(a, 'patch_embed.proj').rowsPerSample, 196, 'the patch embedding runs before the class token joins');
  assert.equal(row(a, 'blocks.*.attn.(core)').causal, false, 'a ViT attends both ways');
  // The Mlp is built inside the library: both of its layers are reported at the user's `mlp_layer(` call.
  assert.equal(row(a, 'blocks.*.mlp.fc1').line, 103);
  assert.equal(row(a, 'blocks.*.mlp.fc2').line, 103);
});

test('timm ViT: registry functions forward **kwargs, and --set reaches through them', async () => {
  const large = await run({ file: fixture('timm', 'vision_transformer.py'), model: 'vit_large_patch32_384' });
  assert.equal(large.model?.kind, 'function');
  assert.deepEqual(inventory(large).slice(0, 1), [['blocks.*.attn.qkv', 'Linear', 1024, 3072, 24, 'attn_qkv']]);
  assert.deepEqual(row(large, 'patch_embed.proj').in, 3 * 32 * 32);
  assert.equal(large.tokensPerSample, 12 * 12 + 1);
  const shallow = await run({ file: fixture('timm', 'vision_transformer.py'), model: 'vit_tiny_patch16_224', pins: pins({ depth: '6' }) });
  assert.deepEqual(inventory(shallow).slice(0, 1), [['blocks.*.attn.qkv', 'Linear', 192, 576, 6, 'attn_qkv']]);
});

test('timm Mixer: token-mixing Mlp over the patch axis, mlp_ratio tuple, GluMlp variant', async () => {
  const a = await run({ file: fixture('timm', 'mlp_mixer.py'), model: 'mixer_b16_224' });
  assert.deepEqual(inventory(a), [
    ['blocks.*.mlp_tokens.fc1', 'Linear', 196, 384, 12, 'token_mix'],
    ['blocks.*.mlp_tokens.fc2', 'Linear', 384, 196, 12, 'token_mix'],
    ['blocks.*.mlp_channels.fc1', 'Linear', 768, 3072, 12, 'mlp_fc1'],
    ['blocks.*.mlp_channels.fc2', 'Linear', 3072, 768, 12, 'mlp_fc2'],
    ['stem.proj', 'Conv2d', 768, 768, 1, 'patch_embed'],
    ['head', 'Linear', 768, 1000, 1, 'head'],
  ]);
  assert.equal(row(a, 'blocks.*.mlp_tokens.fc1').rowsPerSample, 768, 'token mixing multiplies one row per channel');
  assert.equal(a.tokensPerSample, 196);
  const glu = await run({ file: fixture('timm', 'mlp_mixer.py'), model: 'gmixer_24_224' });
  // GluMlp halves the hidden width before fc2: tokens 384 -> 192, channels 1536 -> 768.
  assert.deepEqual(inventory(glu).slice(0, 4), [
    ['blocks.*.mlp_tokens.fc1', 'Linear', 196, 384, 24, 'token_mix'],
    ['blocks.*.mlp_tokens.fc2', 'Linear', 192, 196, 24, 'token_mix'],
    ['blocks.*.mlp_channels.fc1', 'Linear', 384, 1536, 24, 'mlp_fc1'],
    ['blocks.*.mlp_channels.fc2', 'Linear', 768, 384, 24, 'mlp_fc2'],
  ]);
});

test("timm Mixer and ViT through timm's own layers: to_2tuple is tuple(itertools.repeat(x, 2)), so the patch grid and the token count resolve", async () => {
  const a = await run({
    file: fixture('timm', 'mlp_mixer.py'), model: 'MlpMixer', extraPaths: [join(repoRoot, 'test', 'fixtures', 'python-site')],
    pins: pins({ img_size: '28', in_chans: '1', patch_size: '4', num_classes: '10', embed_dim: '512', num_blocks: '4' }),
  });
  assert.deepEqual(a.unresolved, []);
  // 28/4 = 7 patches a side: 49 tokens, the token-mixing Mlp's width (mlp_ratio 0.5: 256 hidden).
  assert.equal(a.tokensPerSample, 49);
  assert.deepEqual(inventory(a).slice(0, 2), [
    ['blocks.*.mlp_tokens.fc1', 'Linear', 49, 256, 4, 'token_mix'],
    ['blocks.*.mlp_tokens.fc2', 'Linear', 256, 49, 4, 'token_mix'],
  ]);
  // The same PatchEmbed gives ViT-B/16 its 14×14 patches and the class token (not an assumed 1024).
  const vit = await run({ file: fixture('timm', 'vision_transformer.py'), extraPaths: [join(repoRoot, 'test', 'fixtures', 'python-site')] });
  assert.equal(vit.tokensPerSample, 197);
});

test('Hugging Face GPT-2: Conv1D(nf, nx) is out-first, config class in another file, attribute_map, unbuilt cross-attention', async () => {
  const a = await run({ file: fixture('hf_gpt2', 'modeling_gpt2.py') });
  assert.equal(a.model?.name, 'GPT2LMHeadModel');
  assert.deepEqual(inventory(a), [
    ['GPT2Attention.c_attn', 'Conv1D', 'self.embed_dim', '2 * self.embed_dim', 0, 'attn_qkv'],
    ['GPT2Attention.q_attn', 'Conv1D', 'self.embed_dim', 'self.embed_dim', 0, 'attn_qkv'],
    ['transformer.h.*.attn.c_attn', 'Conv1D', 768, 2304, 12, 'attn_qkv'],
    ['transformer.h.*.attn.(core)', 'attention', 768, 1024, 12, 'attn_core'],
    ['transformer.h.*.attn.c_proj', 'Conv1D', 768, 768, 12, 'attn_out'],
    ['transformer.h.*.mlp.c_fc', 'Conv1D', 768, 3072, 12, 'mlp_fc1'],
    ['transformer.h.*.mlp.c_proj', 'Conv1D', 3072, 768, 12, 'mlp_fc2'],
    ['transformer.wte', 'Embedding', 50257, 768, 1, 'embedding'],
    ['transformer.wpe', 'Embedding', 1024, 768, 1, 'embedding'],
    ['GPT2ForSequenceClassification.score', 'Linear', 'config.n_embd', 'self.num_labels', 0, 'head'],
    ['lm_head', 'Linear', 768, 50257, 1, 'head'],
  ]);
  const cls = await run({ file: fixture('hf_gpt2', 'modeling_gpt2.py'), model: 'GPT2ForSequenceClassification', pins: pins({ n_inner: '2048' }) });
  assert.deepEqual(row(cls, 'score').out, 2, 'PretrainedConfig num_labels default');
  assert.deepEqual(row(cls, 'transformer.h.*.mlp.c_fc').out, 2048, 'n_inner pinned');
});

test('lucidrains ViT: required keyword-only sizes stay symbolic until pinned', async () => {
  const open = await run({ file: fixture('lucidrains', 'vit.py') });
  const qkv = row(open, 'transformer.layers.*.0.to_qkv');
  assert.equal(qkv.in, 'dim');
  assert.equal(qkv.out, '(64 * heads) * 3');
  assert.equal(qkv.count, 'depth');
  assert.equal(qkv.decision, null);
  assert.match(qkv.note ?? '', /pin/);
  assert.deepEqual(new Set(open.unresolved), new Set(['dim', 'heads', 'depth', 'mlp_dim', 'patch_size', 'num_classes']));

  const a = await run({
    file: fixture('lucidrains', 'vit.py'),
    pins: pins({ image_size: '224', patch_size: '16', num_classes: '1000', dim: '768', depth: '12', heads: '12', mlp_dim: '3072' }),
  });
  assert.deepEqual(inventory(a), [
    ['transformer.layers.*.1.net.1', 'Linear', 768, 3072, 12, 'mlp_fc1'],
    ['transformer.layers.*.1.net.4', 'Linear', 3072, 768, 12, 'mlp_fc2'],
    ['transformer.layers.*.0.to_qkv', 'Linear', 768, 2304, 12, 'attn_qkv'],
    // 12 heads of dim_head 64: inner_dim 768 (to_out's input), 197 keys.
    ['transformer.layers.*.0.(core)', 'attention', 768, 197, 12, 'attn_core'],
    ['transformer.layers.*.0.to_out.0', 'Linear', 768, 768, 12, 'attn_out'],
    ['to_patch_embedding.2', 'Linear', 768, 768, 1, 'patch_embed'],
    ['mlp_head', 'Linear', 768, 1000, 1, 'head'],
  ]);
  assert.equal(a.tokensPerSample, 14 * 14 + 1, 'the local num_patches plus the class token');
  assert.equal(row(a, 'mlp_head').rowsPerSample, 1, 'forward pools (x.mean(dim = 1) or x[:, 0]) before the head');
  assert.equal(row(a, 'to_patch_embedding.2').rowsPerSample, 196, 'patches, before the class token');
});

test('lucidrains MLP-Mixer: a factory function, partial(nn.Conv1d, kernel_size=1) token mixing, a lambda helper', async () => {
  const a = await run({
    file: fixture('lucidrains', 'mlp_mixer.py'),
    pins: pins({ image_size: '224', channels: '3', patch_size: '16', dim: '512', depth: '12', num_classes: '1000' }),
  });
  assert.equal(a.model?.name, 'MLPMixer');
  assert.deepEqual(inventory(a), [
    ['*.0.fn.0', 'Conv1d', 196, 784, 12, 'token_mix'],
    ['*.1.fn.0', 'Linear', 512, 256, 12, 'mlp_fc1'],
    ['*.0.fn.3', 'Conv1d', 784, 196, 12, 'token_mix'],
    ['*.1.fn.3', 'Linear', 256, 512, 12, 'mlp_fc2'],
    ['1', 'Linear', 768, 512, 1, 'patch_embed'],
    // nn.Sequential numbers its children: Rearrange, Linear, 12 blocks, LayerNorm, Reduce, Linear.
    ['16', 'Linear', 512, 1000, 1, 'head'],
  ]);
  assert.equal(a.tokensPerSample, 196);
});

test('custom: constants, dict dispatch, nn.MultiheadAttention, workspace imports, partial, nn.Linear subclass, dense pragma', async () => {
  const withLib = await run({ file: fixture('custom', 'model.py'), extraPaths: [fixture('site')] });
  assert.deepEqual(
    withLib.layers.map((l) => [basename(l.file), l.line, l.name, l.in, l.out, l.count, l.role]),
    [
      ['model.py', 17, 'layers.*.attn.qkv', 512, 1536, 3, 'attn_qkv'],
      ['model.py', 17, 'gated.*.attn.qkv', 512, 1536, 2, 'attn_qkv'],
      ['model.py', 17, 'layers.*.attn.(core)', 512, 1024, 3, 'attn_core'],
      ['model.py', 17, 'gated.*.attn.(core)', 512, 1024, 2, 'attn_core'],
      ['model.py', 18, 'layers.*.attn.out', 512, 512, 3, 'attn_out'],
      ['model.py', 18, 'gated.*.attn.out', 512, 512, 2, 'attn_out'],
      ['model.py', 31, 'layers.*.attn.mha.in_proj', 512, 1536, 3, 'attn_qkv'],
      ['model.py', 31, 'layers.*.attn.mha.out_proj', 512, 512, 3, 'attn_out'],
      ['model.py', 31, 'layers.*.attn.mha.(core)', 512, 1024, 3, 'attn_core'],
      // GatedMlp lives in a library (--path): reported at the user's call; hidden = 8 * 512 // 3.
      ['model.py', 45, 'gated.*.mlp.w_gate', 512, 1365, 2, 'mlp_fc1'],
      ['model.py', 45, 'gated.*.mlp.w_up', 512, 1365, 2, 'mlp_fc1'],
      ['model.py', 45, 'gated.*.mlp.w_down', 1365, 512, 2, 'mlp_fc2'],
      ['model.py', 57, 'embed', 32000, 512, 1, 'embedding'],
      ['model.py', 62, 'proj', 512, 512, 1, 'other'],
      ['model.py', 63, 'adapter', 512, 512, 1, 'other'],
      ['model.py', 64, 'lm_head', 512, 32000, 1, 'head'],
      // Mlp is workspace code: reported in blocks.py where its Linears are written.
      ['blocks.py', 14, 'layers.*.mlp.fc1', 512, 2048, 6, 'mlp_fc1'],
      ['blocks.py', 16, 'layers.*.mlp.fc2', 2048, 512, 6, 'mlp_fc2'],
    ],
  );
  const adapter = row(withLib, 'adapter');
  assert.equal(adapter.pinnedDense, true);
  assert.equal(adapter.decision?.sparsify, false);
  assert.match(adapter.decision?.reason ?? '', /pinned/);
  assert.equal(row(withLib, 'proj').decision?.sparsify, true, 'the same shape without the pragma is sparsified');
  // nn.MultiheadAttention's projections are planned like Linears (pixelfly_torch replaces the module by a
  // PixelflyMultiheadAttention), unless it uses what that does not support: then dense, saying why.
  assert.equal(row(withLib, 'layers.*.attn.mha.in_proj').decision?.sparsify, true);
  const kv = readFileSync(fixture('custom', 'model.py'), 'utf8').replace('nn.MultiheadAttention(dim, heads, batch_first=True)', 'nn.MultiheadAttention(dim, heads, batch_first=True, add_bias_kv=True)');
  const unsupported = await run({ file: fixture('custom', 'model.py'), source: kv, extraPaths: [fixture('site')] });
  for (const name of ['layers.*.attn.mha.in_proj', 'layers.*.attn.mha.out_proj']) {
    const d = row(unsupported, name).decision!;
    assert.equal(d.sparsify, false, name);
    assert.equal(d.reason, "Kept dense: this nn.MultiheadAttention has add_bias_kv=True, which pixelfly_torch's PixelflyMultiheadAttention does not support, so sparsify cannot replace its projections.");
  }
  const kdim = await run({ file: fixture('custom', 'model.py'), source: kv.replace('add_bias_kv=True', 'kdim=dim // 2'), extraPaths: [fixture('site')] });
  assert.match(row(kdim, 'layers.*.attn.mha.in_proj').decision!.reason, /has kdim=256 \(not embed_dim\)/);
  assert.equal(row(unsupported, 'layers.*.attn.qkv').decision?.sparsify, true, 'the same sizes in a plain Linear are sparsified');
  // Without the library on the search path GatedMlp is opaque: its layers are simply not found.
  const without = await run({ file: fixture('custom', 'model.py') });
  assert.equal(without.layers.some((l) => l.name.includes('w_gate')), false);
});

test('# pixelfly: tokens=N sets tokens per sample; an explicit option wins', async () => {
  const a = await run({ file: fixture('nanogpt', 'model.py'), source: '# pixelfly: tokens=256\n' + (await import('node:fs')).readFileSync(fixture('nanogpt', 'model.py'), 'utf8') });
  assert.equal(a.tokensPerSample, 256);
  const b = await run({ file: fixture('nanogpt', 'model.py'), tokens: 64 });
  assert.equal(b.tokensPerSample, 64);
  assert.equal(row(b, 'lm_head').rowsPerSample, 64);
});

test('bad input: unknown --model lists the candidates; unreadable file; malformed pragma', async () => {
  await assert.rejects(run({ file: fixture('nanogpt', 'model.py'), model: 'Nope' }), /--model Nope: not found in .*candidates: .*GPT/);
  await assert.rejects(run({ file: fixture('nanogpt', 'missing.py') }), /cannot read .*missing\.py: ENOENT/);
  const a = await run({ file: fixture('nanogpt', 'model.py'), source: 'import torch.nn as nn\n# pixelfly: 3x=4\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(8, 8)\n' });
  assert.equal(a.pragmaErrors.length, 1);
  assert.match(a.pragmaErrors[0].message, /'3x' is not a Python name/);
  assert.equal(a.pragmaErrors[0].line, 1);
});

// PyTorch's own nn.Transformer, read from the installed python3-torch: relative imports inside the
// torch package, nn.MultiheadAttention, and _get_clones' ModuleList of copy.deepcopy over range(N).
const TORCH_TRANSFORMER = '/usr/lib/python3/dist-packages/torch/nn/modules/transformer.py';
test('PyTorch nn.Transformer source: 6+6 layers of MultiheadAttention and linear1/linear2 at d_model 512', { skip: existsSync(TORCH_TRANSFORMER) ? false : `SKIPPED LOUDLY: ${TORCH_TRANSFORMER} not found (Debian python3-torch is not installed)` }, async () => {
  const a = await run({ file: TORCH_TRANSFORMER });
  assert.equal(a.model?.name, 'Transformer');
  const built = a.layers.filter((l) => l.count !== 0).map((l) => [l.name, l.in, l.out, l.count, l.role]);
  assert.deepEqual(built, [
    ['encoder.layers.*.self_attn.in_proj', 512, 1536, 6, 'attn_qkv'],
    ['encoder.layers.*.self_attn.out_proj', 512, 512, 6, 'attn_out'],
    ['encoder.layers.*.self_attn.(core)', 512, 1024, 6, 'attn_core'],
    ['encoder.layers.*.linear1', 512, 2048, 6, 'mlp_fc1'],
    ['encoder.layers.*.linear2', 2048, 512, 6, 'mlp_fc2'],
    ['decoder.layers.*.self_attn.in_proj', 512, 1536, 6, 'attn_qkv'],
    ['decoder.layers.*.self_attn.out_proj', 512, 512, 6, 'attn_out'],
    ['decoder.layers.*.self_attn.(core)', 512, 1024, 6, 'attn_core'],
    ['decoder.layers.*.multihead_attn.in_proj', 512, 1536, 6, 'attn_qkv'],
    ['decoder.layers.*.multihead_attn.out_proj', 512, 512, 6, 'attn_out'],
    ['decoder.layers.*.multihead_attn.(core)', 512, 1024, 6, 'attn_core'],
    ['decoder.layers.*.linear1', 512, 2048, 6, 'mlp_fc1'],
    ['decoder.layers.*.linear2', 2048, 512, 6, 'mlp_fc2'],
  ]);
  const small = await run({ file: TORCH_TRANSFORMER, pins: pins({ num_encoder_layers: '2', num_decoder_layers: '1', d_model: '256' }) });
  assert.deepEqual(row(small, 'encoder.layers.*.linear1').count, 2);
  // A single instance keeps its real module path.
  assert.deepEqual(row(small, 'decoder.layers.0.linear1').count, 1);
  assert.deepEqual(row(small, 'decoder.layers.0.linear1').in, 256);
});

test('LLaMA style: ModelArgs dataclass, grouped-query attention, SwiGLU hidden rounded to multiple_of (7B and 70B sizes)', async () => {
  const a = await run({ file: fixture('llama', 'model.py') });
  assert.equal(a.model?.name, 'Transformer');
  // 7B defaults: hidden = 256 * ceil(int(2 * 16384 / 3) / 256) = 11008; vocab pinned in a comment.
  assert.deepEqual(inventory(a), [
    ['layers.*.attention.wq', 'Linear', 4096, 4096, 32, 'attn_qkv'],
    // d = wo's input, 32 heads of 128; causal: Transformer.forward builds a triu mask.
    ['layers.*.attention.(core)', 'attention', 4096, 2048, 32, 'attn_core'],
    ['layers.*.attention.wk', 'Linear', 4096, 4096, 32, 'attn_qkv'],
    ['layers.*.attention.wv', 'Linear', 4096, 4096, 32, 'attn_qkv'],
    ['layers.*.attention.wo', 'Linear', 4096, 4096, 32, 'attn_out'],
    ['layers.*.feed_forward.w1', 'Linear', 4096, 11008, 32, 'mlp_fc1'],
    ['layers.*.feed_forward.w2', 'Linear', 11008, 4096, 32, 'mlp_fc2'],
    ['layers.*.feed_forward.w3', 'Linear', 4096, 11008, 32, 'mlp_fc1'],
    ['tok_embeddings', 'Embedding', 32000, 4096, 1, 'embedding'],
    ['output', 'Linear', 4096, 32000, 1, 'head'],
  ]);
  assert.equal(a.tokensPerSample, 2048, 'max_seq_len');
  // 70B: 8 KV heads of 128, ffn_dim_multiplier 1.3 and multiple_of 4096 give 28672.
  const big = await run({
    file: fixture('llama', 'model.py'),
    pins: pins({ dim: '8192', n_layers: '80', n_heads: '64', n_kv_heads: '8', ffn_dim_multiplier: '1.3', multiple_of: '4096' }),
  });
  assert.deepEqual(row(big, 'layers.*.attention.wk').out, 1024);
  assert.deepEqual(row(big, 'layers.*.feed_forward.w1').out, 28672);
  assert.deepEqual(row(big, 'layers.*.feed_forward.w1').count, 80);
});

test('Swin style: a loop over stages builds different widths per iteration; PatchMerging only between stages', async () => {
  const a = await run({ file: fixture('swin', 'model.py') });
  const pick = (re: RegExp) => a.layers.filter((l) => re.test(l.name)).map((l) => [l.name, l.in, l.out, l.count]);
  assert.deepEqual(pick(/attn\.qkv$/), [
    ['layers.0.blocks.*.attn.qkv', 96, 288, 2],
    ['layers.1.blocks.*.attn.qkv', 192, 576, 2],
    ['layers.2.blocks.*.attn.qkv', 384, 1152, 6],
    ['layers.3.blocks.*.attn.qkv', 768, 2304, 2],
  ]);
  assert.deepEqual(pick(/reduction$/), [
    ['layers.1.downsample.reduction', 384, 192, 1],
    ['layers.2.downsample.reduction', 768, 384, 1],
    ['layers.3.downsample.reduction', 1536, 768, 1],
  ]);
  assert.deepEqual(pick(/patch_embed/), [['patch_embed.proj', 3 * 4 * 4, 96, 1]]);
  assert.equal(a.tokensPerSample, 56 * 56);
});

test('Hugging Face LLaMA: the attention class comes from LLAMA_ATTENTION_CLASSES[config._attn_implementation]; every candidate builds the same layers', async () => {
  const a = await run({ file: fixture('hf_llama', 'modeling_llama.py'), model: 'LlamaForCausalLM' });
  // LlamaConfig's defaults (7B): hidden 4096, 32 layers of 32 heads, intermediate 11008, vocab 32000.
  assert.deepEqual(inventory(a), [
    ['model.layers.*.mlp.gate_proj', 'Linear', 4096, 11008, 32, 'mlp_fc1'],
    ['model.layers.*.mlp.up_proj', 'Linear', 4096, 11008, 32, 'mlp_fc1'],
    ['model.layers.*.mlp.down_proj', 'Linear', 11008, 4096, 32, 'mlp_fc2'],
    ['model.layers.*.self_attn.q_proj', 'Linear', 4096, 4096, 32, 'attn_qkv'],
    ['model.layers.*.self_attn.(core)', 'attention', 4096, 2048, 32, 'attn_core'],
    ['model.layers.*.self_attn.k_proj', 'Linear', 4096, 4096, 32, 'attn_qkv'],
    ['model.layers.*.self_attn.v_proj', 'Linear', 4096, 4096, 32, 'attn_qkv'],
    ['model.layers.*.self_attn.o_proj', 'Linear', 4096, 4096, 32, 'attn_out'],
    ['model.embed_tokens', 'Embedding', 32000, 4096, 1, 'embedding'],
    ['lm_head', 'Linear', 4096, 32000, 1, 'head'],
    ['LlamaForSequenceClassification.score', 'Linear', 'config.hidden_size', 'self.num_labels', 0, 'head'],
  ]);
  assert.deepEqual(a.unresolved, []);
  assert.equal(row(a, 'model.layers.*.self_attn.(core)').causal, true, 'self.is_causal = True, and the model builds a triu mask');
  assert.ok(
    a.notes.some((n) => /^LLAMA_ATTENTION_CLASSES\[config\._attn_implementation\]: the key is not known statically; the model is counted with "eager" \(LlamaAttention\); "sdpa" \(LlamaSdpaAttention\) builds the same layers \(pin _attn_implementation to choose\)$/.test(n)),
    a.notes.join('\n'),
  );
  // Grouped-query attention: 8 KV heads of 128 at hidden 4096.
  const gqa = await run({ file: fixture('hf_llama', 'modeling_llama.py'), model: 'LlamaForCausalLM', pins: pins({ num_key_value_heads: '8', num_hidden_layers: '2' }) });
  assert.deepEqual(row(gqa, 'model.layers.*.self_attn.k_proj').out, 1024);
  assert.deepEqual(row(gqa, 'model.layers.*.self_attn.(core)').in, 4096, 'the core runs over all 32 query heads');
  // The sequence classifier scores every token (it picks the last one after the head), so its head runs per token.
  const cls = await run({ file: fixture('hf_llama', 'modeling_llama.py'), model: 'LlamaForSequenceClassification' });
  assert.equal(row(cls, 'score').rowsPerSample, 2048);
});

test('a table whose candidates build different layers: the first is counted, the others listed as not built', async () => {
  const source = [
    'import torch.nn as nn',
    'class FusedAttention(nn.Module):',
    '    def __init__(self, dim):',
    '        super().__init__()',
    '        self.qkv = nn.Linear(dim, 3 * dim)',
    '        self.proj = nn.Linear(dim, dim)',
    'class SplitAttention(nn.Module):',
    '    def __init__(self, dim):',
    '        super().__init__()',
    '        self.q = nn.Linear(dim, dim)',
    '        self.kv = nn.Linear(dim, 2 * dim)',
    '        self.proj = nn.Linear(dim, dim)',
    'ATTENTION_CLASSES = {"fused": FusedAttention, "split": SplitAttention}',
    'class Net(nn.Module):',
    '    def __init__(self, config, dim=512, depth=4):',
    '        super().__init__()',
    '        self.blocks = nn.ModuleList([ATTENTION_CLASSES[config.attn_implementation](dim) for _ in range(depth)])',
    '',
  ].join('\n');
  const a = await run({ file: fixture('nanogpt', 'model.py'), source, model: 'Net' });
  assert.deepEqual(inventory(a), [
    ['blocks.*.qkv', 'Linear', 512, 1536, 4, 'attn_qkv'],
    ['blocks.*.(core)', 'attention', 512, 1024, 4, 'attn_core'],
    ['blocks.*.proj', 'Linear', 512, 512, 4, 'attn_out'],
    ['blocks.*.q', 'Linear', 512, 512, 0, 'attn_qkv'],
    ['blocks.*.kv', 'Linear', 512, 1024, 0, 'attn_qkv'],
    // SplitAttention's proj is at an attribute the counted candidate already has: listed as written, not built.
    ['SplitAttention.proj', 'Linear', 'dim', 'dim', 0, 'attn_out'],
  ]);
  assert.ok(a.notes.some((n) => /the layers only "split" \(SplitAttention\) would build are listed as not built \(pin attn_implementation to choose\)/.test(n)), a.notes.join('\n'));
  const pinned = await run({ file: fixture('nanogpt', 'model.py'), source, model: 'Net', pins: pins({ attn_implementation: 'split' }) });
  assert.deepEqual(pinned.layers.filter((l) => l.count !== 0).map((l) => l.name), ['blocks.*.q', 'blocks.*.(core)', 'blocks.*.kv', 'blocks.*.proj']);
});

test('torchvision ResNet-50: convolutions count at their feature maps, kept dense with a reason; 1x1 convolutions can be sparsified; fc is the head', async () => {
  const a = await run({ file: fixture('torchvision', 'resnet.py'), model: 'resnet50' });
  assert.deepEqual(a.imageSize, { sides: [224, 224], source: "224×224 input, assumed; set it with '# pixelfly: img_size=N'" });
  const pick = (name: string) => {
    const r = row(a, name);
    return [r.kind, r.in, r.out, r.count, r.rowsPerSample];
  };
  // Stem: 7x7 stride 2 over 3 channels (in = 3·49) at 112x112; max pooling halves again to 56x56.
  assert.deepEqual(pick('conv1'), ['conv', 147, 64, 1, 112 * 112]);
  // layer1 (56x56): the first block's 1x1 has 64 inputs, the others 256 (the stage's width after block 0).
  assert.deepEqual(pick('layer1.0.conv1'), ['conv1x1', 64, 64, 1, 56 * 56]);
  assert.deepEqual(pick('layer1.1.conv1'), ['conv1x1', 256, 64, 1, 56 * 56]);
  assert.deepEqual(pick('layer1.*.conv2'), ['conv', 64 * 9, 64, 3, 56 * 56]);
  // layer2: the stride is on conv2 (torchvision's V1.5), so block 0's conv1 still runs at 56x56.
  assert.deepEqual(pick('layer2.0.conv1'), ['conv1x1', 256, 128, 1, 56 * 56]);
  assert.deepEqual(pick('layer2.*.conv2'), ['conv', 128 * 9, 128, 4, 28 * 28]);
  // The strided 1x1 shortcut runs on the block's input and outputs 28x28: not a linear map over channels at every position.
  assert.deepEqual(pick('layer2.0.downsample.0'), ['conv', 256, 512, 1, 28 * 28]);
  assert.deepEqual(pick('layer4.*.conv3'), ['conv1x1', 512, 2048, 3, 7 * 7]);
  assert.deepEqual([row(a, 'fc').role, row(a, 'fc').rowsPerSample], ['head', 1]);
  // Every module of ResNet-50 is in the inventory: 53 convolutions and fc.
  const modules = a.layers.filter((l) => l.count !== 0).reduce((n, l) => n + (l.count as number), 0);
  assert.equal(modules, 54);
  // Forward FLOPs: 4.09 GMACs for ResNet-50 at 224x224 (torchvision's figure, which counts the convolutions and fc).
  const forward = a.layers.reduce((s, l) => s + (l.flops ?? 0), 0) / 3;
  assert.ok(Math.abs(forward / 2 / 4.09e9 - 1) < 0.02, `forward MACs ${(forward / 2 / 1e9).toFixed(3)}G`);
  const conv = row(a, 'layer3.*.conv2');
  assert.equal(conv.role, 'conv');
  assert.equal(conv.decision?.sparsify, false);
  assert.match(conv.decision?.reason ?? '', /^Kept dense: a convolution with a spatial kernel, a stride or groups is not a linear map over channels, and Pixelfly replaces only those\.$/);
  assert.equal(row(a, 'layer3.*.conv3').decision?.sparsify, true, 'a large 1x1 convolution is a linear map over channels');
  // The plan's totals include the convolutions it keeps dense: the model cannot reach half its FLOPs.
  assert.equal(a.plan?.targetMet, false);
  assert.match(a.plan?.summary ?? '', /the target cannot be met/);
  // A pinned image size moves every position count.
  const small = await run({ file: fixture('torchvision', 'resnet.py'), model: 'resnet50', pins: pins({ img_size: '32' }) });
  assert.deepEqual([row(small, 'conv1').rowsPerSample, row(small, 'layer4.*.conv3').rowsPerSample], [16 * 16, 1]);
  // Without --model, the first factory function (ResNet itself needs its block and layers).
  const dflt = await run({ file: fixture('torchvision', 'resnet.py') });
  assert.equal(dflt.model?.name, 'resnet18');
  assert.deepEqual(dflt.unresolved, []);
});

test('timm DeiT: the distillation head head_dist is a head that runs once per sample, like head', async () => {
  const a = await run({ file: fixture('timm', 'deit.py'), model: 'deit_base_distilled_patch16_224' });
  assert.equal(a.model?.kind, 'function');
  for (const name of ['head', 'head_dist']) {
    const r = row(a, name);
    assert.deepEqual([r.in, r.out, r.role, r.rowsPerSample, r.decision?.sparsify], [768, 1000, 'head', 1, false], name);
  }
  assert.equal(a.tokensPerSample, 196 + 2, 'class and distillation tokens');
  assert.equal(row(a, 'blocks.*.attn.(core)').out, 198);
});

test('layers that already are PixelflyLinear count as sparse with the config their call gives', async () => {
  const a = await run({ file: fixture('pixelfly', 'model.py'), pins: pins({ dim: '256' }) });
  const cfg = (name: string) => row(a, name).decision?.config;
  assert.deepEqual(cfg('blocks.*.mlp.fc1'), { block: 32, butterflySize: 8, nFactors: 2, rank: 16, globalSize: 0, shuffle: false });
  assert.deepEqual(cfg('blocks.*.mlp.fc2'), { block: 16, butterflySize: 16, nFactors: 3, rank: 16, globalSize: 0, shuffle: true });
  // Keywords not written take pixelfly_torch's defaults.
  assert.deepEqual(cfg('blocks.*.attn.qkv'), { block: 32, butterflySize: 16, nFactors: 2, rank: 0, globalSize: 0, shuffle: false });
  for (const name of ['blocks.*.mlp.fc1', 'blocks.*.mlp.fc2', 'blocks.*.attn.qkv']) {
    const d = row(a, name).decision!;
    assert.equal(d.sparsify, true, name);
    assert.ok(d.planFlops < d.denseFlops, name);
    assert.match(d.reason, /^Already a Pixelfly layer: a flat butterfly/, name);
  }
  // The three count as sparse in the summary, beside whatever the planner adds at this budget.
  const sparse = a.layers.filter((l) => l.decision?.sparsify).length;
  assert.ok(sparse >= 3);
  assert.match(a.plan?.summary ?? '', new RegExp(`^${sparse} of 6 layers sparse`));
  // A config the layout cannot honour is said, not planned.
  const bad = await run({ file: fixture('pixelfly', 'model.py'), pins: pins({ dim: '256' }), source: readFileSync(fixture('pixelfly', 'model.py'), 'utf8').replace('butterfly_size=8', 'butterfly_size=7') });
  assert.equal(row(bad, 'blocks.*.mlp.fc1').decision, null);
  assert.match(row(bad, 'blocks.*.mlp.fc1').note ?? '', /^This PixelflyLinear's config is not a valid Pixelfly layout: butterfly_size/);
  const open = await run({ file: fixture('pixelfly', 'model.py'), pins: pins({ dim: '256' }), source: readFileSync(fixture('pixelfly', 'model.py'), 'utf8').replace('rank=16, shuffle', 'rank=r, shuffle') });
  assert.match(row(open, 'blocks.*.mlp.fc2').note ?? '', /^Pixelfly config unresolved \(rank=r\)/);
  assert.ok(open.unresolved.includes('r'), open.unresolved.join(', '));
});

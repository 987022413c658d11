// The corpus: model definitions written in the styles of widely used codebases, with the
// inventories a reader would write down by hand (sizes as the matmul sees them, instance counts,
// roles). Each expectation was derived from the model code, not from the analyser's output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import { parsePinValue } from '../../server/analysis/pragmas';
import type { Value } from '../../server/analysis/values';
import { fixture, inventory, row, run } from './helpers';

const pins = (o: Record<string, string>): Map<string, Value> => new Map(Object.entries(o).map(([k, v]) => [k, parsePinValue(v)]));

test('nanoGPT: dataclass config defaults, fused c_attn, ModuleDict of a ModuleList comprehension', async () => {
  const a = await run({ file: fixture('nanogpt', 'model.py') });
  assert.equal(a.model?.name, 'GPT');
  assert.deepEqual(inventory(a), [
    ['transformer.h.*.attn.c_attn', 'Linear', 768, 2304, 12, 'attn_qkv'],
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
    ['blocks.*.attn.proj', 'Linear', 768, 768, 12, 'attn_out'],
    ['blocks.*.mlp.fc1', 'Linear', 768, 3072, 12, 'mlp_fc1'],
    ['blocks.*.mlp.fc2', 'Linear', 3072, 768, 12, 'mlp_fc2'],
    ['patch_embed.proj', 'Conv2d', 3 * 16 * 16, 768, 1, 'patch_embed'],
    ['head', 'Linear', 768, 1000, 1, 'head'],
  ]);
  // 14x14 patches plus the class token.
  assert.equal(a.tokensPerSample, 197);
  assert.equal(row(a, 'head').rowsPerSample, 1, 'a classifier head sees the pooled token');
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

test('Hugging Face GPT-2: Conv1D(nf, nx) is out-first, config class in another file, attribute_map, unbuilt cross-attention', async () => {
  const a = await run({ file: fixture('hf_gpt2', 'modeling_gpt2.py') });
  assert.equal(a.model?.name, 'GPT2LMHeadModel');
  assert.deepEqual(inventory(a), [
    ['GPT2Attention.c_attn', 'Conv1D', 'self.embed_dim', '2 * self.embed_dim', 0, 'attn_qkv'],
    ['GPT2Attention.q_attn', 'Conv1D', 'self.embed_dim', 'self.embed_dim', 0, 'attn_qkv'],
    ['transformer.h.*.attn.c_attn', 'Conv1D', 768, 2304, 12, 'attn_qkv'],
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
    ['transformer.layers.*.0.to_out.0', 'Linear', 768, 768, 12, 'attn_out'],
    ['to_patch_embedding.2', 'Linear', 768, 768, 1, 'patch_embed'],
    ['mlp_head', 'Linear', 768, 1000, 1, 'head'],
  ]);
  assert.equal(a.tokensPerSample, 14 * 14 + 1, 'the local num_patches plus the class token');
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
      ['model.py', 18, 'layers.*.attn.out', 512, 512, 3, 'attn_out'],
      ['model.py', 18, 'gated.*.attn.out', 512, 512, 2, 'attn_out'],
      ['model.py', 31, 'layers.*.attn.mha.in_proj', 512, 1536, 3, 'attn_qkv'],
      ['model.py', 31, 'layers.*.attn.mha.out_proj', 512, 512, 3, 'attn_out'],
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
    ['encoder.layers.*.linear1', 512, 2048, 6, 'mlp_fc1'],
    ['encoder.layers.*.linear2', 2048, 512, 6, 'mlp_fc2'],
    ['decoder.layers.*.self_attn.in_proj', 512, 1536, 6, 'attn_qkv'],
    ['decoder.layers.*.self_attn.out_proj', 512, 512, 6, 'attn_out'],
    ['decoder.layers.*.multihead_attn.in_proj', 512, 1536, 6, 'attn_qkv'],
    ['decoder.layers.*.multihead_attn.out_proj', 512, 512, 6, 'attn_out'],
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

// `pixelfly analyze` as users run it: a real process, text and JSON output, exit statuses.
// The compiled CLI always; the bundle (dist/pixelfly.js, with its wasm beside it) when built.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fixture, repoRoot } from '../server/helpers';

const compiled = join(repoRoot, 'out', 'cli', 'main.js');
const bundle = join(repoRoot, 'dist', 'pixelfly.js');

function cli(entry: string, args: string[]) {
  return spawnSync(process.execPath, [entry, 'analyze', ...args], { encoding: 'utf8', cwd: '/tmp', timeout: 60000 });
}

for (const [what, entry] of [['compiled', compiled], ['bundled', bundle]] as const) {
  const skip = existsSync(entry) ? false : `SKIPPED LOUDLY: ${entry} is not built (npm run bundle)`;
  test(`${what}: JSON as specified, with --model, --set, --tokens, --path`, { skip }, () => {
    const r = cli(entry, [fixture('custom', 'model.py'), '--json', '--path', fixture('site'), '--set', 'depth=4', '--tokens', '128', '--model', 'Encoder']);
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { layers: Array<Record<string, unknown>>; tokensPerSample: number; model: { name: string } };
    assert.equal(j.model.name, 'Encoder');
    assert.equal(j.tokensPerSample, 128);
    for (const l of j.layers) assert.deepEqual(Object.keys(l).slice(0, 10), ['file', 'line', 'name', 'class', 'in', 'out', 'count', 'role', 'flops_share', 'decision']);
    const fc1 = j.layers.find((l) => l.name === 'layers.*.mlp.fc1')!;
    assert.equal(fc1.count, 4, '--set depth=4');
    assert.equal((fc1.file as string).endsWith('blocks.py'), true);
    assert.ok(j.layers.some((l) => l.name === 'gated.*.mlp.w_down'), '--path finds the library');
  });

  test(`${what}: --default-tokens is only a fallback (GPT-2 says 1024), --tokens overrides`, { skip }, () => {
    const tokens = (args: string[]) => {
      const r = cli(entry, [fixture('hf_gpt2', 'modeling_gpt2.py'), '--json', ...args]);
      assert.equal(r.status, 0, r.stderr);
      return (JSON.parse(r.stdout) as { tokensPerSample: number }).tokensPerSample;
    };
    assert.equal(tokens(['--default-tokens', '256']), 1024);
    assert.equal(tokens(['--tokens', '256']), 256);
    const both = cli(entry, [fixture('hf_gpt2', 'modeling_gpt2.py'), '--tokens', '1', '--default-tokens', '2']);
    assert.equal(both.status, 2);
    assert.match(both.stderr, /at most one of --tokens and --default-tokens/);
  });

  test(`${what}: text table, and errors with exit statuses`, { skip }, () => {
    const ok = cli(entry, [fixture('hf_gpt2', 'modeling_gpt2.py')]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /class GPT2LMHeadModel \(line 327\)/);
    assert.match(ok.stdout, /transformer\.h\.\*\.attn\.c_attn\s+Conv1D\s+768→2304\s+12\s+attn_qkv/);
    const missing = cli(entry, ['nope.py']);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /pixelfly: cannot read \/tmp\/nope\.py: ENOENT/);
    const badModel = cli(entry, [fixture('nanogpt', 'model.py'), '--model', 'GPT3']);
    assert.equal(badModel.status, 1);
    assert.match(badModel.stderr, /--model GPT3: not found .*candidates: LayerNorm, CausalSelfAttention, MLP, Block, GPT/);
    const badSet = cli(entry, [fixture('nanogpt', 'model.py'), '--set', 'n_embd']);
    assert.equal(badSet.status, 2);
    assert.match(badSet.stderr, /--set n_embd: expected NAME=VALUE/);
    const badBudget = cli(entry, [fixture('nanogpt', 'model.py'), '--budget', '2']);
    assert.equal(badBudget.status, 2);
    assert.match(badBudget.stderr, /--budget must be a fraction of dense FLOPs in \(0, 1\], got 2/);
  });
}

// The corpus, running: every model of test/fixtures/models is built at small settings under Debian's
// python3-torch (transformers, timm and einops are the test stand-ins of test/fixtures/python-site),
// run forward and backward, then sparsified with the plan the analysis makes for it and run again; and
// the analysis of the same file at the same settings (the entry's pins, as `--set`) must name exactly
// the model's real modules, with their sizes and instance counts, and the rows each multiplies per
// sample (tokens, pooled heads, convolution positions), measured by forward hooks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePinValue } from '../../server/analysis/pragmas';
import type { Analysis } from '../../server/analysis/analyze';
import type { Value } from '../../server/analysis/values';
import { pytorchMissing, runPython, torchMissing } from '../support/torch';
import { fixture, repoRoot, run } from './helpers';

const SITE = join(repoRoot, 'test', 'fixtures', 'python-site');
const BUILD = fixture('build_corpus.py');
const noTorch = pytorchMissing();
const noPackage = torchMissing();

interface Entry {
  name: string;
  file: string;
  model: string;
  pins: Record<string, string | number | boolean>;
  paths: string[];
  note: string;
  /** Pins only the analysis takes (the image size, the tokens a batch has). */
  analysis: Record<string, string | number | boolean>;
  needs: string[];
}

interface Module {
  name: string;
  class: string;
  kind: string;
  in: number;
  out: number;
  /** Rows its product multiplied per sample in the forward pass. */
  rows: number;
  /** PixelflyLinear: its config (keyword names). */
  config?: Record<string, number | boolean>;
}

interface Report extends Entry {
  params: number;
  modules: Module[];
  loss: number;
  chance_loss: number;
  no_grad: string[];
  replaced?: string[];
  backend?: string;
  params_sparse?: number;
  loss_sparse?: number;
  no_grad_sparse?: string[];
}

function python(args: string[]): string {
  const r = runPython(args, { path: [SITE], env: { PYTHONDONTWRITEBYTECODE: '1', OMP_WAIT_POLICY: 'PASSIVE' }, timeout: 120_000 });
  assert.equal(r.status, 0, `python3 ${args.join(' ')} failed (${r.error ?? `exit ${r.status}`}): ${r.stderr.slice(-3000)}`);
  return r.stdout;
}

/** `transformer.h.*.attn.c_attn` -> a regexp over module paths, `*` standing for one index. */
function pathPattern(name: string): RegExp {
  return new RegExp(`^${name.split('.').map((p) => (p === '*' ? '\\d+' : p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('\\.')}$`);
}

/** The module(s) an analysis row stands for: MultiheadAttention's `in_proj` is the packed input
 * projection of the attention module itself (a parameter, not a module); its `out_proj` is a Linear. */
function target(l: Analysis['layers'][number]): { pattern: RegExp; kind: string } {
  const cls = l.class.split('.').pop()!;
  if (cls === 'MultiheadAttention') {
    return l.name.endsWith('.in_proj') ? { pattern: pathPattern(l.name.slice(0, -'.in_proj'.length)), kind: cls } : { pattern: pathPattern(l.name), kind: 'Linear' };
  }
  return { pattern: pathPattern(l.name), kind: cls };
}

const shape = (m: { in: unknown; out: unknown }): string => `${m.in}→${m.out}`;

// The analysis counts every stage of a hierarchical model at the first stage's tokens (server/README.md).
const ROWS_EXEMPT: Record<string, RegExp> = { swin: /^layers\.[123]\./ };

/** Every disagreement between the analysis' layers and the model's modules, in words. */
function mismatches(a: Analysis, modules: Module[], entry: string): string[] {
  const out: string[] = [];
  const claimed = new Map<string, string>();
  for (const l of a.layers) {
    if (l.count === 0) continue; // written in the file but not built by this configuration
    if (l.role === 'attn_core') continue; // products of activations, not a module
    if (typeof l.count !== 'number' || typeof l.in !== 'number' || typeof l.out !== 'number') {
      out.push(`${l.name} (line ${l.line}): unresolved at these pins: ${shape(l)} ×${l.count}`);
      continue;
    }
    const { pattern, kind } = target(l);
    const found = modules.filter((m) => pattern.test(m.name));
    if (found.length !== l.count) {
      out.push(`${l.name} (line ${l.line}): the analysis counts ${l.count}, the model has ${found.length}${found.length ? ` (${found.map((m) => m.name).join(', ')})` : ''}`);
    }
    for (const m of found) {
      if (m.kind !== kind) out.push(`${m.name}: the analysis says ${l.class}, the model has ${m.class}`);
      if (m.in !== l.in || m.out !== l.out) out.push(`${m.name}: the analysis says ${shape(l)} (${l.name}, line ${l.line}), the model has ${shape(m)}`);
      // Lookups have no FLOPs, so their rows do not count (and positional tables are indexed once per batch).
      if (l.role !== 'embedding' && m.rows !== l.rowsPerSample && !ROWS_EXEMPT[entry]?.test(m.name)) {
        out.push(`${m.name}: the analysis counts ${l.rowsPerSample} rows per sample (${l.name}, ${l.role}), the forward pass multiplied ${m.rows}`);
      }
      if (m.config) {
        const c = l.decision?.config;
        const read = c && { block: c.block, butterfly_size: c.butterflySize, n_factors: c.nFactors, rank: c.rank, global_size: c.globalSize, shuffle: c.shuffle };
        if (!l.decision?.sparsify || JSON.stringify(read) !== JSON.stringify(m.config)) {
          out.push(`${m.name}: a PixelflyLinear with ${JSON.stringify(m.config)}, the analysis reads ${read ? JSON.stringify(read) : 'no config'} (sparse: ${l.decision?.sparsify})`);
        }
      }
      const other = claimed.get(m.name);
      if (other) out.push(`${m.name}: both ${other} and ${l.name} name it`);
      claimed.set(m.name, l.name);
    }
  }
  for (const m of modules) if (!claimed.has(m.name)) out.push(`${m.name} (${m.class} ${shape(m)}): not in the analysis`);
  return out;
}

/** The layers `sparsify` must replace: every module a row the plan sparsifies names (not those already
 * Pixelfly); an nn.MultiheadAttention's in_proj is named after its attention module. */
function planned(a: Analysis, modules: Module[]): string[] {
  return a.layers
    .filter((l) => l.decision?.sparsify && l.kind !== 'pixelfly')
    .flatMap((l) => {
      const { pattern, kind } = target(l);
      return modules.filter((m) => pattern.test(m.name) && (kind !== 'MultiheadAttention' || m.kind === kind)).map((m) => (kind === 'MultiheadAttention' ? `${m.name}.in_proj` : m.name));
    })
    .sort();
}

// Sparsifying costs ~60 ms of CPU per replaced module: the 48 of gmixer's 24 fixed-size blocks would
// take seconds, for the replacement path timm_mixer already takes (its analysis is still checked).
const NO_SPARSIFY: Record<string, string> = {
  timm_gmixer: 'SKIPPED: 48 replacements in a 21.7M-parameter model cost seconds; timm_mixer covers the same Mlp path',
};

const pinsOf = (e: Entry): Map<string, Value> => new Map(Object.entries({ ...e.pins, ...e.analysis }).map(([k, v]) => [k, parsePinValue(String(v))]));

test('corpus models build, train a step, take their analysis plan, and have the modules the analysis reads', { skip: noTorch, timeout: 300_000 }, async (t) => {
  const all = JSON.parse(python([BUILD, '--specs'])) as Entry[];
  assert.ok(all.length >= 16, `build_corpus.py lists ${all.length} models`);
  // A model that imports pixelfly_torch is built where the package is (build_corpus.py --all does the same).
  const entries = all.filter((e) => !(noPackage && e.needs.includes('pixelfly_torch')));
  if (entries.length < all.length) t.diagnostic(`SKIPPED LOUDLY: ${all.filter((e) => !entries.includes(e)).map((e) => e.name).join(', ')} (${noPackage})`);
  const analyses = new Map<string, Analysis>();
  for (const e of entries) {
    analyses.set(e.name, await run({ file: fixture(...e.file.split('/')), model: e.model, pins: pinsOf(e), extraPaths: e.paths.map((p) => fixture(p)) }));
  }
  const dir = mkdtempSync(join(tmpdir(), 'pixelfly-corpus-'));
  let reports: Report[];
  try {
    const args = [BUILD, '--json', '--all'];
    if (!noPackage) {
      // The analysis JSON itself is the plan sparsify reads (its layers carry the decisions).
      writeFileSync(join(dir, 'plans.json'), JSON.stringify(Object.fromEntries([...analyses].filter(([name]) => !NO_SPARSIFY[name]))));
      args.push('--plans', join(dir, 'plans.json'));
    }
    reports = JSON.parse(python(args)) as Report[];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.deepEqual(reports.map((r) => r.name), entries.map((e) => e.name));

  for (const r of reports) {
    const a = analyses.get(r.name)!;
    const pins = Object.entries({ ...r.pins, ...r.analysis }).map(([k, v]) => `${k}=${v}`).join(' ');
    await t.test(`${r.name}: ${r.model} (${r.file}) at ${pins} runs forward and backward`, () => {
      // A fresh model predicts about uniformly: far above ln(outputs) means a broken init or forward.
      assert.ok(Number.isFinite(r.loss) && r.loss < 1.5 * r.chance_loss, `loss ${r.loss}, chance ${r.chance_loss.toFixed(3)}`);
      assert.deepEqual(r.no_grad, [], 'every parameter gets a finite gradient');
      assert.ok(r.modules.length > 0);
    });
    await t.test(`${r.name}: the analysis at the same pins names the model's ${r.modules.length} modules with their sizes`, () => {
      assert.equal(a.model?.name, r.model);
      assert.deepEqual(mismatches(a, r.modules, r.name), []);
    });
    await t.test(`${r.name}: sparsify(model, analysis) replaces the planned modules and the model still trains`, { skip: noPackage || NO_SPARSIFY[r.name] || false }, (st) => {
      const want = planned(a, r.modules);
      assert.deepEqual([...(r.replaced ?? [])].sort(), want);
      if (want.length === 0) {
        st.diagnostic(`the plan keeps every layer of ${r.name} dense at these settings (nothing to replace)`);
        return;
      }
      st.diagnostic(`${want.length} modules replaced, ${r.params} -> ${r.params_sparse} parameters, ${r.backend}`);
      assert.ok(r.params_sparse! < r.params, 'fewer parameters after sparsify');
      assert.ok(Number.isFinite(r.loss_sparse) && r.loss_sparse! < 1.5 * r.chance_loss, `loss after sparsify ${r.loss_sparse}, chance ${r.chance_loss.toFixed(3)}`);
      assert.deepEqual(r.no_grad_sparse, [], 'every parameter gets a finite gradient after sparsify');
    });
  }
});

test('the test stand-ins behave as transformers, timm and einops do (corpus_standins_check.py)', { skip: noTorch, timeout: 120_000 }, () => {
  python([join(repoRoot, 'test', 'server', 'corpus_standins_check.py')]);
});

test('build_corpus.py: the text report, and unknown names listed with the known ones', { skip: noTorch, timeout: 60_000 }, () => {
  const text = python([BUILD, 'lucidrains_mixer']);
  assert.match(text, /^lucidrains_mixer: Sequential from lucidrains\/mlp_mixer\.py \(MLPMixer\), [\d.]+M parameters; forward \+ backward: loss [\d.]+/);
  assert.match(text, /--set image_size=32 --set channels=3 --set patch_size=4 --set dim=256 --set depth=2 --set num_classes=10/);
  assert.match(text, /\n {2}2\.0\.fn\.0 +Conv1d +64→256 +rows\/sample 256\n/);
  const r = runPython([BUILD, 'nope'], { path: [SITE], env: { PYTHONDONTWRITEBYTECODE: '1' } });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown corpus model\(s\) nope; known: nanogpt, mingpt, hf_gpt2/);
});

/**
 * The analysis the CLI and the language server share: read a Python file, build the chosen model
 * with the static interpreter, list its matmul-bearing layers (sizes, multiplicities, roles, FLOP
 * shares), and run the core planner on the resolved ones.
 */
import { dirname, resolve } from 'node:path';
import type { Parser } from 'web-tree-sitter';
import { FileRefusedError } from '../../io/userFile';
import { totalFlops, type PixelflyConfig } from '../../core/pixelflyLayer';
import { DEFAULT_TARGET, planModel, type LayerDecision, type Plan, type PlanOptions, type PlanTarget } from '../../core/planner';
import { layerDenseCost, type InventoryLayer, type LayerRole } from '../../core/inventory';
import { attentionCoreRows } from './attentionCore';
import { engineJob, type EngineJob } from './spec';
import { readPixelflyConfig } from './pixelflyConfig';
import { headIsPooled } from './pooling';
import { convPositions } from './spatial';
import type { PyNode } from './ast';
import { AnalysisLimit, Interpreter } from './interpreter';
import { ModuleLoader, ParseCache, moduleNameOf, type SearchRoot } from './modules';
import { parsePinValue, readPragmas, type PragmaError, type Pragmas } from './pragmas';
import { classifyRole, type PathStep } from './roles';
import { show, weightText, type ClassInfo, type FuncInfo, type LayerInst, type LayerKind, type ModuleInfo, type Site, type Value, type Weight } from './values';

/** Tokens per sample when nothing in the model says (no patch grid, no positional table, no block_size). */
export const DEFAULT_TOKENS = 1024;

export interface AnalyzeOptions {
  file: string;
  /** Text of the file when it differs from disk (an editor buffer). */
  source?: string;
  /** Class or factory function to build; default: the file's outermost model class. */
  model?: string;
  /** --set / workspace pins; they win over `# pixelfly:` comments. */
  pins?: Map<string, Value>;
  tokens?: number;
  /** Tokens per sample when neither the caller nor the model says (the editor's setting); else DEFAULT_TOKENS. */
  defaultTokens?: number;
  target?: PlanTarget;
  planOptions?: PlanOptions;
  /** Extra search directories (--path, the `pixelfly.extraPaths` setting): library code. */
  extraPaths?: string[];
  sitePackages?: string[];
  /** Workspace folders: their files are user code (layers reported where they are written). */
  workspaceRoots?: string[];
  /** Unsaved editor buffers by absolute path. */
  overlays?: Map<string, string>;
  maxSteps?: number;
}

export interface SourceRange {
  start: { line: number; character: number };
  end: { line: number; character: number };
}

export interface LayerRow {
  file: string;
  /** 1-based, as editors and the JSON print it. */
  line: number;
  /** 0-based range of the call that builds the layer (or of the user's call that leads to it). */
  range: SourceRange;
  name: string;
  /** The constructor as written (nn.Linear, Conv1D, …). */
  class: string;
  kind: LayerKind;
  /** As the matmul sees them; text where unresolved. */
  in: number | string;
  out: number | string;
  count: number | string;
  role: LayerRole;
  rowsPerSample: number | null;
  /** Training FLOPs (forward + backward) per sample, all instances; null when unresolved. */
  flops: number | null;
  flops_share: number | null;
  bias: boolean;
  pinnedDense: boolean;
  /** True when the call is written directly as a layer constructor (the quick fix can rewrite it). */
  direct: boolean;
  /**
   * How the call builds the layer when it is not a constructor: `via` a name that stands for the
   * layer class here (a class-valued argument, a partial, a subclass), or `inside` a helper or
   * library module whose own call builds it (file and 1-based line of that call).
   */
  built?: { via: string; subclass?: string } | { inside: string; file: string; module: string; line: number; library: boolean };
  /** A pointwise convolution (the quick fix writes PixelflyPointwiseConv). */
  pointwise?: boolean;
  /** attn_core: future keys are masked, so half the score products are done. */
  causal?: boolean;
  /** An existing PixelflyLinear: the config its call gives (pixelfly_torch's defaults for the rest). */
  pixelfly?: Required<PixelflyConfig>;
  /** An existing PixelflyLinear whose config keywords are not resolved: their values as written. */
  pixelflyUnresolved?: string[];
  /** Why the planner must keep this layer dense whatever the target (an nn.MultiheadAttention pixelfly_torch cannot replace). */
  keptDense?: string;
  patch?: { channels: number; kernel: number };
  decision: LayerDecision | null;
  /** Why there is no decision (unresolved sizes, …). */
  note?: string;
}

export interface ModelInfo {
  name: string;
  kind: 'class' | 'function';
  file: string;
  line: number;
  range: SourceRange;
}

/** A model the file defines, for choosing which one the hints, preview and runs use. */
export interface ModelCandidate {
  name: string;
  kind: 'class' | 'function';
  /** 1-based line of its definition. */
  line: number;
  /** No other model code of the file uses it: a model of its own (a class, a registry function), not a part of one. */
  top: boolean;
}

export interface Analysis {
  file: string;
  model: ModelInfo | null;
  /** Module classes and factory functions of the file that --model accepts. */
  candidates: string[];
  /** The candidates that build modules (classes, factory functions), in file order: what a user can choose from. */
  models: ModelCandidate[];
  /** The model analysed when none is chosen (null when the file builds none). */
  defaultModel: string | null;
  tokensPerSample: number;
  tokensSource: string;
  /** The input image the convolutions' positions are counted from (null when the model has no convolution that needs it). */
  imageSize: { sides: number[]; source: string } | null;
  /** Attention heads, when the model keeps them in an attribute (num_heads, n_head, heads, …). */
  heads: number | null;
  target: PlanTarget;
  layers: LayerRow[];
  /** The plan of the model's layers (each layer's decision is on its row), with the whole-step estimate and the profile it was costed with. */
  plan: Omit<Plan, 'layers'> | null;
  /** What training this model on the engine means: its engine spec and the same plan on the engine's layers (or why not). */
  engine: EngineJob;
  /** Names that, once pinned, would resolve unresolved layers. */
  unresolved: string[];
  pins: Record<string, string>;
  notes: string[];
  pragmaErrors: Array<PragmaError & { file: string }>;
  /** Absolute paths of the files read: the analysed file and every module imported from the workspace, extra paths or site-packages (stubs are not files). */
  dependencies: string[];
  /** Paths an import looked for and did not find: creating one of them can change the analysis. */
  missingImports: string[];
  elapsedMs: number;
}

const LAYER_CALL = /(^|\.)(Linear|Conv1D|MultiheadAttention|Embedding|PixelflyLinear|PixelflyPointwiseConv)$/;
/** Constructor calls the quick fixes can find written directly (a layer's own call, not a helper's). */
const DIRECT_CALL = /(^|\.)(Linear|Conv1D|MultiheadAttention|Embedding|PixelflyLinear|PixelflyPointwiseConv|Conv[123]d|ConvTranspose[123]d)$/;
const SEQ_NAMES = ['block_size', 'n_positions', 'max_position_embeddings', 'seq_len', 'max_seq_len', 'n_ctx', 'context_length', 'max_len', 'num_tokens'];
const NOT_PINNABLE = new Set(['int', 'len', 'range', 'i', 'self', 'math', 'min', 'max', 'round', 'float', 'linspace', 'str', 'F', 'torch', 'nn']);
const IMAGE_NAMES = ['img_size', 'image_size', 'input_size', 'resolution'];
/** The input image convolutions are counted at when the model does not say (ImageNet's). */
const DEFAULT_IMAGE = 224;

interface Found {
  layer: LayerInst;
  path: PathStep[];
  /** The module holding the layer: the parent of its own object (nn.MultiheadAttention itself for its in_proj/out_proj). */
  owner: Extract<Value, { k: 'obj' }>;
}

export function analyze(parser: Parser | ParseCache, options: AnalyzeOptions): Analysis {
  const t0 = performance.now();
  const cache = parser instanceof ParseCache ? parser : new ParseCache(parser);
  const file = resolve(options.file);
  const { root: packageRoot, name: moduleName, isPackage } = moduleNameOf(file);
  const roots: SearchRoot[] = [
    { dir: packageRoot, library: false },
    ...(options.workspaceRoots ?? []).map((dir) => ({ dir: resolve(dir), library: false })),
    ...(options.extraPaths ?? []).map((dir) => ({ dir: resolve(dir), library: true })),
    ...(options.sitePackages ?? []).map((dir) => ({ dir, library: true })),
  ];
  if (!roots.some((r) => r.dir === dirname(file))) roots.splice(1, 0, { dir: dirname(file), library: false });
  const overlays = new Map(options.overlays ?? []);
  if (options.source !== undefined) overlays.set(file, options.source);
  const loader = new ModuleLoader(cache, roots, overlays);
  let main: ModuleInfo;
  try {
    main = loader.loadFile(file, moduleName, false, isPackage);
  } catch (e) {
    const why = e instanceof FileRefusedError ? (e.code ?? e.problem) : ((e as NodeJS.ErrnoException).code ?? (e as Error).message);
    throw new AnalysisInputError(`cannot read ${file}: ${why}`);
  }

  const pragmas = readPragmas(main.source);
  const pins = new Map(pragmas.pins);
  for (const [k, v] of options.pins ?? []) pins.set(k, v);
  const interp = new Interpreter(loader, { pins, maxSteps: options.maxSteps });
  const notes: string[] = [];

  let model: ModelInfo | null = null;
  let rootValue: Value | undefined;
  let candidates: string[] = [];
  let models: ModelCandidate[] = [];
  let defaultModel: string | null = null;
  try {
    interp.execModule(main, true);
    const entries = entryPoints(interp, main);
    candidates = entries.map((e) => e.name);
    const ranked = rankModels(entries);
    defaultModel = ranked.best?.name ?? null;
    models = ranked.models.map((e): ModelCandidate => ({ name: e.name, kind: e.value.k === 'class' ? 'class' : 'function', line: entryNode(e).startRow + 1, top: ranked.top.has(e.name) }));
    const chosen = options.model !== undefined ? entries.find((e) => e.name === options.model) : ranked.best;
    if (options.model !== undefined && !chosen) {
      const known = main.globals.has(options.model) ? ` ('${options.model}' is neither a module class nor a function)` : '';
      throw new ModelNotFound(
        `--model ${options.model}: not found in ${file}${known}; candidates: ${candidates.join(', ') || '(none)'}`,
      );
    }
    if (chosen) {
      const node = entryNode(chosen);
      model = { name: chosen.name, kind: chosen.value.k === 'class' ? 'class' : 'function', file, line: node.startRow + 1, range: nameRange(node) };
      interp.watch = entryFunction(interp, chosen.value);
      rootValue = interp.call(chosen.value, [], entryKwargs(interp, chosen.value, main));
    }
  } catch (e) {
    if (e instanceof ModelNotFound) throw e;
    if (!(e instanceof AnalysisLimit)) throw e;
    notes.push(`${e.message}: the model is too large or recursive to analyse completely; results are partial`);
  }
  notes.push(...interp.notes);

  // Layers reachable from the model, grouped by where they are written and their sizes.
  const found: Found[] = [];
  if (rootValue) walk(rootValue, [], new Set(), found, 0);
  const tokens = tokensPerSample(options, pragmas, interp.pins, rootValue, found, interp.watchedLocals);
  // Convolutions run at the positions of their feature maps, followed from the input image.
  const spatial = found.some((f) => f.layer.conv && f.layer.kind !== 'patch' && f.layer.conv.kernel.length > 1);
  const image = spatial ? imageSize(interp.pins, rootValue, interp.watchedLocals) : null;
  // 1-D convolutions run along an axis the analysis cannot name (tokens, audio frames, or the channels
  // of lucidrains' token mixing): they count per token, or per channel when they mix tokens.
  const positions = image ? convPositions(rootValue, { 2: image.sides, 3: [image.sides[0], ...image.sides] }) : new Map<LayerInst, number>();
  const pragmaCache = new Map<string, Pragmas>([[main.path, pragmas]]);
  const grouped = groupRows(found, main, pragmaCache, positions);
  const rows = grouped.rows;
  rows.push(...unbuiltRows(main, rows, pragmas));

  // The rows each layer multiplies per sample. A head sees one row per sample when its module's
  // forward pools before it, or, where no forward says, in vision models (patches or images in).
  const vision = rows.some((r) => (r.role === 'patch_embed' || (r.kind === 'conv' && r.rowsPerSample !== null)) && typeof r.count === 'number' && r.count > 0);
  const width = modelWidth(rows);
  for (const r of rows) {
    if (r.rowsPerSample !== null) continue; // a convolution's positions
    if (r.role === 'head') {
      const attrs = r.name.split('.').filter((k) => !/^\d+$|^\*$/.test(k)).reverse();
      r.rowsPerSample = headIsPooled(grouped.owners.get(r), attrs) ?? vision ? 1 : tokens.value;
    }
    // The patch embedding runs on the patches, before class or distillation tokens join them.
    else if (r.role === 'patch_embed') r.rowsPerSample = tokens.patches ?? tokens.value;
    else if (r.role === 'token_mix') r.rowsPerSample = width ?? tokens.value;
    else r.rowsPerSample = tokens.value;
  }
  const forward = rootValue ? interp.getAttr(rootValue, 'forward') : undefined;
  rows.push(...attentionCoreRows(rows, (r) => grouped.owners.get(r), tokens.value, forward?.k === 'func' ? forward.fn.node.text : ''));
  for (const r of rows) {
    if (typeof r.in === 'number' && typeof r.out === 'number' && typeof r.count === 'number' && r.rowsPerSample !== null) {
      r.flops = totalFlops(layerDenseCost({ role: r.role, in: r.in, out: r.out, bias: r.bias, causal: r.causal }, r.count * r.rowsPerSample).flops);
    }
  }
  // The analysed file first, then other workspace files; in source order within each (an attention core after its projections).
  const fileRank = (f: string): string => (f === main.path ? '' : f);
  rows.sort((a, b) => (a.file === b.file ? a.range.start.line - b.range.start.line || a.range.start.character - b.range.start.character : fileRank(a.file) < fileRank(b.file) ? -1 : 1));
  const totalModelFlops = rows.reduce((a, r) => a + (r.flops ?? 0), 0);
  for (const r of rows) if (r.flops !== null && totalModelFlops > 0) r.flops_share = r.flops / totalModelFlops;

  const target = options.target ?? DEFAULT_TARGET;
  const plan = planRows(rows, target, options.planOptions, notes);
  const unresolved = new Set<string>();
  for (const r of rows) {
    if (r.count === 0) continue;
    for (const v of [r.in, r.out, r.count, ...(r.pixelflyUnresolved ?? [])]) if (typeof v === 'string') for (const n of pinnableNames(v)) unresolved.add(n);
  }
  const pinsOut: Record<string, string> = {};
  for (const [k, v] of pins) pinsOut[k] = show(v);
  const analysis: Analysis = {
    file,
    model,
    candidates,
    models,
    defaultModel,
    tokensPerSample: tokens.value,
    tokensSource: tokens.source,
    imageSize: image,
    heads: findAttr(collectObjects(rootValue), HEAD_NAMES),
    target,
    layers: rows,
    plan,
    unresolved: [...unresolved],
    pins: pinsOut,
    notes,
    pragmaErrors: pragmas.errors.map((e) => ({ ...e, file })),
    dependencies: [...loader.read],
    missingImports: [...loader.lookedFor],
    engine: { error: 'not analysed yet' },
    elapsedMs: 0,
  };
  analysis.engine = plan ? engineJob(analysis, options.planOptions) : { error: 'the model has no plan (see the notes): nothing to train' };
  analysis.elapsedMs = performance.now() - t0;
  return analysis;
}

/** The analysis cannot start: the file cannot be read, or --model names nothing buildable. */
export class AnalysisInputError extends Error {}
export class ModelNotFound extends AnalysisInputError {}

// ------------------------------------------------------------------ choosing and building the model

interface Entry {
  name: string;
  value: Value;
}

function entryPoints(interp: Interpreter, main: ModuleInfo): Entry[] {
  const out: Entry[] = [];
  for (const [name, v] of main.globals) {
    if (v.k === 'class' && v.cls.module === main && interp.isModuleClass(v.cls)) out.push({ name, value: v });
    else if (v.k === 'func' && v.fn.module === main && !name.startsWith('_')) out.push({ name, value: v });
  }
  return out;
}

function entryNode(e: Entry): PyNode {
  return e.value.k === 'class' ? e.value.cls.node : (e.value as Extract<Value, { k: 'func' }>).fn.node;
}

/**
 * The file's models (classes, and public functions that build modules: lucidrains' MLPMixer is a
 * function returning nn.Sequential), which of them no other model code refers to (`top`: models of
 * their own, not parts), and the default: the top model building the most, classes before factory
 * functions, then one that defines forward, then the first (a file of several models opens on its
 * first, not on its last registry entry).
 */
function rankModels(entries: Entry[]): { models: Entry[]; top: Set<string>; best: Entry | undefined } {
  // Identifier sets once per definition: the reference graph is then linear in the file's size.
  const textOf = (e: Entry): string => (e.value.k === 'class' ? e.value.cls.node.text : e.value.k === 'func' ? e.value.fn.node.text : '');
  const words = new Map(entries.map((e) => [e.name, identifiers(e.value.k === 'class' ? e.value.cls.node : e.value.k === 'func' ? e.value.fn.node : undefined)]));
  const classNames = entries.filter((e) => e.value.k === 'class').map((e) => e.name);
  const builds = (e: Entry): boolean =>
    e.value.k === 'class' || (e.value.k === 'func' && (/\bnn\.\w/.test(textOf(e)) || classNames.some((n) => words.get(e.name)!.has(n))));
  const classes = entries.filter(builds);
  if (classes.length === 0) return { models: [], top: new Set(), best: undefined };
  const names = new Set(classes.map((c) => c.name));
  const refs = new Map<string, Set<string>>();
  for (const c of classes) refs.set(c.name, new Set([...words.get(c.name)!].filter((w) => w !== c.name && names.has(w))));
  const referenced = new Set([...refs.values()].flatMap((s) => [...s]));
  const reach = (name: string, seen = new Set<string>()): number => {
    if (seen.has(name)) return 0;
    seen.add(name);
    for (const r of refs.get(name) ?? []) reach(r, seen);
    return seen.size;
  };
  const roots = classes.filter((c) => !referenced.has(c.name));
  const ranked = (best: Entry) => ({ models: classes, top: new Set(roots.map((r) => r.name)), best });
  // Several factory functions of one model class (timm's registry functions): the class itself.
  if (roots.length > 1 && roots.every((r) => r.value.k === 'func')) {
    const shared = classes.filter((c) => c.value.k === 'class' && roots.every((r) => refs.get(r.name)?.has(c.name) || reachesVia(r.name, c.name, refs)));
    if (shared.length) {
      let cls = shared[0];
      for (const c of shared) if (reach(c.name) > reach(cls.name)) cls = c;
      // A class that cannot be built without its factories' arguments (torchvision's ResNet(block, layers)): the first factory.
      if (cls.value.k === 'class' && requiredArguments(cls.value.cls.node).length > 0) return ranked(roots[0]);
      return ranked(cls);
    }
  }
  const rootClasses = roots.filter((r) => r.value.k === 'class');
  const pool = rootClasses.length ? rootClasses : roots.length ? roots : classes;
  // Among models that build as much, one with its own forward (a model that can run a batch: a
  // trimmed or abstract class cannot), then the first.
  const runs = (e: Entry): number => (e.value.k !== 'class' || /\bdef\s+forward\s*\(/.test(textOf(e)) ? 1 : 0);
  let best = pool[0];
  for (const c of pool) if (reach(c.name) > reach(best.name) || (reach(c.name) === reach(best.name) && runs(c) > runs(best))) best = c;
  return ranked(best);
}

/**
 * Arguments for the entry: a required `config` argument gets the file's config class built with
 * its defaults; a factory with **kwargs receives the pins (so `--set depth=24` reaches the model).
 */
function entryKwargs(interp: Interpreter, entry: Value, main: ModuleInfo): Map<string, Value> {
  const kwargs = new Map<string, Value>();
  let fnNode: PyNode | undefined;
  let isMethod = false;
  if (entry.k === 'class') {
    for (const c of interp.mro(entry.cls)) {
      if ('k' in c) break;
      const init = (c as ClassInfo).attrs.get('__init__');
      if (init?.k === 'func') {
        fnNode = init.fn.node;
        isMethod = true;
        break;
      }
    }
  } else if (entry.k === 'func') fnNode = entry.fn.node;
  if (!fnNode) return kwargs;
  const params = fnNode.field('parameters')?.children ?? [];
  const scope = interp.moduleScope(main);
  let hasKwargs = false;
  params.forEach((p, i) => {
    if (isMethod && i === 0) return;
    if (p.type === 'dictionary_splat_pattern' || p.children[0]?.type === 'dictionary_splat_pattern') hasKwargs = true;
    if (p.type !== 'identifier' && p.type !== 'typed_parameter') return;
    const nameNode = p.type === 'identifier' ? p : p.children[0];
    if (nameNode?.type !== 'identifier') return;
    const name = nameNode.text;
    if (interp.pins.has(name)) return;
    const annotation = p.field('type');
    let cls: Value | undefined = annotation ? interp.deref(interp.eval(annotation, scope)) : undefined;
    const configLike = /^(config|cfg|args|hparams|params|conf|model_args|model_config)$/i.test(name);
    // minGPT's convention: the model class says what its default config is.
    const factory = configLike && entry.k === 'class' ? interp.getAttr(entry, 'get_default_config') : undefined;
    if (factory && factory.k === 'func') {
      kwargs.set(name, interp.call(factory, [], new Map()));
      return;
    }
    if (cls?.k !== 'class' && configLike) cls = configClass(interp, main);
    if (cls?.k === 'class') kwargs.set(name, interp.call(cls, [], new Map()));
  });
  if (hasKwargs) for (const [k, v] of interp.pins) kwargs.set(k, v);
  return kwargs;
}

/** Parameters of a class's __init__ without a default, other than self, *args, **kwargs and a config object. */
function requiredArguments(classNode: PyNode): string[] {
  const init = classNode.field('body')?.children.find((s) => s.type === 'function_definition' && s.field('name')?.text === '__init__');
  const params = init?.field('parameters')?.children ?? [];
  const names: string[] = [];
  params.forEach((p, i) => {
    if (i === 0 || (p.type !== 'identifier' && p.type !== 'typed_parameter')) return;
    const name = p.type === 'identifier' ? p.text : p.children[0]?.type === 'identifier' ? p.children[0].text : '';
    if (name && !/^(config|cfg|args|hparams|params|conf|model_args|model_config)$/i.test(name)) names.push(name);
  });
  return names;
}

/** Names used in code (not in docstrings or comments: a docstring mentioning a class is no reference). */
function identifiers(node: PyNode | undefined): Set<string> {
  const out = new Set<string>();
  const visit = (n: PyNode): void => {
    if (n.type === 'identifier') out.add(n.text);
    else if (n.type !== 'string' && n.type !== 'comment') n.children.forEach(visit);
  };
  if (node) visit(node);
  return out;
}

function reachesVia(from: string, to: string, refs: Map<string, Set<string>>, seen = new Set<string>()): boolean {
  if (seen.has(from)) return false;
  seen.add(from);
  for (const r of refs.get(from) ?? []) if (r === to || reachesVia(r, to, refs, seen)) return true;
  return false;
}

/** The function whose locals the tokens inference may read: the entry class's __init__, or the factory. */
function entryFunction(interp: Interpreter, entry: Value): FuncInfo | undefined {
  if (entry.k === 'func') return entry.fn;
  if (entry.k !== 'class') return undefined;
  const init = interp.getAttr(entry, '__init__');
  return init?.k === 'func' ? init.fn : undefined;
}

function configClass(interp: Interpreter, main: ModuleInfo): Value | undefined {
  const byName: Value[] = [];
  for (const [name, v] of main.globals) {
    if (!/(config|cfg|args|params)$/i.test(name)) continue;
    const d = interp.deref(v);
    if (d.k === 'class' && !interp.isModuleClass(d.cls)) byName.push(d);
  }
  if (byName.length) return byName[byName.length - 1];
  for (const v of main.globals.values()) if (v.k === 'class' && v.cls.dataclass) return v;
  return undefined;
}

// ------------------------------------------------------------------ collecting layers

function walk(
  v: Value,
  path: PathStep[],
  visited: Set<unknown>,
  out: Found[],
  depth: number,
  parentWeight: Weight = { n: 1, syms: [] },
  parent?: Extract<Value, { k: 'obj' }>,
): void {
  if (depth > 64 || visited.has(v)) return;
  // The module a layer belongs to: the nearest object above it (lists and dicts are containers).
  const owner = v.k === 'obj' ? v : parent;
  const step = (a: Value, key: string, star: boolean, hint?: PathStep['hint'], ordinal?: PathStep['ordinal']): void => {
    if (a.k === 'obj' || a.k === 'list' || a.k === 'dict') {
      walk(a, [...path, { key, className: className(a), star, hint, ordinal }], visited, out, depth + 1, weightOf(a) ?? parentWeight, owner);
    }
  };
  if (v.k === 'obj') {
    visited.add(v);
    for (const layer of v.layers) out.push({ layer, path: layer.suffix ? [...path, { key: layer.suffix }] : path, owner: layer.suffix || !parent ? v : parent });
    for (const [k, a] of v.attrs) step(a, k, false);
  } else if (v.k === 'list') {
    visited.add(v);
    const layerItems = v.items.flatMap((a, i) => (a.k === 'obj' && a.layers.length > 0 ? [i] : []));
    const ordinal = (i: number): PathStep['ordinal'] =>
      layerItems.length < 2 ? undefined : i === layerItems[0] ? 'first' : i === layerItems[layerItems.length - 1] ? 'last' : undefined;
    v.items.forEach((a, i) => {
      const w = weightOf(a);
      // The one item standing for many (a loop run once with a multiplier) prints as `*`.
      const star = !!w && (w.syms.length > parentWeight.syms.length || w.n > parentWeight.n);
      step(a, String(i), star, sequentialHint(v.items[i - 1]), ordinal(i));
    });
  } else if (v.k === 'dict') {
    visited.add(v);
    for (const [k, a] of v.map) step(a, k, false);
  }
}

function weightOf(v: Value): Weight | undefined {
  if (v.k === 'obj') return v.weight;
  if (v.k === 'list') return v.weight;
  return undefined;
}

/** lucidrains' Sequential models: a Linear after a patchifying Rearrange embeds patches; one after a pooling Reduce is the head. */
function sequentialHint(prev: Value | undefined): PathStep['hint'] {
  if (prev?.k !== 'obj' || !prev.native) return undefined;
  const pattern = prev.attrs.get('pattern');
  const text = pattern?.k === 'str' ? pattern.v : '';
  if (/Rearrange$/.test(prev.native) && /\(\s*p1\s+p2/.test(text)) return 'patch_embed';
  if (/(Reduce|AdaptiveAvgPool\dd|AvgPool\dd)$/.test(prev.native)) return 'head';
  return undefined;
}

function className(v: Value): string | undefined {
  if (v.k === 'obj') return v.cls?.name ?? v.native?.split('.').pop();
  if (v.k === 'list') return v.label ?? v.container;
  if (v.k === 'dict') return v.container;
  return undefined;
}

/** The innermost call site in user code: layers built inside library helpers are reported where the user calls them. */
function userSite(sites: Site[]): Site | undefined {
  for (let i = sites.length - 1; i >= 0; i--) if (!sites[i].module.library) return sites[i];
  return sites[0];
}

function rangeOf(node: PyNode): SourceRange {
  return { start: { line: node.startRow, character: node.startCol }, end: { line: node.endRow, character: node.endCol } };
}

function nameRange(def: PyNode): SourceRange {
  return rangeOf(def.field('name') ?? def);
}

function valueOut(v: Value): number | string {
  if (v.k === 'num' && Number.isInteger(v.v)) return v.v;
  return show(v);
}

function groupRows(
  found: Found[],
  main: ModuleInfo,
  pragmaCache: Map<string, Pragmas>,
  positions: Map<LayerInst, number>,
): { rows: LayerRow[]; owners: Map<LayerRow, Extract<Value, { k: 'obj' }>> } {
  interface Group {
    members: Found[];
    site: Site | undefined;
  }
  const groups = new Map<string, Group>();
  const owners = new Map<LayerRow, Extract<Value, { k: 'obj' }>>();
  for (const f of found) {
    const site = userSite(f.layer.sites);
    const starred = f.path.map((s) => (s.star || /^\d+$/.test(s.key) ? '*' : s.key)).join('.');
    const config = f.layer.pixelfly ? Object.entries(f.layer.pixelfly).map(([k, v]) => `${k}=${show(v)}`).join(',') : '';
    const key = [site ? `${site.module.path}:${site.node.startIndex}` : '?', f.layer.kind, f.layer.suffix ?? '', show(f.layer.inF), show(f.layer.outF), starred, positions.get(f.layer) ?? '', config].join('|');
    const g = groups.get(key);
    if (g) g.members.push(f);
    else groups.set(key, { members: [f], site });
  }
  const rows: LayerRow[] = [];
  for (const g of unambiguous([...groups.values()])) {
    const first = g.members[0];
    const names = new Set(g.members.map(memberName));
    const name = names.size === 1 ? [...names][0] : mergeNames([...names]);
    const site = g.site;
    const file = site?.module.path ?? main.path;
    let pragmas = pragmaCache.get(file);
    if (!pragmas && site) pragmaCache.set(file, (pragmas = readPragmas(site.module.source)));
    const range = site ? rangeOf(site.node) : { start: { line: 0, character: 0 }, end: { line: 0, character: 0 } };
    const inF = valueOut(first.layer.inF);
    const outF = valueOut(first.layer.outF);
    const ctor = first.layer.sites[first.layer.sites.length - 1];
    const callee = site?.node.field('function')?.text ?? '';
    const direct = !!site && site.node === ctor?.node && DIRECT_CALL.test(callee);
    const built: LayerRow['built'] =
      !site || !ctor || direct
        ? undefined
        : site.node === ctor.node
          ? { via: callee, ...(first.layer.subclass ? { subclass: first.layer.subclass } : {}) }
          : { inside: callee, file: ctor.module.path, module: ctor.module.name, line: ctor.node.startRow + 1, library: ctor.module.library };
    const row: LayerRow = {
      file,
      line: range.start.line + 1,
      range,
      name: name || '(model)',
      class: first.layer.className,
      kind: first.layer.kind,
      in: inF,
      out: outF,
      count: countOf(g.members.map((m) => m.layer)),
      role: 'other',
      rowsPerSample: positions.get(first.layer) ?? null,
      flops: null,
      flops_share: null,
      bias: first.layer.bias,
      pinnedDense: !!pragmas && pragmas.denseLines.has(range.start.line),
      direct,
      ...(built ? { built } : {}),
      decision: null,
      ...(first.layer.patch ? { patch: first.layer.patch } : {}),
      ...(first.layer.pointwise ? { pointwise: true } : {}),
      ...(first.layer.keptDense ? { keptDense: first.layer.keptDense } : {}),
    };
    if (first.layer.pixelfly && typeof inF === 'number' && typeof outF === 'number') {
      const read = readPixelflyConfig(first.layer.pixelfly, inF, outF);
      if ('config' in read) row.pixelfly = read.config;
      else if ('unresolved' in read) {
        row.pixelflyUnresolved = read.unresolved.map((u) => u.slice(u.indexOf('=') + 1));
        row.note = `Pixelfly config unresolved (${read.unresolved.join(', ')}): pin them with '# pixelfly: NAME=VALUE' or --set.`;
      }
      else row.note = `This ${first.layer.className}'s config is not a valid Pixelfly layout: ${read.error}.`;
    }
    rows.push(row);
    owners.set(row, first.owner);
    (row as LayerRow & { path?: PathStep[] }).path = first.path;
  }
  // Roles need the vocabulary sizes (an LM head's out equals the token embedding's rows).
  const vocab = new Set<number>();
  for (const r of rows) if (r.kind === 'embedding' && typeof r.in === 'number' && !/pos|wpe|position/i.test(r.name)) vocab.add(r.in);
  for (const r of rows) {
    const withPath = r as LayerRow & { path?: PathStep[] };
    r.role = classifyRole(r.kind, withPath.path ?? [], numOrUndef(r.in), numOrUndef(r.out), vocab);
    delete withPath.path;
  }
  return { rows, owners };
}

function memberName(f: Found): string {
  return f.path.map((s) => (s.star ? '*' : s.key)).join('.');
}

/** `layer3.*.conv1` as a pattern over module paths (`*` = one index, as pixelfly_torch's sparsify reads it). */
function namePattern(name: string): RegExp {
  return new RegExp(`^${name.split('.').map((p) => (p === '*' ? '\\d+' : p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('\\.')}$`);
}

/**
 * Groups whose merged name would also match another group's modules (a stage's first block differs
 * from the others: `layer3.0.conv1` is 512→256, `layer3.1…5.conv1` are 1024→256, and `layer3.*.conv1`
 * would name all six) are split into one group per module, so every row's name matches exactly its
 * own modules: the plan then applies to the right ones.
 */
function unambiguous<G extends { members: Found[] }>(groups: G[]): G[] {
  const names = groups.map((g) => g.members.map(memberName));
  const out: G[] = [];
  groups.forEach((g, i) => {
    const distinct = [...new Set(names[i])];
    const merged = distinct.length === 1 ? distinct[0] : mergeNames(distinct);
    const concrete = distinct.every((n) => !n.split('.').includes('*'));
    if (!merged.split('.').includes('*') || !concrete) return void out.push(g);
    const pattern = namePattern(merged);
    if (!names.some((other, j) => j !== i && other.some((n) => pattern.test(n)))) return void out.push(g);
    for (const n of distinct) out.push({ ...g, members: g.members.filter((m) => memberName(m) === n) });
  });
  return out;
}

/** `blocks.0.fc`, `blocks.1.fc` -> `blocks.*.fc`: only the segments that differ become `*`. */
function mergeNames(names: string[]): string {
  const split = names.map((n) => n.split('.'));
  return split[0].map((seg, i) => (split.every((s) => s[i] === seg) ? seg : '*')).join('.');
}

function numOrUndef(x: number | string): number | undefined {
  return typeof x === 'number' ? x : undefined;
}

function countOf(layers: LayerInst[]): number | string {
  if (layers.every((l) => l.weight.syms.length === 0)) return layers.reduce((a, l) => a + l.weight.n, 0);
  const symKey = layers[0].weight.syms.join('*');
  if (layers.every((l) => l.weight.syms.join('*') === symKey)) {
    return weightText({ n: layers.reduce((a, l) => a + l.weight.n, 0), syms: layers[0].weight.syms });
  }
  return layers.map((l) => weightText(l.weight)).join(' + ');
}

/** Layer constructors written in the file that the chosen model never builds: count 0, sizes as written. */
function unbuiltRows(main: ModuleInfo, built: LayerRow[], pragmas: Pragmas): LayerRow[] {
  const seen = new Set(built.filter((r) => r.file === main.path).map((r) => `${r.range.start.line}:${r.range.start.character}`));
  const out: LayerRow[] = [];
  const visit = (n: PyNode): void => {
    if (n.type === 'call') {
      const fnText = n.field('function')?.text ?? '';
      const m = LAYER_CALL.exec(fnText);
      if (m && !seen.has(`${n.startRow}:${n.startCol}`)) out.push(...staticRows(n, m[2], main, pragmas));
    }
    for (const c of n.children) visit(c);
  };
  visit(main.root);
  return out;
}

function staticRows(call: PyNode, ctor: string, main: ModuleInfo, pragmas: Pragmas): LayerRow[] {
  const positional: string[] = [];
  const keyword = new Map<string, string>();
  for (const a of call.field('arguments')?.children ?? []) {
    if (a.type === 'keyword_argument') keyword.set(a.field('name')!.text, a.field('value')!.text);
    else if (a.type !== 'comment') positional.push(a.text);
  }
  const arg = (i: number, name: string): string => positional[i] ?? keyword.get(name) ?? name;
  const asValue = (t: string): number | string => (/^\d+$/.test(t) ? Number(t) : t);
  let owner = '';
  let attr = '';
  for (let p = call.parent; p; p = p.parent) {
    if (!attr && p.type === 'assignment') attr = p.field('left')?.text.replace(/^self\./, '') ?? '';
    if (p.type === 'class_definition') {
      owner = p.field('name')?.text ?? '';
      break;
    }
  }
  const name = [owner, attr || ctor].filter(Boolean).join('.');
  const range = rangeOf(call);
  const base = {
    file: main.path,
    line: range.start.line + 1,
    range,
    class: ctor,
    count: 0,
    rowsPerSample: null,
    flops: null,
    flops_share: null,
    bias: !/^False$/.test(keyword.get('bias') ?? ''),
    pinnedDense: pragmas.denseLines.has(range.start.line),
    direct: true,
    decision: null,
    note: 'Not built by the chosen model configuration.',
  };
  const role = (kind: LayerKind, i: number | string, o: number | string): LayerRole =>
    classifyRole(kind, [{ key: owner, className: owner }, { key: attr.split('.').pop() ?? '' }], numOrUndef(i), numOrUndef(o), new Set());
  switch (ctor) {
    case 'Conv1D': {
      const i = asValue(arg(1, 'nx'));
      const o = asValue(arg(0, 'nf'));
      return [{ ...base, name, kind: 'hf_conv1d', in: i, out: o, role: role('hf_conv1d', i, o) }];
    }
    case 'MultiheadAttention': {
      const e = asValue(arg(0, 'embed_dim'));
      const three = typeof e === 'number' ? 3 * e : `3 * ${e}`;
      return [
        { ...base, name: `${name}.in_proj`, kind: 'mha_in', in: e, out: three, role: 'attn_qkv' },
        { ...base, name: `${name}.out_proj`, kind: 'mha_out', in: e, out: e, role: 'attn_out' },
      ];
    }
    case 'Embedding': {
      const i = asValue(arg(0, 'num_embeddings'));
      const o = asValue(arg(1, 'embedding_dim'));
      return [{ ...base, name, kind: 'embedding', in: i, out: o, role: 'embedding' }];
    }
    default: {
      const i = asValue(arg(0, 'in_features'));
      const o = asValue(arg(1, 'out_features'));
      const kind: LayerKind = ctor === 'PixelflyLinear' ? 'pixelfly' : 'linear';
      return [{ ...base, name, kind, in: i, out: o, role: role(kind, i, o) }];
    }
  }
}

// ------------------------------------------------------------------ tokens, width, plan

function tokensPerSample(
  options: AnalyzeOptions,
  pragmas: Pragmas,
  pins: Map<string, Value>,
  root: Value | undefined,
  found: Found[],
  entryLocals: Map<string, Value> | undefined,
): { value: number; source: string; patches?: number } {
  if (options.tokens !== undefined) return { value: options.tokens, source: 'set by the caller' };
  const pinned = pins.get('tokens');
  if (pinned?.k === 'num' && Number.isInteger(pinned.v) && pinned.v >= 1) {
    return { value: pinned.v, source: pragmas.pins.get('tokens') === pinned ? '`# pixelfly: tokens=` comment' : 'the pin tokens' };
  }
  const objects = collectObjects(root);
  for (const o of objects) {
    const n = o.attrs.get('num_patches');
    if (n?.k === 'num' && n.v >= 1) {
      const prefix = root?.k === 'obj' ? root.attrs.get('num_prefix_tokens') : undefined;
      const extra = prefix?.k === 'num' ? prefix.v : 0;
      return { value: n.v + extra, patches: n.v, source: `the patch grid (num_patches ${n.v}${extra ? ` + ${extra} prefix token${extra > 1 ? 's' : ''}` : ''})` };
    }
  }
  const local = entryLocals?.get('num_patches');
  if (local?.k === 'num' && local.v >= 1) {
    // lucidrains: a local num_patches, plus the class token when the model has one.
    const cls = root?.k === 'obj' && root.attrs.has('cls_token') ? 1 : 0;
    return { value: local.v + cls, patches: local.v, source: `num_patches ${local.v}${cls ? ' + the class token' : ''} in the model's constructor` };
  }
  for (const f of found) {
    const name = f.path.map((s) => s.key).join('.');
    if (f.layer.kind === 'embedding' && /pos|wpe|position/i.test(name) && f.layer.inF.k === 'num') {
      return { value: f.layer.inF.v, source: `the positional embedding ${name} (${f.layer.inF.v} positions)` };
    }
  }
  for (const o of objects) {
    for (const key of SEQ_NAMES) {
      const v = o.attrs.get(key);
      if (v?.k === 'num' && v.v >= 1) return { value: v.v, source: `${key} = ${v.v}` };
    }
  }
  const fallback = options.defaultTokens ?? DEFAULT_TOKENS;
  return { value: fallback, source: `assumed (${fallback}); set it with '# pixelfly: tokens=N' or --tokens` };
}

/** The input image size: a pin, an attribute of the model (img_size, image_size, …) or a local of its constructor, else 224×224. */
function imageSize(pins: Map<string, Value>, root: Value | undefined, entryLocals: Map<string, Value> | undefined): { sides: number[]; source: string } {
  const sides = (v: Value | undefined): number[] | undefined => {
    if (v?.k === 'num' && Number.isInteger(v.v) && v.v >= 1) return [v.v, v.v];
    if (v?.k === 'list' && v.items.length === 2 && v.items.every((x) => x.k === 'num' && Number.isInteger(x.v) && x.v >= 1)) return v.items.map((x) => (x as { v: number }).v);
    return undefined;
  };
  const text = (s: number[]): string => s.join('×');
  for (const n of IMAGE_NAMES) {
    const s = sides(pins.get(n));
    if (s) return { sides: s, source: `${text(s)} input (pinned ${n})` };
  }
  for (const o of collectObjects(root)) {
    for (const n of IMAGE_NAMES) {
      const s = sides(o.attrs.get(n));
      if (s) return { sides: s, source: `${text(s)} input (${n} of the model)` };
    }
  }
  for (const n of IMAGE_NAMES) {
    const s = sides(entryLocals?.get(n));
    if (s) return { sides: s, source: `${text(s)} input (${n} in the model's constructor)` };
  }
  return { sides: [DEFAULT_IMAGE, DEFAULT_IMAGE], source: `${DEFAULT_IMAGE}×${DEFAULT_IMAGE} input, assumed; set it with '# pixelfly: img_size=N'` };
}

const HEAD_NAMES = ['num_heads', 'n_head', 'heads', 'nhead', 'num_attention_heads', 'n_heads'];

/** Every object reachable from the model (modules and the configs they hold). */
function collectObjects(root: Value | undefined): Array<Extract<Value, { k: 'obj' }>> {
  const objects: Array<Extract<Value, { k: 'obj' }>> = [];
  const seen = new Set<unknown>();
  const collect = (v: Value, depth: number): void => {
    if (depth > 64 || seen.has(v)) return;
    seen.add(v);
    if (v.k === 'obj') {
      objects.push(v);
      for (const a of v.attrs.values()) collect(a, depth + 1);
    } else if (v.k === 'list') v.items.forEach((a) => collect(a, depth + 1));
    else if (v.k === 'dict') for (const a of v.map.values()) collect(a, depth + 1);
  };
  if (root) collect(root, 0);
  return objects;
}

function findAttr(objects: Array<Extract<Value, { k: 'obj' }>>, names: string[]): number | null {
  for (const o of objects) {
    for (const n of names) {
      const v = o.attrs.get(n);
      if (v?.k === 'num' && Number.isInteger(v.v) && v.v >= 1) return v.v;
    }
  }
  return null;
}

/** The model's channel width (rows of a token-mixing matmul per sample). */
function modelWidth(rows: LayerRow[]): number | undefined {
  const patch = rows.find((r) => r.kind === 'patch' && typeof r.out === 'number');
  if (patch) return patch.out as number;
  const counts = new Map<number, number>();
  for (const r of rows) if ((r.role === 'mlp_fc1' || r.role === 'attn_qkv') && typeof r.in === 'number') counts.set(r.in, (counts.get(r.in) ?? 0) + 1);
  let best: number | undefined;
  for (const [w, c] of counts) if (best === undefined || c > counts.get(best)!) best = w;
  return best;
}

function planRows(rows: LayerRow[], target: PlanTarget, planOptions: PlanOptions | undefined, notes: string[]): Omit<Plan, 'layers'> | null {
  const inventory: InventoryLayer[] = [];
  const byName = new Map<string, LayerRow>();
  for (const r of rows) {
    if (typeof r.in !== 'number' || typeof r.out !== 'number' || typeof r.count !== 'number' || r.rowsPerSample === null) {
      r.note ??= `Sizes unresolved (${[r.in, r.out, r.count].filter((x) => typeof x === 'string').join(', ')}): pin them with '# pixelfly: NAME=VALUE' or --set.`;
      continue;
    }
    if (r.in < 1 || r.out < 1 || !Number.isInteger(r.count) || r.count < 0) {
      r.note = `Sizes ${r.in}→${r.out} ×${r.count} are not valid layer sizes.`;
      continue;
    }
    // A PixelflyLinear whose config cannot be read (the note says why) has no decision.
    if (r.kind === 'pixelfly' && !r.pixelfly) continue;
    let name = r.name;
    if (byName.has(name)) name = `${r.name} [${r.in}→${r.out}]`;
    for (let k = 2; byName.has(name); k++) name = `${r.name} [${r.in}→${r.out}] #${k}`;
    byName.set(name, r);
    inventory.push({
      name,
      role: r.role,
      in: r.in,
      out: r.out,
      count: r.count,
      rowsPerSample: Math.max(1, r.rowsPerSample),
      ...(r.pinnedDense ? { pinnedDense: true } : {}),
      ...(r.bias ? {} : { bias: false }),
      ...(r.causal ? { causal: true } : {}),
      ...(r.keptDense ? { keptDense: r.keptDense } : {}),
      ...(r.pixelfly ? { pixelfly: r.pixelfly } : {}),
    });
  }
  if (inventory.length === 0) return null;
  try {
    const plan = memoPlan({ layers: inventory }, target, planOptions);
    for (const d of plan.layers) {
      const r = byName.get(d.name);
      if (r) r.decision = { ...d, name: r.name };
    }
    const { layers: _layers, ...rest } = plan;
    void _layers;
    return rest;
  } catch (e) {
    notes.push(`planner: ${(e as Error).message}`);
    return null;
  }
}

/**
 * Most edits leave the inventory unchanged (a comment, a forward method, a docstring), so the
 * plans of the last few inventories are kept: re-analysis then skips the planner's search.
 */
const planMemo = new Map<string, Plan>();
/** Forget memoised plans (benchmarks measuring cold analyses). */
export function clearPlanMemo(): void {
  planMemo.clear();
}

function memoPlan(inventory: { layers: InventoryLayer[] }, target: PlanTarget, options: PlanOptions | undefined): Plan {
  const key = JSON.stringify([inventory, target, options ?? null]);
  const hit = planMemo.get(key);
  if (hit) return hit;
  const plan = planModel(inventory, target, options);
  planMemo.set(key, plan);
  if (planMemo.size > 16) planMemo.delete(planMemo.keys().next().value as string);
  return plan;
}

/** Names in a symbolic size a pin could give a value to. */
export function pinnableNames(text: string): string[] {
  const names = new Set<string>();
  for (const m of text.matchAll(/[A-Za-z_][A-Za-z0-9_.]*/g)) {
    const last = m[0].split('.').pop()!;
    if (!NOT_PINNABLE.has(last) && !/^\d/.test(last)) names.add(last);
  }
  return [...names];
}


/**
 * The analysis' decisions as a plan's layers (name, role, sizes, count, sparsify, config): what
 * job.submit's `plan` carries for the PyTorch runner, and what pixelfly_torch.sparsify reads. Rows
 * whose sizes are unresolved have no decision and are left out.
 */
export function analysisPlan(a: Analysis): { layers: Array<{ name: string; role: string; in: number; out: number; count: number; sparsify: boolean; config?: PixelflyConfig }>; summary?: string } {
  const layers = a.layers.flatMap((l) =>
    l.decision && typeof l.in === 'number' && typeof l.out === 'number'
      ? [{ name: l.name, role: l.role, in: l.in, out: l.out, count: typeof l.count === 'number' ? l.count : 1, sparsify: l.decision.sparsify, config: l.decision.config }]
      : [],
  );
  return { layers, summary: a.plan?.summary };
}

/** The pins the analysis built the model with (--set, settings, `# pixelfly:` comments), as JSON settings for the PyTorch runner. */
export function analysisSettings(a: Analysis): Record<string, number | string | boolean | null> {
  const out: Record<string, number | string | boolean | null> = {};
  for (const [k, text] of Object.entries(a.pins)) {
    const v = parsePinValue(String(text));
    out[k] = v.k === 'num' || v.k === 'str' || v.k === 'bool' ? (v.v as number | string | boolean) : null;
  }
  return out;
}

/**
 * The server's state: open documents, their latest analyses (re-run on edits, debounced, and when
 * a file they import changes in the editor or on disk), the user's settings and the Python
 * environment's site-packages.
 */
import { fileURLToPath } from 'node:url';
import type { TextDocument } from 'vscode-languageserver-textdocument';
import { KERNEL_BLOCK_SIZES, type PlanOptions, type PlanTarget } from '../../core/planner';
import { DEVICE_PROFILE_FORMAT } from '../../core/costModel';
import { PROFILE_PRECISIONS, ProfileWatcher, type ProfilePrecision } from '../../io/deviceProfile';
import { resolveExtraPaths } from '../../io/extraPaths';
import { homePaths } from '../../io/home';
import { analyze, ModelNotFound, type AnalyzeOptions, type Analysis } from '../analysis/analyze';
import { ParseCache, sitePackages } from '../analysis/modules';
import { parsePinValue } from '../analysis/pragmas';
import type { Value } from '../analysis/values';
import { Dependents } from './dependents';

/** The `pixelfly.*` settings the server reads (the extension contributes them). */
export interface ServerSettings {
  /** pixelfly.analysis.tokensPerSample: used only when the model itself does not say. */
  tokensPerSample?: number;
  /** pixelfly.analysis.pins: { "n_embd": 768, … } — as `# pixelfly: n_embd=768`. */
  pins?: Record<string, string | number | boolean>;
  /** pixelfly.analysis.extraPaths: directories to import library code from. */
  extraPaths?: string[];
  /** pixelfly.analysis.pythonPath (else python.defaultInterpreterPath): whose site-packages to search. */
  pythonPath?: string;
  /** pixelfly.plan.budget / pixelfly.plan.speedup */
  budget?: number;
  speedup?: number;
  /** pixelfly.plan.blockSize: the block size the planner uses (one of core's KERNEL_BLOCK_SIZES). */
  blockSize?: number;
  /** Settings given but not usable, each with why (the server logs them; the defaults stand). */
  problems?: string[];
  /** pixelfly.training.batchSize: the batch a step's estimate assumes (the optimizer runs once per step). */
  batchSize?: number;
  /** pixelfly.training.precision: the products' precision jobs train with, whose device profile costs the plan. */
  precision?: ProfilePrecision;
}

/** Reads the nested configuration object the client returns for section 'pixelfly'. */
export function settingsFrom(section: unknown, python?: unknown): ServerSettings {
  const s = (section ?? {}) as { analysis?: Record<string, unknown>; plan?: Record<string, unknown>; training?: Record<string, unknown> };
  const a = s.analysis ?? {};
  const p = s.plan ?? {};
  const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
  const strs = (v: unknown): string[] | undefined => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : undefined);
  const py = (python ?? {}) as { defaultInterpreterPath?: unknown };
  const problems: string[] = [];
  const block = num(p.blockSize);
  if (p.blockSize !== undefined && p.blockSize !== null && (block === undefined || !KERNEL_BLOCK_SIZES.includes(block))) {
    problems.push(`pixelfly.plan.blockSize: must be one of ${KERNEL_BLOCK_SIZES.join(', ')} (the block sizes the kernels implement), got ${JSON.stringify(p.blockSize)}; planning with all of them`);
  }
  return {
    tokensPerSample: num(a.tokensPerSample),
    pins: typeof a.pins === 'object' && a.pins !== null ? (a.pins as ServerSettings['pins']) : undefined,
    extraPaths: strs(a.extraPaths),
    pythonPath: typeof a.pythonPath === 'string' && a.pythonPath ? a.pythonPath : typeof py.defaultInterpreterPath === 'string' && py.defaultInterpreterPath ? py.defaultInterpreterPath : undefined,
    budget: num(p.budget),
    speedup: num(p.speedup),
    blockSize: block !== undefined && KERNEL_BLOCK_SIZES.includes(block) ? block : undefined,
    batchSize: num(s.training?.batchSize),
    precision: PROFILE_PRECISIONS.find((x) => x === s.training?.precision),
    ...(problems.length > 0 ? { problems } : {}),
  };
}

export interface Analysed {
  version: number;
  analysis: Analysis | null;
  error?: string;
  /** The model chosen for the document when it was analysed (a result for another choice is stale). */
  chosen?: string;
}

export class Session {
  readonly cache: ParseCache;
  private readonly results = new Map<string, Analysed>();
  private readonly pending = new Map<string, NodeJS.Timeout>();
  private readonly sitePackagesByPython = new Map<string, Promise<string[]>>();
  private readonly dependents = new Dependents();
  /** The model the user chose per document (uri -> class or factory function); others use the default. */
  private readonly modelChoices = new Map<string, string>();
  /** The daemon's measured device profile (<home>/profiles/device.json); PIXELFLY_HOME is the daemon's too. */
  private readonly profiles = new ProfileWatcher(() => homePaths().profiles, DEVICE_PROFILE_FORMAT);
  settings: ServerSettings = {};
  workspaceRoots: string[] = [];

  constructor(
    parser: ConstructorParameters<typeof ParseCache>[0],
    private readonly documents: { all(): TextDocument[]; get(uri: string): TextDocument | undefined },
    private readonly onAnalysed: (uri: string, result: Analysed) => void,
    private readonly debounceMs = 150,
  ) {
    this.cache = new ParseCache(parser);
  }

  /** Analyse soon (edits come in bursts); the newest version wins. */
  schedule(uri: string): void {
    clearTimeout(this.pending.get(uri));
    this.pending.set(
      uri,
      setTimeout(() => {
        this.pending.delete(uri);
        void this.analyseNow(uri);
      }, this.debounceMs),
    );
  }

  /** The settings changed: every result is stale, even at the same document version. */
  invalidateAll(): void {
    this.results.clear();
    for (const d of this.documents.all()) this.schedule(d.uri);
  }

  /** The user chose the model a document's analysis builds (null: the default again); re-analysed at once. */
  chooseModel(uri: string, model: string | null): void {
    if (model === null) this.modelChoices.delete(uri);
    else this.modelChoices.set(uri, model);
    this.results.delete(uri);
    this.schedule(uri);
  }

  /** The model chosen for a document, if any. */
  chosenModel(uri: string): string | undefined {
    return this.modelChoices.get(uri);
  }

  /** A document was opened or edited: analyse it, and every open document that imports its file. */
  documentChanged(uri: string): void {
    this.schedule(uri);
    if (uri.startsWith('file:')) this.invalidate(fileURLToPath(uri));
  }

  /** A document was closed: documents importing its file now read it from disk, which may differ. */
  forget(uri: string): void {
    clearTimeout(this.pending.get(uri));
    this.pending.delete(uri);
    this.results.delete(uri);
    this.dependents.remove(uri);
    if (!uri.startsWith('file:')) return;
    const file = fileURLToPath(uri);
    this.cache.forget(file);
    this.invalidate(file);
  }

  /**
   * Python files changed, created or deleted on disk (the client's file watcher). Open documents'
   * files are read from the editor, never from disk, so events for them change nothing.
   */
  filesChangedOnDisk(changes: ReadonlyArray<{ file: string; deleted: boolean }>): void {
    const open = new Set(this.documents.all().filter((d) => d.uri.startsWith('file:')).map((d) => fileURLToPath(d.uri)));
    for (const { file, deleted } of changes) {
      if (open.has(file)) continue;
      // A changed file is re-parsed anyway (the cache checks the text); a deleted one's tree is freed.
      if (deleted) this.cache.forget(file);
      this.invalidate(file);
    }
  }

  /** Documents whose last analysis read (or looked for) `file` are stale even at the same version: drop and re-run. */
  private invalidate(file: string): void {
    for (const uri of this.dependents.of(file)) {
      this.results.delete(uri);
      this.schedule(uri);
    }
  }

  /** Analyse the current version of a document now (also what requests wait on when stale). */
  async analyseNow(uri: string): Promise<Analysed | undefined> {
    const doc = this.documents.get(uri);
    if (!doc || !uri.startsWith('file:')) return undefined;
    const cached = this.results.get(uri);
    // A newly measured profile changes every estimate, at the same document version.
    const sameProfile = !cached?.analysis?.plan || cached.analysis.plan.device.measuredAt === this.profiles.current().measuredAt;
    if (cached && cached.version === doc.version && cached.chosen === this.modelChoices.get(uri) && sameProfile) return cached;
    const result = await this.run(uri, doc.getText(), doc.version);
    // A newer edit may have arrived while site-packages were being found.
    if (this.documents.get(uri)?.version !== result.version) return result;
    this.results.set(uri, result);
    // A failed analysis keeps the previous dependencies: fixing an imported file must still re-run it.
    if (result.analysis) this.dependents.record(uri, [...result.analysis.dependencies, ...result.analysis.missingImports]);
    this.onAnalysed(uri, result);
    return result;
  }

  /**
   * A file's analysis with the same settings: the open document's, or, for a file the client has
   * not opened, the file on disk (not cached: no edits will tell when it goes stale).
   */
  async analyseFile(uri: string): Promise<Analysed | undefined> {
    if (this.documents.get(uri)) return this.analyseNow(uri);
    return uri.startsWith('file:') ? this.run(uri, undefined, -1) : undefined;
  }

  private async run(uri: string, source: string | undefined, version: number): Promise<Analysed> {
    const file = fileURLToPath(uri);
    const site = this.settings.pythonPath ? await this.sitePackages(this.settings.pythonPath) : [];
    const overlays = new Map<string, string>();
    for (const d of this.documents.all()) if (d.uri.startsWith('file:') && d.uri !== uri) overlays.set(fileURLToPath(d.uri), d.getText());
    const chosen = this.modelChoices.get(uri);
    try {
      const options: AnalyzeOptions = {
        file,
        source,
        pins: this.pins(),
        defaultTokens: this.settings.tokensPerSample,
        target: this.target(),
        planOptions: this.planOptions(),
        extraPaths: this.extraPaths(),
        sitePackages: site,
        workspaceRoots: this.workspaceRoots,
        overlays,
      };
      let analysis: Analysis;
      try {
        analysis = analyze(this.cache, { ...options, model: chosen });
      } catch (e) {
        // The chosen model was renamed or removed: the default stands in, saying so (the choice is kept for when it is back).
        if (!(e instanceof ModelNotFound) || chosen === undefined) throw e;
        analysis = analyze(this.cache, options);
        analysis.notes.push(`the model chosen for this file, ${chosen}, is not in it now: showing the default, ${analysis.model?.name ?? '(none)'}`);
      }
      return { version, analysis, chosen };
    } catch (e) {
      return { version, analysis: null, error: (e as Error).message, chosen };
    }
  }

  private pins(): Map<string, Value> {
    const out = new Map<string, Value>();
    for (const [k, v] of Object.entries(this.settings.pins ?? {})) out.set(k, parsePinValue(String(v)));
    return out;
  }

  /**
   * The planner's options: the device profile the daemon measured on this machine at the
   * precision jobs train with, when there is one (re-read when it changes; the plan says which it
   * used), the block size and batch the user set.
   */
  planOptions(): PlanOptions {
    const { blockSize, batchSize, precision } = this.settings;
    return {
      profile: this.profiles.current(precision),
      ...(blockSize !== undefined ? { blockSizes: [blockSize] } : {}),
      ...(batchSize !== undefined && Number.isInteger(batchSize) && batchSize > 0 ? { batchSize } : {}),
    };
  }

  /** pixelfly.analysis.extraPaths as folders (not read from the server process's own folder). */
  extraPaths(): string[] {
    return resolveExtraPaths(this.settings.extraPaths ?? [], this.workspaceRoots);
  }

  private target(): PlanTarget | undefined {
    const { budget, speedup } = this.settings;
    if (speedup !== undefined && speedup >= 1) return { speedup };
    if (budget !== undefined && budget > 0 && budget <= 1) return { budget };
    return undefined;
  }

  private sitePackages(python: string): Promise<string[]> {
    let p = this.sitePackagesByPython.get(python);
    if (!p) this.sitePackagesByPython.set(python, (p = sitePackages(python)));
    return p;
  }
}

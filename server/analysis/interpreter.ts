/**
 * A static interpreter for the subset of Python that model definitions use to build modules:
 * it "runs" a model's __init__ without PyTorch, recording every matmul-bearing layer that gets
 * constructed, with its sizes as numbers where they can be resolved and as symbolic text where
 * not. Loops over resolved ranges really iterate (so per-stage sizes come out right); loops over
 * unresolved ranges run once and multiply the weight of what they build by the symbolic length.
 * Unknown conditions take the else branch (optional features are off by default in practice).
 */
import type { PyNode } from './ast';
import {
  NONE,
  asNumber,
  bool,
  num,
  show,
  str,
  sym,
  truthy,
  type ClassInfo,
  type ConvGeometry,
  type FuncInfo,
  type LayerInst,
  type LayerKind,
  type ModuleInfo,
  type Scope,
  type Site,
  type Value,
  type Weight,
  perDimension,
} from './values';

/** Loops over more items than this run once, with the item count as a multiplier. */
const ITERATE_CAP = 256;
const MAX_DEPTH = 60;

export interface ModuleSource {
  /** Resolve an absolute dotted module name to a loaded (not yet executed) module, or undefined if not found. */
  find(name: string): ModuleInfo | undefined;
  /** A library helper by its last name, for relative imports in a file copied out of its package. */
  findStubBySuffix(name: string): ModuleInfo | undefined;
}

export class AnalysisLimit extends Error {}

class Return {
  constructor(readonly value: Value) {}
}
class Break {}
class Continue {}

/** Packages modelled natively (never parsed): their names become `ext` values. */
const NATIVE_PACKAGES = new Set([
  'torch', 'functools', 'dataclasses', 'math', 'typing', 'typing_extensions', 'collections', 'einops', 'numpy',
  'itertools', 'os', 'sys', 'warnings', 'logging', 'enum', 'abc', 'copy', 'inspect', 're', 'json', 'operator',
]);

const LAYER_CONSTRUCTORS = new Set([
  'Linear', 'Conv1d', 'Conv2d', 'Conv3d', 'ConvTranspose1d', 'ConvTranspose2d', 'ConvTranspose3d', 'MultiheadAttention', 'Embedding', 'Conv1D',
  'PixelflyLinear', 'PixelflyPointwiseConv',
]);
/** The layers of the pixelfly_torch package: already sparse, whatever package copy defines them. */
const PIXELFLY_CLASSES = new Set(['PixelflyLinear', 'PixelflyPointwiseConv']);
/** Pooling and resizing modules whose geometry the convolutions' positions depend on. */
const SPATIAL_MODULES = /^((Max|Avg)Pool[123]d|Adaptive(Avg|Max)Pool[123]d|Upsample)$/;

export interface InterpreterOptions {
  pins: Map<string, Value>;
  maxSteps?: number;
}

export class Interpreter {
  steps = 0;
  readonly maxSteps: number;
  private depth = 0;
  private nextId = 1;
  private frames: Site[] = [];
  weight: Weight = { n: 1, syms: [] };
  readonly notes: string[] = [];
  /** The entry's __init__ (or factory): its local variables are kept (lucidrains keeps num_patches in one). */
  watch: FuncInfo | undefined;
  watchedLocals: Map<string, Value> | undefined;
  readonly pins: Map<string, Value>;

  constructor(
    private readonly modules: ModuleSource,
    options: InterpreterOptions,
  ) {
    this.pins = options.pins;
    this.maxSteps = options.maxSteps ?? 2_000_000;
  }

  // ---------------------------------------------------------------- modules and imports

  moduleScope(mod: ModuleInfo): Scope {
    return { vars: mod.globals, parent: undefined, module: mod, kind: 'module' };
  }

  /**
   * The analysed file runs top to bottom (`eager`); imported modules become lazy: a name's defining
   * statements run when the name is first used.
   */
  execModule(mod: ModuleInfo, eager = false): ModuleInfo {
    if (mod.state === 'lazy' && eager) {
      mod.state = 'loading';
      this.runTopLevel(mod, mod.root.children.filter((s) => !mod.executed!.has(s)));
      mod.state = 'done';
      return mod;
    }
    if (mod.state !== 'new') return mod;
    mod.globals.set('__name__', str(mod.name || '__analysed__'));
    if (!eager) {
      mod.state = 'lazy';
      mod.index = bindingIndex(mod.root);
      mod.executed = new Set();
      return mod;
    }
    mod.state = 'loading';
    this.runTopLevel(mod, mod.root.children);
    mod.state = 'done';
    return mod;
  }

  private runTopLevel(mod: ModuleInfo, stmts: PyNode[]): void {
    const scope = this.moduleScope(mod);
    for (const stmt of stmts) {
      mod.executed?.add(stmt);
      try {
        this.execStmt(stmt, scope);
      } catch (e) {
        if (e instanceof AnalysisLimit) throw e;
        if (e instanceof Return || e instanceof Break || e instanceof Continue) continue;
        this.notes.push(`skipped ${mod.path}:${stmt.startRow + 1} (${(e as Error).message})`);
      }
    }
  }

  /** A module-level name, running its defining statements first in a lazy module. */
  moduleGlobal(mod: ModuleInfo, name: string): Value | undefined {
    const v = mod.globals.get(name);
    if (v || mod.state !== 'lazy') return v;
    const pending = (mod.index!.get(name) ?? []).filter((s) => !mod.executed!.has(s));
    if (pending.length) this.runTopLevel(mod, pending);
    return mod.globals.get(name);
  }

  private absoluteName(from: ModuleInfo, level: number, name: string): string {
    if (level === 0) return name;
    const parts = from.name ? from.name.split('.') : [];
    // A package's __init__ is its own package; a plain module's package is its parent.
    const drop = from.isPackage ? level - 1 : level;
    const base = parts.slice(0, Math.max(0, parts.length - drop));
    return [...base, ...(name ? [name] : [])].join('.');
  }

  /** The value a dotted module name refers to: a loaded module, a natively modelled package, or an opaque external. */
  moduleValue(name: string): Value {
    const top = name.split('.')[0];
    if (NATIVE_PACKAGES.has(top)) return { k: 'ext', qual: name };
    const found = this.modules.find(name);
    if (found) return { k: 'pymod', mod: found };
    return { k: 'ext', qual: name };
  }

  private importFrom(stmt: PyNode, scope: Scope): void {
    const moduleNode = stmt.field('module_name');
    if (!moduleNode) return;
    let level = 0;
    let name = moduleNode.text;
    if (moduleNode.type === 'relative_import') {
      const prefix = moduleNode.children.find((c) => c.type === 'import_prefix');
      level = prefix ? prefix.text.length : 0;
      name = moduleNode.children.find((c) => c.type === 'dotted_name')?.text ?? '';
    }
    let abs = this.absoluteName(scope.module, level, name);
    if (level > 0 && name && !NATIVE_PACKAGES.has(abs.split('.')[0]) && !this.modules.find(abs)) abs = this.modules.findStubBySuffix(name)?.name ?? abs;
    if (stmt.children.some((c) => c.type === 'wildcard_import')) {
      const m = this.moduleValue(abs);
      if (m.k === 'pymod') {
        this.execModule(m.mod, true);
        for (const [k, v] of m.mod.globals) if (!k.startsWith('_')) scope.vars.set(k, v);
      }
      return;
    }
    for (const n of stmt.fieldAll('name')) {
      const imported = n.type === 'aliased_import' ? n.field('name')!.text : n.text;
      const alias = n.type === 'aliased_import' ? n.field('alias')!.text : imported;
      scope.vars.set(alias, {
        k: 'lazy',
        load: () => {
          const m = this.moduleValue(abs);
          if (m.k === 'pymod') {
            this.execModule(m.mod);
            const v = this.moduleGlobal(m.mod, imported);
            if (v) return this.deref(v);
            const sub = this.modules.find(`${abs}.${imported}`);
            if (sub) return { k: 'pymod', mod: sub };
            return { k: 'ext', qual: `${abs}.${imported}` };
          }
          return { k: 'ext', qual: `${abs}.${imported}` };
        },
      });
    }
  }

  private importPlain(stmt: PyNode, scope: Scope): void {
    for (const n of stmt.fieldAll('name')) {
      if (n.type === 'aliased_import') {
        const full = n.field('name')!.text;
        scope.vars.set(n.field('alias')!.text, { k: 'lazy', load: () => this.moduleValue(full) });
      } else {
        const top = n.text.split('.')[0];
        scope.vars.set(top, { k: 'lazy', load: () => this.moduleValue(top) });
      }
    }
  }

  deref(v: Value): Value {
    let x = v;
    while (x.k === 'lazy') x = x.load();
    if (x.k === 'pymod') this.execModule(x.mod);
    return x;
  }

  // ---------------------------------------------------------------- statements

  private tick(): void {
    if (++this.steps > this.maxSteps) throw new AnalysisLimit(`analysis stopped after ${this.maxSteps} steps`);
  }

  execBlock(stmts: PyNode[], scope: Scope): void {
    for (const s of stmts) {
      try {
        this.execStmt(s, scope);
      } catch (e) {
        if (e instanceof Return || e instanceof Break || e instanceof Continue || e instanceof AnalysisLimit) throw e;
        // Code this interpreter does not model must not sink the whole analysis: skip the statement, say so.
        this.notes.push(`skipped ${scope.module.path}:${s.startRow + 1} (${(e as Error).message})`);
      }
    }
  }

  execStmt(stmt: PyNode, scope: Scope): void {
    this.tick();
    switch (stmt.type) {
      case 'expression_statement':
        for (const e of stmt.children) this.execExpressionStatement(e, scope);
        return;
      case 'import_statement':
        return this.importPlain(stmt, scope);
      case 'import_from_statement':
        return this.importFrom(stmt, scope);
      case 'class_definition':
        return this.defineClass(stmt, scope, []);
      case 'function_definition':
        return this.defineFunction(stmt, scope, []);
      case 'decorated_definition': {
        const decorators = stmt.children.filter((c) => c.type === 'decorator').map((d) => d.text.slice(1).trim());
        const def = stmt.field('definition');
        if (def?.type === 'class_definition') this.defineClass(def, scope, decorators);
        else if (def?.type === 'function_definition') this.defineFunction(def, scope, decorators);
        return;
      }
      case 'if_statement':
        return this.execIf(stmt, scope);
      case 'for_statement':
        return this.execFor(stmt, scope);
      case 'return_statement': {
        const e = stmt.children[0];
        throw new Return(e ? this.eval(e, scope) : NONE);
      }
      case 'with_statement': {
        const body = stmt.field('body');
        if (body) this.execBlock(body.children, scope);
        return;
      }
      case 'try_statement': {
        const body = stmt.field('body');
        if (body) this.execBlock(body.children, scope);
        const fin = stmt.children.find((c) => c.type === 'finally_clause');
        const finBody = fin?.children.find((c) => c.type === 'block');
        if (finBody) this.execBlock(finBody.children, scope);
        return;
      }
      case 'break_statement':
        throw new Break();
      case 'continue_statement':
        throw new Continue();
      case 'delete_statement':
        return;
      default:
        // pass, raise, assert, global, while (never builds layers in practice), comments …
        return;
    }
  }

  private execExpressionStatement(e: PyNode, scope: Scope): void {
    switch (e.type) {
      case 'assignment':
        return this.execAssignment(e, scope);
      case 'augmented_assignment': {
        const left = e.field('left')!;
        const op = e.field('operator')!.type.replace('=', '');
        const current = this.eval(left, scope);
        const right = this.eval(e.field('right')!, scope);
        if (op === '+' && current.k === 'list' && right.k === 'list') {
          current.items.push(...right.items); // in-place, like list.__iadd__
          return;
        }
        this.assign(left, this.binary(op, current, right, e.text), scope);
        return;
      }
      default:
        this.eval(e, scope);
    }
  }

  private execAssignment(e: PyNode, scope: Scope): void {
    const right = e.field('right');
    const left = e.field('left')!;
    if (!right) {
      // Annotation only (`n_embd: int`): a dataclass field without default; nothing to bind.
      return;
    }
    let value: Value;
    if (right.type === 'assignment') {
      // Chained a = b = value.
      this.execAssignment(right, scope);
      value = this.eval(right.field('left')!, scope);
    } else {
      value = this.eval(right, scope);
    }
    this.assign(left, value, scope);
  }

  assign(target: PyNode, value: Value, scope: Scope): void {
    switch (target.type) {
      case 'identifier':
        scope.vars.set(target.text, value);
        return;
      case 'attribute': {
        const obj = this.eval(target.field('object')!, scope);
        this.setAttr(obj, target.field('attribute')!.text, value);
        return;
      }
      case 'subscript': {
        const container = this.eval(target.field('value')!, scope);
        const key = this.eval(target.field('subscript')!, scope);
        if (container.k === 'dict') container.map.set(keyOf(key), value);
        else if (container.k === 'list' && key.k === 'num') container.items[key.v] = value;
        return;
      }
      case 'pattern_list':
      case 'tuple_pattern':
      case 'list_pattern':
      case 'expression_list':
      case 'tuple':
      case 'list': {
        const targets = target.children;
        const items = this.iterate(value);
        targets.forEach((t, i) => {
          if (t.type === 'list_splat_pattern') {
            const rest = items ? items.slice(i, items.length - (targets.length - i - 1)) : [];
            this.assign(t.children[0], { k: 'list', items: rest, tuple: false }, scope);
          } else {
            this.assign(t, items?.[i] ?? sym(`${show(value)}[${i}]`), scope);
          }
        });
        return;
      }
      case 'parenthesized_expression':
        return this.assign(target.children[0], value, scope);
      default:
        return;
    }
  }

  private execIf(stmt: PyNode, scope: Scope): void {
    const cond = truthy(this.eval(stmt.field('condition')!, scope));
    if (cond === true) return this.execBlock(stmt.field('consequence')!.children, scope);
    for (const alt of stmt.fieldAll('alternative')) {
      if (alt.type === 'elif_clause') {
        const c = truthy(this.eval(alt.field('condition')!, scope));
        if (c === true) return this.execBlock(alt.field('consequence')!.children, scope);
      } else if (alt.type === 'else_clause') {
        return this.execBlock(alt.field('body')!.children, scope);
      }
    }
  }

  private execFor(stmt: PyNode, scope: Scope): void {
    const iterable = this.eval(stmt.field('right')!, scope);
    const left = stmt.field('left')!;
    const body = stmt.field('body')!.children;
    this.loop(iterable, (item) => {
      this.assign(left, item, scope);
      try {
        this.execBlock(body, scope);
      } catch (e) {
        if (e instanceof Break) return false;
        if (!(e instanceof Continue)) throw e;
      }
      return true;
    });
  }

  /**
   * Run `each` for the items of an iterable: every item when there are few, else once with the
   * weight multiplied by the count; once with a symbolic multiplier when the length is unknown.
   */
  loop(iterable: Value, each: (item: Value) => boolean): void {
    const items = this.iterate(iterable);
    if (items && items.length <= ITERATE_CAP) {
      for (const item of items) if (!each(item)) break;
      return;
    }
    const saved = this.weight;
    if (items) {
      this.weight = { n: saved.n * items.length, syms: saved.syms };
      try {
        each(items[0]);
      } finally {
        this.weight = saved;
      }
      return;
    }
    const length = iterable.k === 'sym' ? symLength(iterable) : `len(${show(iterable)})`;
    this.weight = /^\d+$/.test(length) ? { n: saved.n * Number(length), syms: saved.syms } : { n: saved.n, syms: [...saved.syms, length] };
    try {
      each(iterable.k === 'sym' && iterable.text.startsWith('range(') ? sym('i') : sym(`${show(iterable)}[i]`));
    } finally {
      this.weight = saved;
    }
  }

  iterate(v: Value): Value[] | undefined {
    v = this.deref(v);
    if (v.k === 'list') return v.items;
    if (v.k === 'dict') return [...v.map.keys()].map(str);
    if (v.k === 'str') return [...v.v].map(str);
    return undefined;
  }

  // ---------------------------------------------------------------- definitions

  private defineFunction(node: PyNode, scope: Scope, decorators: string[]): void {
    const name = node.field('name')!.text;
    const fn: FuncInfo = {
      name,
      node,
      module: scope.module,
      closure: scope.kind === 'function' ? scope : undefined,
      decorators,
    };
    scope.vars.set(name, { k: 'func', fn });
  }

  private defineClass(node: PyNode, scope: Scope, decorators: string[]): void {
    const name = node.field('name')!.text;
    const bases: Value[] = [];
    const superclasses = node.field('superclasses');
    for (const b of superclasses?.children ?? []) {
      if (b.type === 'keyword_argument') continue; // metaclass=…
      bases.push(this.deref(this.eval(b, scope)));
    }
    const cls: ClassInfo = {
      name,
      node,
      module: scope.module,
      bases,
      attrs: new Map(),
      dataclass: decorators.some((d) => /(^|\.)dataclass\b/.test(d)),
      fields: [],
    };
    scope.vars.set(name, { k: 'class', cls });
    const classScope: Scope = { vars: cls.attrs, parent: scope, module: scope.module, kind: 'class' };
    for (const stmt of node.field('body')?.children ?? []) {
      if (stmt.type === 'expression_statement' && stmt.children[0]?.type === 'assignment') {
        const a = stmt.children[0];
        const left = a.field('left')!;
        if (a.field('type') && left.type === 'identifier') {
          const right = a.field('right');
          const dflt = right ? this.fieldDefault(this.eval(right, classScope)) : undefined;
          cls.fields.push({ name: left.text, default: dflt });
          if (dflt) cls.attrs.set(left.text, dflt);
          continue;
        }
      }
      this.execStmt(stmt, classScope);
    }
    for (const v of cls.attrs.values()) if (v.k === 'func') v.fn.owner = cls;
  }

  /** dataclasses.field(default=…) / field(default_factory=…). */
  private fieldDefault(v: Value): Value {
    if (v.k === 'obj' && v.native === 'dataclasses.field') {
      const d = v.attrs.get('default');
      if (d) return d;
      const f = v.attrs.get('default_factory');
      if (f) return this.call(f, [], new Map());
      return sym('field()');
    }
    return v;
  }

  // ---------------------------------------------------------------- classes and objects

  mro(cls: ClassInfo): Array<ClassInfo | Value> {
    const out: Array<ClassInfo | Value> = [];
    const seen = new Set<ClassInfo>();
    const visit = (c: ClassInfo): void => {
      if (seen.has(c)) return;
      seen.add(c);
      out.push(c);
      for (const b of c.bases) {
        if (b.k === 'class') visit(b.cls);
        else out.push(b);
      }
    };
    visit(cls);
    return out;
  }

  /** True for nn.Module subclasses (and subclasses of unresolved external classes that look like modules). */
  private readonly moduleClassCache = new Map<ClassInfo, boolean>();

  isModuleClass(cls: ClassInfo): boolean {
    const hit = this.moduleClassCache.get(cls);
    if (hit !== undefined) return hit;
    const is = this.mro(cls).some((c) => 'k' in c && c.k === 'ext' && /(Module|Sequential|ModuleList|Linear|PreTrainedModel|Layer|Block)$/.test(c.qual));
    this.moduleClassCache.set(cls, is);
    return is;
  }

  private lookupClassAttr(cls: ClassInfo, name: string, after?: ClassInfo): { value: Value; owner?: ClassInfo } | undefined {
    let chain = this.mro(cls);
    if (after) chain = chain.slice(chain.indexOf(after) + 1);
    for (const c of chain) {
      if ('k' in c) {
        if (c.k === 'ext') return { value: { k: 'ext', qual: `${c.qual}.${name}` } };
        continue;
      }
      const v = c.attrs.get(name);
      if (v) return { value: v, owner: c };
    }
    return undefined;
  }

  newObject(cls: ClassInfo | undefined, native?: string): Extract<Value, { k: 'obj' }> {
    return { k: 'obj', id: this.nextId++, cls, native, attrs: new Map(), layers: [], weight: this.weight };
  }

  instantiate(cls: ClassInfo, args: Value[], kwargs: Map<string, Value>): Value {
    if (cls.name === 'Conv1D' || PIXELFLY_CLASSES.has(cls.name)) return this.callNativeConstructor(cls.name, args, kwargs);
    const obj = this.newObject(cls);
    const init = this.lookupClassAttr(cls, '__init__');
    if (init && init.value.k === 'func') {
      this.callFunction(init.value.fn, args, kwargs, obj, init.owner);
    } else if (init && init.value.k === 'ext') {
      // No Python __init__: the external base's own constructor (nn.Linear subclass without __init__, …).
      this.superInit(init.value.qual.replace(/\.__init__$/, ''), obj, args, kwargs);
    } else {
      this.initFields(cls, obj, args, kwargs);
    }
    const post = this.lookupClassAttr(cls, '__post_init__');
    if (post && post.value.k === 'func') this.callFunction(post.value.fn, [], new Map(), obj, post.owner);
    return obj;
  }

  /** A dataclass-style __init__: positional then keyword arguments over the annotated fields, defaults (or pins) for the rest. */
  private initFields(cls: ClassInfo, obj: Extract<Value, { k: 'obj' }>, args: Value[], kwargs: Map<string, Value>): void {
    const fields = this.mro(cls)
      .filter((c): c is ClassInfo => !('k' in c))
      .reverse()
      .flatMap((c) => c.fields);
    fields.forEach((f, i) => {
      const given = i < args.length ? args[i] : kwargs.get(f.name);
      const value = given ?? this.pins.get(f.name) ?? f.default ?? sym(f.name);
      obj.attrs.set(f.name, value);
    });
    for (const [k, v] of kwargs) if (!obj.attrs.has(k)) obj.attrs.set(k, v);
  }

  getAttr(target: Value, name: string): Value | undefined {
    const v = this.deref(target);
    switch (v.k) {
      case 'obj': {
        // A pin names a configuration knob: it wins over what a config object holds.
        const pinned = this.pins.get(name);
        if (pinned && !v.native && !(v.cls && this.isModuleClass(v.cls))) return pinned;
        if (name === '__dict__') return { k: 'dict', map: v.attrs };
        const own = v.attrs.get(name);
        if (own) return own;
        if (v.cls) {
          const found = this.lookupClassAttr(v.cls, name);
          if (found) {
            const a = found.value;
            if (a.k === 'func') {
              if (a.fn.decorators.includes('property')) return this.callFunction(a.fn, [], new Map(), v, found.owner);
              if (a.fn.decorators.includes('staticmethod')) return a;
              if (a.fn.decorators.includes('classmethod')) return { k: 'func', fn: a.fn, self: { k: 'class', cls: v.cls } };
              return { k: 'func', fn: a.fn, self: v };
            }
            if (a.k !== 'ext') return a;
          }
          // Hugging Face configs alias names through `attribute_map` (hidden_size -> n_embd).
          const map = this.lookupClassAttr(v.cls, 'attribute_map');
          if (map && map.value.k === 'dict') {
            const alias = map.value.map.get(name);
            if (alias?.k === 'str') return this.getAttr(v, alias.v);
          }
        }
        if (name === 'add_module' || name === 'register_module') return { k: 'native', name: `module.${name}`, self: v };
        return undefined;
      }
      case 'class': {
        const found = this.lookupClassAttr(v.cls, name);
        if (!found) return undefined;
        if (found.value.k === 'func' && found.value.fn.decorators.includes('classmethod')) return { k: 'func', fn: found.value.fn, self: v };
        return found.value;
      }
      case 'pymod': {
        const g = this.moduleGlobal(v.mod, name);
        if (g) return this.deref(g);
        const sub = this.modules.find(`${v.mod.name}.${name}`);
        return sub ? { k: 'pymod', mod: sub } : undefined;
      }
      case 'ext':
        return this.moduleValueOrAttr(`${v.qual}.${name}`);
      case 'list':
        if (['append', 'extend', 'insert', 'index', 'pop', 'copy'].includes(name)) return { k: 'native', name: `list.${name}`, self: v };
        return undefined;
      case 'dict':
        if (['get', 'items', 'keys', 'values', 'update', 'pop', 'copy', 'setdefault'].includes(name)) return { k: 'native', name: `dict.${name}`, self: v };
        return undefined;
      case 'str':
        if (['format', 'lower', 'upper', 'startswith', 'endswith', 'split', 'replace', 'join'].includes(name)) return { k: 'native', name: `str.${name}`, self: v };
        return undefined;
      case 'choice':
        return this.getAttr(v.options[0].value, name);
      case 'super': {
        const cls = this.objClass(v.self);
        if (!cls) return undefined;
        const found = this.lookupClassAttr(cls, name, v.after);
        if (!found) return undefined;
        if (found.value.k === 'func') return { k: 'func', fn: found.value.fn, self: v.self };
        if (found.value.k === 'ext') return { k: 'native', name: `super:${found.value.qual}`, self: v.self };
        return found.value;
      }
      default:
        return undefined;
    }
  }

  private moduleValueOrAttr(qual: string): Value {
    // `timm.layers` reached as an attribute of `timm`: a stub or workspace module if there is one.
    const top = qual.split('.')[0];
    if (!NATIVE_PACKAGES.has(top)) {
      const found = this.modules.find(qual);
      if (found) return { k: 'pymod', mod: found };
    }
    return { k: 'ext', qual };
  }

  private objClass(v: Value): ClassInfo | undefined {
    return v.k === 'obj' ? v.cls : undefined;
  }

  setAttr(target: Value, name: string, value: Value): void {
    const v = this.deref(target);
    if (v.k === 'obj') v.attrs.set(name, value);
    else if (v.k === 'class') v.cls.attrs.set(name, value);
  }

  // ---------------------------------------------------------------- calls

  call(fnValue: Value, args: Value[], kwargs: Map<string, Value>, node?: PyNode, module?: ModuleInfo): Value {
    const f = this.deref(fnValue);
    if (node && module) this.frames.push({ module, node });
    if (++this.depth > MAX_DEPTH) {
      this.depth--;
      if (node && module) this.frames.pop();
      this.notes.push(`call depth limit reached at ${show(f)}`);
      return sym(`${show(f)}(…)`);
    }
    try {
      switch (f.k) {
        case 'class':
          return this.instantiate(f.cls, args, kwargs);
        case 'func': {
          const result = this.callFunction(f.fn, args, kwargs, f.self, f.fn.owner);
          // A factory function returning a container (lucidrains' FeedForward): its name is the container's role context.
          if (result.k === 'list' && result.container && !result.label) result.label = f.fn.name;
          return result;
        }
        case 'partial': {
          const merged = new Map(f.kwargs);
          for (const [k, v] of kwargs) merged.set(k, v);
          return this.call(f.fn, [...f.args, ...args], merged);
        }
        case 'native':
          return this.callNative(f, args, kwargs);
        case 'ext':
          return this.callExt(f.qual, args, kwargs);
        case 'choice':
          return this.callChoice(f, args, kwargs);
        case 'obj': {
          const c = f.cls && this.lookupClassAttr(f.cls, '__call__');
          if (c && c.value.k === 'func') return this.callFunction(c.value.fn, args, kwargs, f, c.owner);
          return sym(`${show(f)}(…)`);
        }
        default:
          return sym(`${show(f)}(…)`);
      }
    } finally {
      this.depth--;
      if (node && module) this.frames.pop();
    }
  }

  callFunction(fn: FuncInfo, args: Value[], kwargs: Map<string, Value>, self?: Value, owner?: ClassInfo): Value {
    const scope: Scope = {
      vars: new Map(),
      parent: fn.closure,
      module: fn.module,
      kind: 'function',
      selfValue: self,
      methodOwner: owner ?? fn.owner,
    };
    const defScope = fn.closure ?? this.moduleScope(fn.module);
    this.bindParameters(fn.node.field('parameters'), self ? [self, ...args] : args, kwargs, scope, defScope);
    const body = fn.node.field('body')!;
    if (fn.node.type === 'lambda') return this.eval(body, scope);
    if (fn === this.watch && !this.watchedLocals) this.watchedLocals = scope.vars;
    try {
      this.execBlock(body.children, scope);
    } catch (e) {
      if (e instanceof Return) return e.value;
      throw e;
    }
    return NONE;
  }

  private bindParameters(params: PyNode | undefined, args: Value[], kwargs: Map<string, Value>, scope: Scope, defScope: Scope): void {
    let pos = 0;
    let afterStar = false;
    const rest = new Map(kwargs);
    for (const p of params?.children ?? []) {
      switch (p.type) {
        case 'list_splat_pattern':
        case 'dictionary_splat_pattern':
          break;
        case 'keyword_separator':
          afterStar = true;
          continue;
        case 'positional_separator':
          continue;
      }
      let kind: 'plain' | 'star' | 'dstar' = 'plain';
      let nameNode: PyNode | undefined;
      let dflt: PyNode | undefined;
      if (p.type === 'identifier') nameNode = p;
      else if (p.type === 'default_parameter' || p.type === 'typed_default_parameter') {
        nameNode = p.field('name');
        dflt = p.field('value');
      } else if (p.type === 'typed_parameter') {
        const inner = p.children[0];
        if (inner?.type === 'list_splat_pattern') (kind = 'star'), (nameNode = inner.children[0]);
        else if (inner?.type === 'dictionary_splat_pattern') (kind = 'dstar'), (nameNode = inner.children[0]);
        else nameNode = inner;
      } else if (p.type === 'list_splat_pattern') (kind = 'star'), (nameNode = p.children[0]);
      else if (p.type === 'dictionary_splat_pattern') (kind = 'dstar'), (nameNode = p.children[0]);
      if (!nameNode) continue;
      const name = nameNode.text;
      if (kind === 'star') {
        scope.vars.set(name, { k: 'list', items: args.slice(pos), tuple: true });
        pos = args.length;
        afterStar = true;
      } else if (kind === 'dstar') {
        scope.vars.set(name, { k: 'dict', map: rest });
      } else if (!afterStar && pos < args.length) {
        scope.vars.set(name, args[pos++]);
        rest.delete(name);
      } else if (rest.has(name)) {
        scope.vars.set(name, rest.get(name)!);
        rest.delete(name);
      } else {
        // Not passed: a pin wins over the written default.
        const pinned = this.pins.get(name);
        scope.vars.set(name, pinned ?? (dflt ? this.eval(dflt, defScope) : sym(name)));
      }
    }
  }

  private superInit(qual: string, self: Value, args: Value[], kwargs: Map<string, Value>): void {
    const last = qual.split('.').pop()!;
    if (self.k !== 'obj') return;
    if (LAYER_CONSTRUCTORS.has(last)) {
      const made = this.callNativeConstructor(last, args, kwargs);
      if (made.k === 'obj') {
        // A subclass (CastedLinear(nn.Linear)) may change forward: a rewrite must not replace it.
        self.layers.push(...made.layers.map((l) => ({ ...l, subclass: self.cls?.name })));
        for (const [k, v] of made.attrs) if (!self.attrs.has(k)) self.attrs.set(k, v);
      }
    } else if (last === 'Sequential' || last === 'ModuleList') {
      const items = last === 'Sequential' ? args : this.iterate(args[0] ?? NONE) ?? [];
      items.forEach((m, i) => self.attrs.set(String(i), m));
    }
  }

  private callExt(qual: string, args: Value[], kwargs: Map<string, Value>): Value {
    const last = qual.split('.').pop()!;
    if (qual === 'functools.partial') return { k: 'partial', fn: args[0] ?? NONE, args: args.slice(1), kwargs };
    // nn.Transformer's _get_clones: ModuleList([copy.deepcopy(layer) for _ in range(N)]) builds N layers.
    if (qual === 'copy.deepcopy' || qual === 'copy.copy') return args[0] ? this.clone(args[0], new Map()) : NONE;
    if (qual === 'dataclasses.field') {
      const o = this.newObject(undefined, 'dataclasses.field');
      for (const [k, v] of kwargs) o.attrs.set(k, v);
      return o;
    }
    if (qual.startsWith('math.')) {
      const xs = args.map(asNumber);
      if (xs.every((x) => x !== undefined)) {
        const m = Math as unknown as Record<string, unknown>;
        const fn = last === 'prod' ? undefined : m[last];
        if (last === 'prod') return num((xs as number[]).reduce((a, b) => a * b, 1));
        if (typeof fn === 'function') return num((fn as (...a: number[]) => number)(...(xs as number[])));
      }
      return sym(`math.${last}(${args.map(show).join(', ')})`);
    }
    // timm's to_2tuple is tuple(itertools.repeat(x, 2)): image and patch sizes, hence the token count.
    if (qual === 'itertools.repeat') {
      const times = asNumber(args[1] ?? kwargs.get('times') ?? NONE);
      if (times !== undefined && Number.isInteger(times) && times >= 0 && times <= 100000) {
        return { k: 'list', items: Array.from({ length: times }, () => args[0] ?? NONE), tuple: false };
      }
    }
    if (qual === 'torch.linspace' || qual === 'numpy.linspace') {
      const steps = asNumber(args[2] ?? kwargs.get('steps') ?? NONE);
      if (steps !== undefined && steps <= 100000) {
        return { k: 'list', items: Array.from({ length: steps }, (_, i) => sym(`linspace[${i}]`)), tuple: false };
      }
    }
    if (qual.endsWith('Conv1D') || PIXELFLY_CLASSES.has(last) || (qual.startsWith('torch.') && LAYER_CONSTRUCTORS.has(last))) {
      return this.callNativeConstructor(last, args, kwargs);
    }
    if (qual.startsWith('torch.') && SPATIAL_MODULES.test(last)) return this.spatialModule(qual, last, args, kwargs);
    if (qual.startsWith('torch.') && (last === 'Sequential' || last === 'ModuleList')) {
      const items = last === 'Sequential' ? this.sequentialItems(args) : this.iterate(args[0] ?? { k: 'list', items: [], tuple: false }) ?? [];
      return { k: 'list', items: [...items], tuple: false, container: last, weight: this.weight };
    }
    if (qual.startsWith('torch.') && last === 'ModuleDict') {
      const d = args[0];
      return { k: 'dict', map: d?.k === 'dict' ? new Map(d.map) : new Map(), container: 'ModuleDict' };
    }
    if (qual === 'collections.OrderedDict') {
      const map = new Map<string, Value>();
      for (const pair of this.iterate(args[0] ?? NONE) ?? []) {
        const kv = this.iterate(pair);
        if (kv && kv.length === 2) map.set(keyOf(kv[0]), kv[1]);
      }
      return { k: 'dict', map };
    }
    if (/^[A-Z]/.test(last)) {
      // Another module class (LayerNorm, GELU, Dropout, Rearrange, …): an object without matmuls.
      // einops keeps its pattern: a Linear right after a patchifying Rearrange is a patch embedding.
      const o = this.newObject(undefined, qual);
      if (args[0]?.k === 'str') o.attrs.set('pattern', args[0]);
      return o;
    }
    return sym(`${qual.replace(/^torch\.nn\.functional\./, 'F.')}(${args.map(show).join(', ')})`);
  }

  /** A deep copy of modules (new instances, built in the current loop context), sharing everything else. */
  private clone(v: Value, seen: Map<Value, Value>): Value {
    const done = seen.get(v);
    if (done) return done;
    if (v.k === 'obj') {
      const copy = this.newObject(v.cls, v.native);
      seen.set(v, copy);
      copy.layers.push(...v.layers.map((l) => ({ ...l, weight: this.weight })));
      for (const [k, a] of v.attrs) copy.attrs.set(k, this.clone(a, seen));
      return copy;
    }
    if (v.k === 'list') {
      const copy: Value = { ...v, items: [], weight: v.weight && this.weight };
      seen.set(v, copy);
      copy.items.push(...v.items.map((a) => this.clone(a, seen)));
      return copy;
    }
    if (v.k === 'dict') {
      const copy: Value = { ...v, map: new Map() };
      seen.set(v, copy);
      for (const [k, a] of v.map) copy.map.set(k, this.clone(a, seen));
      return copy;
    }
    return v;
  }

  /** nn.Sequential(a, b) and nn.Sequential(OrderedDict(...)). */
  private sequentialItems(args: Value[]): Value[] {
    if (args.length === 1 && args[0].k === 'dict') return [...args[0].map.values()];
    return args;
  }

  private arg(args: Value[], kwargs: Map<string, Value>, index: number, name: string): Value | undefined {
    return index < args.length ? args[index] : kwargs.get(name);
  }

  /** The constructors whose matmuls the analysis counts; the result is the layer object. */
  callNativeConstructor(name: string, args: Value[], kwargs: Map<string, Value>): Value {
    const obj = this.newObject(undefined, name);
    const a = (i: number, n: string): Value => this.arg(args, kwargs, i, n) ?? sym(n);
    const biasArg = (i: number): boolean => truthy(this.arg(args, kwargs, i, 'bias') ?? bool(true)) !== false;
    const add = (kind: LayerKind, inF: Value, outF: Value, bias: boolean, suffix?: string, extra?: Partial<LayerInst>): void => {
      obj.layers.push({ kind, className: name, inF, outF, bias, sites: [...this.frames], weight: this.weight, suffix, ...extra });
    };
    /** A layer whose first two arguments are its in and out sizes, both kept as attributes. */
    const inOut = (kind: LayerKind, inName: string, outName: string, bias: boolean, extra?: Partial<LayerInst>): void => {
      const i = a(0, inName);
      const o = a(1, outName);
      add(kind, i, o, bias, undefined, extra);
      obj.attrs.set(inName, i);
      obj.attrs.set(outName, o);
    };
    switch (name) {
      case 'Linear':
        inOut('linear', 'in_features', 'out_features', biasArg(2));
        break;
      case 'PixelflyLinear':
      case 'PixelflyPointwiseConv': {
        // The config is keyword-only (block, butterfly_size, …), as pixelfly_torch declares it.
        const cfg: Record<string, Value> = {};
        for (const [k, v] of kwargs) cfg[k] = v;
        inOut('pixelfly', 'in_features', 'out_features', biasArg(2), { pixelfly: cfg, pointwise: name === 'PixelflyPointwiseConv' });
        break;
      }
      case 'Conv1D': {
        // Hugging Face Conv1D(nf, nx): output size first.
        const nf = a(0, 'nf');
        const nx = a(1, 'nx');
        add('hf_conv1d', nx, nf, true);
        obj.attrs.set('nf', nf);
        obj.attrs.set('nx', nx);
        break;
      }
      case 'Conv1d':
      case 'Conv2d':
      case 'Conv3d':
      case 'ConvTranspose1d':
      case 'ConvTranspose2d':
      case 'ConvTranspose3d':
        this.convolution(obj, name, args, kwargs, add);
        break;
      case 'MultiheadAttention': {
        // nn.MultiheadAttention(embed_dim, num_heads, dropout, bias, add_bias_kv, add_zero_attn, kdim, vdim, batch_first, …)
        const e = a(0, 'embed_dim');
        const bias = truthy(this.arg(args, kwargs, 3, 'bias') ?? bool(true)) !== false;
        const keptDense = mhaUnsupported(e, (i, n) => this.arg(args, kwargs, i, n));
        const extra = keptDense ? { keptDense } : undefined;
        add('mha_in', e, e.k === 'num' ? num(3 * e.v) : sym(`3 * ${show(e)}`), bias, 'in_proj', extra);
        add('mha_out', e, e, bias, 'out_proj', extra);
        obj.attrs.set('embed_dim', e);
        break;
      }
      case 'Embedding':
        inOut('embedding', 'num_embeddings', 'embedding_dim', false);
        break;
    }
    return obj;
  }

  /**
   * nn.ConvNd / nn.ConvTransposeNd. A pointwise one (kernel 1, stride 1, one group, no padding) is a
   * linear map over channels; a Conv2d whose kernel equals its stride embeds patches (in = C·k·k);
   * any other is a `conv` layer with in = C·∏kernel / groups, so a GEMM of in × out per output
   * position has its FLOPs (per input position for a transposed one).
   */
  private convolution(
    obj: Extract<Value, { k: 'obj' }>,
    name: string,
    args: Value[],
    kwargs: Map<string, Value>,
    add: (kind: LayerKind, inF: Value, outF: Value, bias: boolean, suffix?: string, extra?: Partial<LayerInst>) => void,
  ): void {
    const transposed = name.startsWith('ConvTranspose');
    const nd = Number(name.slice(-2, -1));
    const get = (i: number, n: string, dflt: Value): Value => this.arg(args, kwargs, i, n) ?? dflt;
    const c = get(0, 'in_channels', sym('in_channels'));
    const o = get(1, 'out_channels', sym('out_channels'));
    const kernelValue = get(2, 'kernel_size', sym('kernel_size'));
    const strideValue = get(3, 'stride', num(1));
    const paddingValue = get(4, 'padding', num(0));
    const outputPaddingValue = transposed ? get(5, 'output_padding', num(0)) : num(0);
    const groupsValue = get(6, 'groups', num(1));
    const biasValue = get(7, 'bias', bool(true));
    const dilationValue = get(transposed ? 8 : 5, 'dilation', num(1));
    for (const [k, v] of [['in_channels', c], ['out_channels', o], ['kernel_size', kernelValue], ['stride', strideValue], ['groups', groupsValue]] as const) obj.attrs.set(k, v);
    const bias = truthy(biasValue) !== false;
    const kernel = perDimension(kernelValue, nd);
    const stride = perDimension(strideValue, nd);
    const dilation = perDimension(dilationValue, nd);
    const outputPadding = perDimension(outputPaddingValue, nd);
    const padding: ConvGeometry['padding'] | undefined = paddingValue.k === 'str' ? (paddingValue.v === 'same' ? 'same' : paddingValue.v === 'valid' ? new Array<number>(nd).fill(0) : undefined) : perDimension(paddingValue, nd);
    const groups = groupsValue.k === 'num' ? groupsValue.v : undefined;
    const conv: ConvGeometry | undefined = kernel && stride && dilation && outputPadding && padding ? { kernel, stride, padding, dilation, transposed, outputPadding } : undefined;
    const all = (xs: number[] | undefined, v: number): boolean => !!xs && xs.every((x) => x === v);
    const noPadding = padding === 'same' ? all(kernel, 1) : all(padding, 0);
    if (!transposed && all(kernel, 1) && all(stride, 1) && all(dilation, 1) && groups === 1 && noPadding) {
      add(nd === 1 ? 'conv1d' : 'conv1x1', c, o, bias, undefined, { conv, pointwise: true });
      return;
    }
    const k = kernel && kernel.every((x) => x === kernel[0]) ? kernel[0] : undefined;
    if (nd === 2 && !transposed && k !== undefined && all(stride, k) && all(dilation, 1) && groups === 1 && noPadding) {
      // Patch embedding: a matmul over non-overlapping k×k patches, in = C·k·k.
      add('patch', c.k === 'num' ? num(c.v * k * k) : sym(`${show(c)} * ${k * k}`), o, bias, undefined, { conv, ...(c.k === 'num' ? { patch: { channels: c.v, kernel: k } } : {}) });
      return;
    }
    const taps = kernel ? kernel.reduce((a, b) => a * b, 1) : undefined;
    const inF =
      c.k === 'num' && taps !== undefined && groups !== undefined
        ? num((c.v * taps) / groups)
        : sym(`${wrap(show(c))} * ${taps ?? `${wrap(show(kernelValue))}**${nd}`}${groups === 1 ? '' : ` / ${wrap(show(groupsValue))}`}`);
    add('conv', inF, o, bias, undefined, { conv });
  }

  /** Pooling and upsampling modules keep the arguments that change the positions after them. */
  private spatialModule(qual: string, last: string, args: Value[], kwargs: Map<string, Value>): Value {
    const o = this.newObject(undefined, qual);
    const names = /^Adaptive/.test(last) ? ['output_size'] : last === 'Upsample' ? ['size', 'scale_factor'] : ['kernel_size', 'stride', 'padding', 'dilation'];
    names.forEach((n, i) => {
      const v = this.arg(args, kwargs, i, n);
      if (v) o.attrs.set(n, v);
    });
    for (const [k, v] of kwargs) if (k === 'ceil_mode') o.attrs.set(k, v);
    return o;
  }

  /** A table entry picked by a key the analysis cannot resolve: every candidate, when they are all callables. */
  private choiceOf(text: string, key: Value, options: Array<{ key: string; value: Value }>): Value | undefined {
    if (key.k !== 'sym' || options.length === 0) return undefined;
    const callable = (v: Value): boolean =>
      v.k === 'class' || v.k === 'func' || v.k === 'partial' || v.k === 'choice' || (v.k === 'ext' && /^[A-Z]/.test(v.qual.split('.').pop() ?? ''));
    if (!options.every((o) => callable(this.deref(o.value)))) return undefined;
    return { k: 'choice', text, options };
  }

  /**
   * Calling a table entry whose key is unknown: the first candidate (the table's default in the
   * libraries that write them, Hugging Face's "eager" first) is built as usual; every other is
   * built too with an instance count of 0, so its layers are listed (where they differ) without
   * counting in the model. Candidates that share __init__ (Hugging Face's attention variants
   * differ only in forward) list the same layers once.
   */
  private callChoice(f: Extract<Value, { k: 'choice' }>, args: Value[], kwargs: Map<string, Value>): Value {
    const [first, ...rest] = f.options;
    const result = this.call(first.value, args, kwargs);
    const built = layerSites(result);
    const same: string[] = [];
    const other: string[] = [];
    const saved = this.weight;
    this.weight = { n: 0, syms: [] };
    try {
      for (const o of rest) {
        const alt = this.call(o.value, args, kwargs);
        const label = `${JSON.stringify(o.key)} (${show(o.value)})`;
        if ([...layerSites(alt)].every((s) => built.has(s))) same.push(label);
        else other.push(label);
        if (result.k !== 'obj' || alt.k !== 'obj') continue;
        for (const [k, v] of alt.attrs) if (!result.attrs.has(k)) result.attrs.set(k, v);
        result.layers.push(...alt.layers);
      }
    } finally {
      this.weight = saved;
    }
    const pin = /([A-Za-z_][A-Za-z0-9_]*)$/.exec(f.text.replace(/\]$/, ''))?.[1];
    const note =
      `${f.text}: the key is not known statically; the model is counted with ${JSON.stringify(first.key)} (${show(first.value)})` +
      (same.length ? `; ${same.join(', ')} build${same.length === 1 ? 's' : ''} the same layers` : '') +
      (other.length ? `; the layers only ${other.join(', ')} would build are listed as not built` : '') +
      (pin ? ` (pin ${pin} to choose)` : '');
    if (!this.notes.includes(note)) this.notes.push(note);
    return result;
  }

  private callNative(f: Extract<Value, { k: 'native' }>, args: Value[], kwargs: Map<string, Value>): Value {
    const self = f.self ? this.deref(f.self) : undefined;
    const name = f.name;
    if (name.startsWith('super:')) {
      const qual = name.slice('super:'.length);
      if (qual.endsWith('.__init__') && self) this.superInit(qual.slice(0, -'.__init__'.length), self, args, kwargs);
      return NONE;
    }
    switch (name) {
      case 'list.append':
        if (self?.k === 'list') self.items.push(args[0] ?? NONE);
        return NONE;
      case 'list.extend':
        if (self?.k === 'list') self.items.push(...(this.iterate(args[0] ?? NONE) ?? []));
        return NONE;
      case 'list.insert':
        if (self?.k === 'list' && args[0]?.k === 'num') self.items.splice(args[0].v, 0, args[1] ?? NONE);
        return NONE;
      case 'list.pop':
        return self?.k === 'list' ? self.items.pop() ?? NONE : NONE;
      case 'list.copy':
        return self?.k === 'list' ? { k: 'list', items: [...self.items], tuple: false } : NONE;
      case 'list.index':
        return sym('index');
      case 'dict.get': {
        const key = args[0] ? keyOf(args[0]) : '';
        const hit = self?.k === 'dict' ? self.map.get(key) : undefined;
        if (hit) return hit;
        // An unknown key may pick any entry (or the default): a choice among the callables.
        const options = self?.k === 'dict' ? [...self.map].map(([k, value]) => ({ key: k, value })) : [];
        if (args[1]) options.push({ key: 'default', value: args[1] });
        return (args[0] && this.choiceOf(`.get(${show(args[0])})`, args[0], options)) || (args[1] ?? NONE);
      }
      case 'dict.setdefault': {
        if (self?.k !== 'dict') return NONE;
        const key = args[0] ? keyOf(args[0]) : '';
        if (!self.map.has(key)) self.map.set(key, args[1] ?? NONE);
        return self.map.get(key)!;
      }
      case 'dict.pop': {
        if (self?.k !== 'dict') return NONE;
        const key = args[0] ? keyOf(args[0]) : '';
        const v = self.map.get(key) ?? args[1] ?? sym(key);
        self.map.delete(key);
        return v;
      }
      case 'dict.items':
        return self?.k === 'dict'
          ? { k: 'list', items: [...self.map].map(([k, v]) => ({ k: 'list', items: [str(k), v], tuple: true }) as Value), tuple: false }
          : NONE;
      case 'dict.keys':
        return self?.k === 'dict' ? { k: 'list', items: [...self.map.keys()].map(str), tuple: false } : NONE;
      case 'dict.values':
        return self?.k === 'dict' ? { k: 'list', items: [...self.map.values()], tuple: false } : NONE;
      case 'dict.copy':
        return self?.k === 'dict' ? { k: 'dict', map: new Map(self.map) } : NONE;
      case 'dict.update':
        if (self?.k === 'dict') {
          if (args[0]?.k === 'dict') for (const [k, v] of args[0].map) self.map.set(k, v);
          for (const [k, v] of kwargs) self.map.set(k, v);
        }
        return NONE;
      case 'module.add_module':
      case 'module.register_module':
        if (self && args[0]?.k === 'str') this.setAttr(self, args[0].v, args[1] ?? NONE);
        return NONE;
      case 'str.format':
        return sym('str');
      case 'str.lower':
        return self?.k === 'str' ? str(self.v.toLowerCase()) : sym('str');
      case 'str.upper':
        return self?.k === 'str' ? str(self.v.toUpperCase()) : sym('str');
      case 'str.startswith':
        return self?.k === 'str' && args[0]?.k === 'str' ? bool(self.v.startsWith(args[0].v)) : sym('bool');
      case 'str.endswith':
        return self?.k === 'str' && args[0]?.k === 'str' ? bool(self.v.endsWith(args[0].v)) : sym('bool');
      case 'str.split':
      case 'str.replace':
      case 'str.join':
        return sym('str');
      default:
        return this.callBuiltin(name, args, kwargs);
    }
  }

  private callBuiltin(name: string, args: Value[], kwargs: Map<string, Value>): Value {
    const nums = args.map(asNumber);
    const allNum = nums.every((x) => x !== undefined) && args.length > 0;
    const symCall = (): Value => sym(`${name}(${args.map(show).join(', ')})`);
    switch (name) {
      case 'int':
        if (args[0]?.k === 'str' && /^-?\d+$/.test(args[0].v)) return num(parseInt(args[0].v, 10));
        return allNum ? num(Math.trunc(nums[0]!)) : args.length ? symInt(args[0]) : num(0);
      case 'float':
        return allNum ? num(nums[0]!) : symCall();
      case 'round':
        if (!allNum) return symCall();
        return args.length > 1 ? num(Number(nums[0]!.toFixed(nums[1]!))) : num(roundHalfEven(nums[0]!));
      case 'abs':
        return allNum ? num(Math.abs(nums[0]!)) : symCall();
      case 'min':
      case 'max': {
        const xs = args.length === 1 ? this.iterate(args[0]) ?? [] : args;
        const ns = xs.map(asNumber);
        if (ns.length && ns.every((x) => x !== undefined)) return num(name === 'min' ? Math.min(...(ns as number[])) : Math.max(...(ns as number[])));
        return sym(`${name}(${xs.map(show).join(', ')})`);
      }
      case 'sum': {
        const xs = this.iterate(args[0] ?? NONE);
        const ns = xs?.map(asNumber);
        if (ns && ns.every((x) => x !== undefined)) return num((ns as number[]).reduce((a, b) => a + b, asNumber(args[1] ?? num(0)) ?? 0));
        return symCall();
      }
      case 'len': {
        const v = this.deref(args[0] ?? NONE);
        if (v.k === 'list') return num(v.items.length);
        if (v.k === 'dict') return num(v.map.size);
        if (v.k === 'str') return num(v.v.length);
        return symCall();
      }
      case 'range': {
        if (!allNum) {
          const [a0, a1] = args;
          const length = args.length === 1 ? show(a0) : `${show(a1)} - ${show(a0)}`;
          return { k: 'sym', text: `range(${args.map(show).join(', ')})`, len: length };
        }
        const [start, stop, step] = args.length === 1 ? [0, nums[0]!, 1] : [nums[0]!, nums[1]!, nums[2] ?? 1];
        const length = step === 0 ? 0 : Math.max(0, Math.ceil((stop - start) / step));
        // A huge range is not materialised: loops over it run once, weighted by its length.
        if (length > 100_000) return { k: 'sym', text: `range(${args.map(show).join(', ')})`, len: String(length) };
        return { k: 'list', items: Array.from({ length }, (_, i) => num(start + i * step)), tuple: false };
      }
      case 'list':
      case 'tuple':
      case 'sorted':
      case 'reversed': {
        if (args.length === 0) return { k: 'list', items: [], tuple: name === 'tuple' };
        const xs = this.iterate(args[0]);
        if (!xs) return args[0];
        const items = name === 'reversed' ? [...xs].reverse() : [...xs];
        return { k: 'list', items, tuple: name === 'tuple' };
      }
      case 'dict': {
        const map = new Map<string, Value>();
        const first = args[0] ? this.deref(args[0]) : undefined;
        if (first?.k === 'dict') for (const [k, v] of first.map) map.set(k, v);
        for (const [k, v] of kwargs) map.set(k, v);
        return { k: 'dict', map };
      }
      case 'zip': {
        const lists = args.map((a) => this.iterate(a));
        if (lists.some((l) => !l)) return symCall();
        const n = Math.min(...lists.map((l) => l!.length));
        return { k: 'list', items: Array.from({ length: n }, (_, i) => ({ k: 'list', items: lists.map((l) => l![i]), tuple: true }) as Value), tuple: false };
      }
      case 'enumerate': {
        const xs = this.iterate(args[0] ?? NONE);
        if (!xs) return symCall();
        return { k: 'list', items: xs.map((x, i) => ({ k: 'list', items: [num(i), x], tuple: true }) as Value), tuple: false };
      }
      case 'isinstance': {
        const v = this.deref(args[0] ?? NONE);
        const t = args[1] ? this.deref(args[1]) : NONE;
        const types = t.k === 'list' ? t.items.map((x) => show(this.deref(x))) : [show(t)];
        if (v.k === 'sym') return symCall();
        const pyType = v.k === 'num' ? (Number.isInteger(v.v) ? 'int' : 'float') : v.k === 'list' ? (v.tuple ? 'tuple' : 'list') : v.k;
        return bool(types.some((x) => x === pyType || x.endsWith(`.${pyType}`) || (x.endsWith('Iterable') && v.k === 'list') || (pyType === 'int' && x === 'float')));
      }
      case 'getattr': {
        const attr = args[1];
        if (attr?.k !== 'str') return args[2] ?? symCall();
        return this.getAttr(args[0] ?? NONE, attr.v) ?? (args[0]?.k === 'sym' ? this.pins.get(attr.v) : undefined) ?? args[2] ?? sym(`${show(args[0] ?? NONE)}.${attr.v}`);
      }
      case 'hasattr': {
        const attr = args[1];
        if (attr?.k !== 'str') return symCall();
        return bool(this.getAttr(args[0] ?? NONE, attr.v) !== undefined);
      }
      case 'setattr':
        if (args[1]?.k === 'str') this.setAttr(args[0] ?? NONE, args[1].v, args[2] ?? NONE);
        return NONE;
      case 'str':
        return args[0]?.k === 'str' ? args[0] : args[0]?.k === 'num' ? str(show(args[0])) : symCall();
      case 'bool': {
        const t = truthy(args[0] ?? NONE);
        return t === undefined ? symCall() : bool(t);
      }
      case 'any':
      case 'all': {
        const xs = this.iterate(args[0] ?? NONE);
        const ts = xs?.map(truthy);
        if (!ts || ts.some((t) => t === undefined)) return symCall();
        return bool(name === 'any' ? ts.some(Boolean) : ts.every(Boolean));
      }
      case 'print':
        return NONE;
      default:
        return symCall();
    }
  }

  // ---------------------------------------------------------------- expressions

  lookup(name: string, scope: Scope): Value | undefined {
    for (let s: Scope | undefined = scope; s; s = s.parent) {
      if (s.kind === 'class' && s !== scope) continue;
      const v = s.vars.get(name);
      if (v) {
        if (v.k === 'lazy') {
          const d = this.deref(v);
          s.vars.set(name, d);
          return d;
        }
        return v;
      }
    }
    const g = this.moduleGlobal(scope.module, name);
    if (g) {
      if (this.pins.has(name) && isScalar(g)) return this.pins.get(name);
      const d = this.deref(g);
      if (g.k === 'lazy') scope.module.globals.set(name, d);
      return d;
    }
    if (BUILTINS.has(name)) return { k: 'native', name };
    return undefined;
  }

  eval(node: PyNode, scope: Scope): Value {
    this.tick();
    switch (node.type) {
      case 'integer': {
        const t = node.text.replace(/_/g, '').toLowerCase();
        const v = t.startsWith('0x') ? parseInt(t, 16) : t.startsWith('0o') ? parseInt(t.slice(2), 8) : t.startsWith('0b') ? parseInt(t.slice(2), 2) : Number(t.replace(/l$/, ''));
        return num(v);
      }
      case 'float':
        return num(Number(node.text.replace(/_/g, '')));
      case 'true':
        return bool(true);
      case 'false':
        return bool(false);
      case 'none':
        return NONE;
      case 'string':
        return stringValue(node);
      case 'concatenated_string': {
        const parts = node.children.map(stringValue);
        return parts.every((p) => p.k === 'str') ? str(parts.map((p) => (p as { v: string }).v).join('')) : sym('str');
      }
      case 'identifier': {
        const v = this.lookup(node.text, scope);
        if (v) return v;
        return this.pins.get(node.text) ?? sym(node.text);
      }
      case 'attribute': {
        const objNode = node.field('object')!;
        const name = node.field('attribute')!.text;
        const obj = this.deref(this.eval(objNode, scope));
        const v = this.getAttr(obj, name);
        if (v) return v;
        if (obj.k === 'obj' || obj.k === 'sym' || obj.k === 'class' || obj.k === 'pymod') {
          return this.pins.get(name) ?? sym(node.text);
        }
        return sym(node.text);
      }
      case 'parenthesized_expression':
        return node.children[0] ? this.eval(node.children[0], scope) : NONE;
      case 'binary_operator': {
        const op = node.field('operator')!.type;
        return this.binary(op, this.eval(node.field('left')!, scope), this.eval(node.field('right')!, scope), node.text);
      }
      case 'unary_operator': {
        const op = node.field('operator')!.type;
        const v = this.eval(node.field('argument')!, scope);
        if (v.k === 'num') return num(op === '-' ? -v.v : op === '~' ? ~v.v : v.v);
        return sym(node.text);
      }
      case 'not_operator': {
        const t = truthy(this.eval(node.field('argument')!, scope));
        return t === undefined ? sym(node.text) : bool(!t);
      }
      case 'boolean_operator': {
        const op = node.field('operator')!.type;
        const left = this.eval(node.field('left')!, scope);
        const t = truthy(left);
        if (op === 'or') {
          if (t === true) return left;
          if (t === false) return this.eval(node.field('right')!, scope);
          return left;
        }
        if (t === false) return left;
        if (t === true) return this.eval(node.field('right')!, scope);
        return sym(node.text);
      }
      case 'comparison_operator':
        return this.compare(node, scope);
      case 'conditional_expression': {
        const [a, cond, b] = node.children;
        const t = truthy(this.eval(cond, scope));
        return t === true ? this.eval(a, scope) : this.eval(b, scope);
      }
      case 'call':
        return this.evalCall(node, scope);
      case 'list':
      case 'tuple':
      case 'set':
      case 'expression_list': {
        const items: Value[] = [];
        for (const c of node.children) {
          if (c.type === 'list_splat') items.push(...(this.iterate(this.eval(c.children[0], scope)) ?? []));
          else items.push(this.eval(c, scope));
        }
        return { k: 'list', items, tuple: node.type !== 'list' };
      }
      case 'dictionary': {
        const map = new Map<string, Value>();
        for (const c of node.children) {
          if (c.type === 'pair') map.set(keyOf(this.eval(c.field('key')!, scope)), this.eval(c.field('value')!, scope));
          else if (c.type === 'dictionary_splat') {
            const d = this.deref(this.eval(c.children[0], scope));
            if (d.k === 'dict') for (const [k, v] of d.map) map.set(k, v);
          }
        }
        return { k: 'dict', map };
      }
      case 'list_comprehension':
      case 'generator_expression':
      case 'set_comprehension':
      case 'dictionary_comprehension':
        return this.comprehension(node, scope);
      case 'subscript': {
        const container = this.deref(this.eval(node.field('value')!, scope));
        const subs = node.fieldAll('subscript');
        if (subs.length !== 1) return sym(node.text);
        if (subs[0].type === 'slice') {
          if (container.k !== 'list') return sym(node.text);
          const [s, e] = sliceBounds(subs[0], container.items.length, (n) => this.eval(n, scope));
          return { k: 'list', items: container.items.slice(s, e), tuple: container.tuple };
        }
        const key = this.eval(subs[0], scope);
        if (container.k === 'dict') {
          return container.map.get(keyOf(key)) ?? this.choiceOf(node.text, key, [...container.map].map(([k, value]) => ({ key: k, value }))) ?? sym(node.text);
        }
        if (container.k === 'list' && key.k === 'num') {
          const i = key.v < 0 ? container.items.length + key.v : key.v;
          return container.items[i] ?? sym(node.text);
        }
        if (container.k === 'list') return this.choiceOf(node.text, key, container.items.map((value, i) => ({ key: String(i), value }))) ?? sym(node.text);
        return sym(node.text);
      }
      case 'lambda': {
        const fn: FuncInfo = { name: '<lambda>', node, module: scope.module, closure: scope.kind === 'function' ? scope : undefined, decorators: [] };
        return { k: 'func', fn };
      }
      case 'keyword_argument':
        return this.eval(node.field('value')!, scope);
      case 'named_expression': {
        const v = this.eval(node.field('value')!, scope);
        this.assign(node.field('name')!, v, scope);
        return v;
      }
      case 'await':
        return node.children[0] ? this.eval(node.children[0], scope) : NONE;
      default:
        return sym(node.text);
    }
  }

  private compare(node: PyNode, scope: Scope): Value {
    const operands = node.children;
    const ops = node.fieldAll('operators').map((o) => o.type);
    let left = this.eval(operands[0], scope);
    for (let i = 0; i < ops.length; i++) {
      const right = this.eval(operands[i + 1], scope);
      const r = compareValues(ops[i], left, right);
      if (r === undefined) return sym(node.text);
      if (!r) return bool(false);
      left = right;
    }
    return bool(true);
  }

  private comprehension(node: PyNode, scope: Scope): Value {
    const inner: Scope = { vars: new Map(), parent: scope, module: scope.module, kind: 'function', selfValue: scope.selfValue, methodOwner: scope.methodOwner };
    const clauses = node.children.filter((c) => c.type === 'for_in_clause' || c.type === 'if_clause');
    const body = node.field('body')!;
    const items: Value[] = [];
    const map = new Map<string, Value>();
    const run = (ci: number): boolean => {
      if (ci === clauses.length) {
        if (body.type === 'pair') map.set(keyOf(this.eval(body.field('key')!, inner)), this.eval(body.field('value')!, inner));
        else items.push(this.eval(body, inner));
        return true;
      }
      const c = clauses[ci];
      if (c.type === 'if_clause') {
        const t = truthy(this.eval(c.children[0], inner));
        return t === false ? true : run(ci + 1);
      }
      const iterable = this.eval(c.field('right')!, inner);
      const left = c.field('left')!;
      this.loop(iterable, (item) => {
        this.assign(left, item, inner);
        return run(ci + 1);
      });
      return true;
    };
    run(0);
    if (node.type === 'dictionary_comprehension') return { k: 'dict', map };
    return { k: 'list', items, tuple: node.type === 'generator_expression' };
  }

  private evalCall(node: PyNode, scope: Scope): Value {
    const fnNode = node.field('function')!;
    const argsNode = node.field('arguments');
    if (fnNode.type === 'identifier' && fnNode.text === 'super') {
      const self = this.lookup('self', scope) ?? scope.selfValue;
      let owner: ClassInfo | undefined;
      for (let s: Scope | undefined = scope; s && !owner; s = s.parent) owner = s.methodOwner;
      if (!self || !owner) return sym('super()');
      return { k: 'super', self, after: owner };
    }
    const fn = this.eval(fnNode, scope);
    const args: Value[] = [];
    const kwargs = new Map<string, Value>();
    if (argsNode?.type === 'generator_expression') args.push(this.eval(argsNode, scope));
    else {
      for (const a of argsNode?.children ?? []) {
        if (a.type === 'keyword_argument') kwargs.set(a.field('name')!.text, this.eval(a.field('value')!, scope));
        else if (a.type === 'list_splat') {
          const v = this.eval(a.children[0], scope);
          const xs = this.iterate(v);
          if (xs) args.push(...xs);
          else args.push(v);
        } else if (a.type === 'dictionary_splat') {
          const d = this.deref(this.eval(a.children[0], scope));
          if (d.k === 'dict') for (const [k, v] of d.map) kwargs.set(k, v);
        } else if (a.type !== 'comment') args.push(this.eval(a, scope));
      }
    }
    const d = this.deref(fn);
    if (d.k === 'sym') return sym(node.text.length <= 80 ? node.text : `${fnNode.text}(…)`);
    return this.call(d, args, kwargs, node, scope.module);
  }

  binary(op: string, a: Value, b: Value, text: string): Value {
    a = this.deref(a);
    b = this.deref(b);
    if ((a.k === 'num' || a.k === 'bool') && (b.k === 'num' || b.k === 'bool')) {
      const x = asNumber(a)!;
      const y = asNumber(b)!;
      switch (op) {
        case '+': return num(x + y);
        case '-': return num(x - y);
        case '*': return num(x * y);
        case '/': return y === 0 ? sym(text) : num(x / y);
        case '//': return y === 0 ? sym(text) : num(Math.floor(x / y));
        case '%': return y === 0 ? sym(text) : num(((x % y) + y) % y);
        case '**': return num(x ** y);
        case '<<': return num(x << y);
        case '>>': return num(x >> y);
        case '&': return num(x & y);
        case '|': return num(x | y);
        case '^': return num(x ^ y);
      }
    }
    if (op === '+' && a.k === 'str' && b.k === 'str') return str(a.v + b.v);
    if (op === '+' && a.k === 'list' && b.k === 'list') return { k: 'list', items: [...a.items, ...b.items], tuple: a.tuple };
    if (op === '*' && a.k === 'list' && b.k === 'num') return { k: 'list', items: Array.from({ length: b.v }, () => a.items).flat(), tuple: a.tuple };
    if (op === '|' && a.k === 'dict' && b.k === 'dict') return { k: 'dict', map: new Map([...a.map, ...b.map]) };
    if (op === '%' && a.k === 'str') return sym('str');
    // Keep the symbolic expression readable: resolved operands print as numbers.
    return sym(`${wrap(show(a))} ${op} ${wrap(show(b))}`);
  }
}

/**
 * Why pixelfly_torch cannot make an nn.MultiheadAttention's projections Pixelfly (its
 * PixelflyMultiheadAttention, as `mha_unsupported` says), or undefined when it can.
 */
function mhaUnsupported(embed: Value, arg: (i: number, name: string) => Value | undefined): string | undefined {
  const cannot = "which pixelfly_torch's PixelflyMultiheadAttention does not support, so sparsify cannot replace its projections";
  for (const [i, name] of [[6, 'kdim'], [7, 'vdim']] as const) {
    const v = arg(i, name);
    if (v && v.k !== 'none' && !(v.k === 'num' && embed.k === 'num' && v.v === embed.v)) return `this nn.MultiheadAttention has ${name}=${show(v)} (not embed_dim), ${cannot}`;
  }
  for (const [i, name] of [[4, 'add_bias_kv'], [5, 'add_zero_attn']] as const) {
    const v = arg(i, name);
    if (v && truthy(v) !== false) return `this nn.MultiheadAttention has ${name}=${show(v)}, ${cannot}`;
  }
  return undefined;
}

/** Where the layers reachable from a value are constructed (for comparing table candidates). */
function layerSites(v: Value, seen = new Set<Value>(), out = new Set<string>()): Set<string> {
  if (seen.has(v) || seen.size > 10000) return out;
  seen.add(v);
  if (v.k === 'obj') {
    for (const l of v.layers) {
      const site = l.sites[l.sites.length - 1];
      out.add(`${site?.module.path}:${site?.node.startIndex}:${l.kind}:${l.suffix ?? ''}`);
    }
    for (const a of v.attrs.values()) layerSites(a, seen, out);
  } else if (v.k === 'list') v.items.forEach((a) => layerSites(a, seen, out));
  else if (v.k === 'dict') for (const a of v.map.values()) layerSites(a, seen, out);
  return out;
}

/** Which top-level statements bind each name (compound statements under every name they bind). */
function bindingIndex(root: PyNode): Map<string, PyNode[]> {
  const index = new Map<string, PyNode[]>();
  const add = (name: string, stmt: PyNode): void => {
    const list = index.get(name);
    if (!list) index.set(name, [stmt]);
    else if (list[list.length - 1] !== stmt) list.push(stmt);
  };
  const targets = (n: PyNode, stmt: PyNode): void => {
    if (n.type === 'identifier') add(n.text, stmt);
    else if (['pattern_list', 'tuple_pattern', 'list_pattern', 'expression_list', 'tuple', 'list', 'parenthesized_expression', 'list_splat_pattern'].includes(n.type)) {
      n.children.forEach((c) => targets(c, stmt));
    }
  };
  const bindings = (n: PyNode, stmt: PyNode): void => {
    switch (n.type) {
      case 'class_definition':
      case 'function_definition':
        add(n.field('name')!.text, stmt);
        return;
      case 'decorated_definition':
        if (n.field('definition')) bindings(n.field('definition')!, stmt);
        return;
      case 'import_statement':
        for (const x of n.fieldAll('name')) add(x.type === 'aliased_import' ? x.field('alias')!.text : x.text.split('.')[0], stmt);
        return;
      case 'import_from_statement':
        for (const x of n.fieldAll('name')) add(x.type === 'aliased_import' ? x.field('alias')!.text : x.text, stmt);
        return;
      case 'expression_statement':
        for (const e of n.children) {
          for (let a: PyNode | undefined = e; a && (a.type === 'assignment' || a.type === 'augmented_assignment'); a = a.field('right')) {
            targets(a.field('left')!, stmt);
          }
        }
        return;
      default:
        // if / try / with / for at top level: every name bound anywhere inside.
        for (const c of n.children) if (c.type === 'block' || /clause$/.test(c.type) || c.type.endsWith('_statement') || c.type.endsWith('_definition')) bindings(c, stmt);
    }
  };
  for (const stmt of root.children) {
    if (stmt.type === 'block' || stmt.type === 'comment') continue;
    bindings(stmt, stmt);
  }
  return index;
}

const BUILTINS = new Set([
  'int', 'float', 'round', 'abs', 'min', 'max', 'sum', 'len', 'range', 'list', 'tuple', 'dict', 'zip', 'enumerate',
  'isinstance', 'getattr', 'hasattr', 'setattr', 'str', 'bool', 'any', 'all', 'print', 'sorted', 'reversed',
]);

function isScalar(v: Value): boolean {
  return v.k === 'num' || v.k === 'str' || v.k === 'bool' || v.k === 'none' || v.k === 'sym';
}

function wrap(s: string): string {
  return /^[\w.[\]()]+$/.test(s) || /^\(.*\)$/.test(s) ? s : `(${s})`;
}

function symLength(v: Extract<Value, { k: 'sym' }>): string {
  return v.len ?? `len(${v.text})`;
}

function symInt(v: Value): Value {
  return sym(`int(${show(v)})`);
}

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export function keyOf(v: Value): string {
  if (v.k === 'str') return v.v;
  return show(v);
}

function stringValue(node: PyNode): Value {
  if (node.children.some((c) => c.type === 'interpolation')) return sym(node.text);
  const content = node.children.filter((c) => c.type === 'string_content').map((c) => c.text).join('');
  return str(content);
}

function sliceBounds(slice: PyNode, length: number, ev: (n: PyNode) => Value): [number, number] {
  // slice children: [start] ':' [stop] — only named children are kept, so look at the colon position in text.
  const text = slice.text;
  const colon = text.indexOf(':');
  let start = 0;
  let stop = length;
  for (const c of slice.children) {
    const v = asNumber(ev(c));
    if (v === undefined) continue;
    const at = c.startIndex - slice.startIndex;
    if (at < colon) start = v < 0 ? length + v : v;
    else stop = v < 0 ? length + v : v;
  }
  return [start, stop];
}

function compareValues(op: string, a: Value, b: Value): boolean | undefined {
  if (op === 'is' || op === 'is not') {
    if (a.k === 'sym' || b.k === 'sym') return undefined;
    const same = a.k === b.k && (a.k !== 'num' || (b as { v: number }).v === a.v) && (a.k !== 'str' || (b as { v: string }).v === a.v);
    return op === 'is' ? same : !same;
  }
  if (op === 'in' || op === 'not in') {
    if (b.k === 'list') {
      if (a.k === 'sym' || b.items.some((x) => x.k === 'sym')) return undefined;
      const found = b.items.some((x) => show(x) === show(a));
      return op === 'in' ? found : !found;
    }
    if (b.k === 'dict' && a.k !== 'sym') return op === 'in' ? b.map.has(keyOf(a)) : !b.map.has(keyOf(a));
    if (b.k === 'str' && a.k === 'str') return op === 'in' ? b.v.includes(a.v) : !b.v.includes(a.v);
    return undefined;
  }
  if (a.k === 'sym' || b.k === 'sym') return undefined;
  if (op === '==' || op === '!=') {
    const eq = show(a) === show(b) || (asNumber(a) !== undefined && asNumber(a) === asNumber(b));
    return op === '==' ? eq : !eq;
  }
  const x = asNumber(a);
  const y = asNumber(b);
  if (x === undefined || y === undefined) return undefined;
  switch (op) {
    case '<': return x < y;
    case '<=': return x <= y;
    case '>': return x > y;
    case '>=': return x >= y;
  }
  return undefined;
}

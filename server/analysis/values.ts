/**
 * Values of the static interpreter: Python values where they are known, symbolic text where
 * they are not (so that an unresolved size prints as `config.n_embd * 4`, not as "unknown").
 */
import type { PyNode } from './ast';

export interface ModuleInfo {
  /** Dotted module name ('' for the file being analysed when it is not on a search path). */
  name: string;
  path: string;
  source: string;
  root: PyNode;
  globals: Map<string, Value>;
  /** Library code (stubs, --path directories, site-packages): layers built there are reported at the user's call site. */
  library: boolean;
  /**
   * 'lazy': an imported module whose top-level statements run one name at a time, when that name
   * is first used (importing a large library costs what the model uses of it, not the whole package).
   */
  state: 'new' | 'loading' | 'done' | 'lazy';
  /** Lazy modules: the top-level statements that bind each name, and those already run. */
  index?: Map<string, PyNode[]>;
  executed?: Set<PyNode>;
  /** For `from . import x` inside a package's __init__.py. */
  isPackage: boolean;
}

export interface FuncInfo {
  name: string;
  node: PyNode; // function_definition or lambda
  module: ModuleInfo;
  closure: Scope | undefined;
  decorators: string[];
  /** The class whose body defines it (for zero-argument super()). */
  owner?: ClassInfo;
}

export interface ClassInfo {
  name: string;
  node: PyNode;
  module: ModuleInfo;
  bases: Value[];
  attrs: Map<string, Value>;
  dataclass: boolean;
  /** Annotated class-body names in order (dataclass fields), with their default expressions' values. */
  fields: Array<{ name: string; default: Value | undefined }>;
}

/** How many times an object is built: n × the product of symbolic factors (loops over unresolved ranges). */
export interface Weight {
  n: number;
  syms: string[];
}

/**
 * conv1d / conv1x1: pointwise convolutions (a linear map over channels at every position); patch:
 * a Conv2d whose kernel equals its stride (a matmul over non-overlapping patches); conv: any other
 * convolution (spatial kernel, stride, groups, padding, transposed), counted but never replaced;
 * attn_core: an attention layer's QKᵀ and scores·V products (a row the analysis adds, not a module).
 */
export type LayerKind = 'linear' | 'conv1d' | 'hf_conv1d' | 'conv1x1' | 'patch' | 'conv' | 'mha_in' | 'mha_out' | 'embedding' | 'pixelfly' | 'attn_core';

/** A convolution's (or pooling's) geometry per spatial dimension, when every number is known. */
export interface ConvGeometry {
  kernel: number[];
  stride: number[];
  /** 'same' keeps the size (stride 1). */
  padding: number[] | 'same';
  dilation: number[];
  transposed: boolean;
  outputPadding: number[];
}

export interface Site {
  module: ModuleInfo;
  node: PyNode;
}

export interface LayerInst {
  kind: LayerKind;
  /** Python class the user wrote (nn.Linear, Conv1D, …). */
  className: string;
  inF: Value;
  outF: Value;
  bias: boolean;
  /** Call stack of call sites, outermost first; the last is the constructor call itself. */
  sites: Site[];
  weight: Weight;
  /** Keyword arguments of an existing PixelflyLinear (block, butterfly_size, …). */
  pixelfly?: Record<string, Value>;
  /** Sub-layer name appended to the module path (MultiheadAttention's in_proj/out_proj). */
  suffix?: string;
  /** Patch embeddings: input channels and kernel side (for the engine's model spec). */
  patch?: { channels: number; kernel: number };
  /** Convolutions: the geometry that maps input positions to output positions. */
  conv?: ConvGeometry;
  /** Pointwise convolutions (conv1d, conv1x1, or a PixelflyPointwiseConv): the quick fix writes PixelflyPointwiseConv. */
  pointwise?: boolean;
  /** Built by a user subclass of the layer class (its name). */
  subclass?: string;
  /** Why the layer must stay dense whatever the plan (an nn.MultiheadAttention pixelfly_torch cannot replace). */
  keptDense?: string;
}

export interface Scope {
  vars: Map<string, Value>;
  parent: Scope | undefined;
  module: ModuleInfo;
  kind: 'module' | 'function' | 'class';
  /** For super(): the class whose method is running and its self. */
  selfValue?: Value;
  methodOwner?: ClassInfo;
}

export type Value =
  | { k: 'num'; v: number }
  | { k: 'str'; v: string }
  | { k: 'bool'; v: boolean }
  | { k: 'none' }
  | { k: 'sym'; text: string; /** Symbolic length when this stands for an iterable (range(depth)). */ len?: string }
  | {
      k: 'list';
      items: Value[];
      tuple: boolean;
      container?: 'ModuleList' | 'Sequential';
      /** Containers: how many times built (like an object's weight), and the factory function that returned it. */
      weight?: Weight;
      label?: string;
    }
  | { k: 'dict'; map: Map<string, Value>; container?: 'ModuleDict' }
  | { k: 'class'; cls: ClassInfo }
  | { k: 'func'; fn: FuncInfo; self?: Value }
  | { k: 'native'; name: string; self?: Value }
  | { k: 'ext'; qual: string }
  | { k: 'partial'; fn: Value; args: Value[]; kwargs: Map<string, Value> }
  | { k: 'obj'; id: number; cls?: ClassInfo; native?: string; attrs: Map<string, Value>; layers: LayerInst[]; weight: Weight }
  | { k: 'pymod'; mod: ModuleInfo }
  | { k: 'lazy'; load: () => Value }
  | { k: 'super'; self: Value; after: ClassInfo }
  /**
   * One of several callables picked from a table by a key the analysis cannot resolve
   * (`ATTENTION_CLASSES[config.attn_implementation]`): calling it builds every candidate.
   */
  | { k: 'choice'; text: string; options: Array<{ key: string; value: Value }> };

export const NONE: Value = { k: 'none' };
export const num = (v: number): Value => ({ k: 'num', v });
export const str = (v: string): Value => ({ k: 'str', v });
export const bool = (v: boolean): Value => ({ k: 'bool', v });
export const sym = (text: string): Value => ({ k: 'sym', text });

/** Python-ish source text of a value, for symbolic expressions and display. */
export function show(v: Value): string {
  switch (v.k) {
    case 'num':
      return Number.isInteger(v.v) ? String(v.v) : String(Number(v.v.toPrecision(6)));
    case 'str':
      return JSON.stringify(v.v);
    case 'bool':
      return v.v ? 'True' : 'False';
    case 'none':
      return 'None';
    case 'sym':
      return v.text;
    case 'list': {
      const inner = v.items.map(show).join(', ');
      return v.tuple ? `(${inner}${v.items.length === 1 ? ',' : ''})` : `[${inner}]`;
    }
    case 'dict':
      return `{${[...v.map].map(([k, x]) => `${JSON.stringify(k)}: ${show(x)}`).join(', ')}}`;
    case 'class':
      return v.cls.name;
    case 'func':
      return v.fn.name;
    case 'native':
      return v.name.split('.').pop() ?? v.name;
    case 'ext':
      return v.qual;
    case 'partial':
      return `partial(${show(v.fn)})`;
    case 'obj':
      return v.cls?.name ?? v.native ?? 'object';
    case 'pymod':
      return v.mod.name;
    case 'lazy':
      return '…';
    case 'super':
      return 'super()';
    case 'choice':
      return v.text;
  }
}

/** Truthiness where it is known; undefined for symbolic values. */
export function truthy(v: Value): boolean | undefined {
  switch (v.k) {
    case 'num':
      return v.v !== 0;
    case 'str':
      return v.v.length > 0;
    case 'bool':
      return v.v;
    case 'none':
      return false;
    case 'list':
      return v.items.length > 0;
    case 'dict':
      return v.map.size > 0;
    case 'sym':
    case 'lazy':
      return undefined;
    default:
      return true;
  }
}

export function asNumber(v: Value): number | undefined {
  if (v.k === 'num') return v.v;
  if (v.k === 'bool') return v.v ? 1 : 0;
  return undefined;
}

export function weightText(w: Weight): string {
  if (w.syms.length === 0) return String(w.n);
  const factors = w.n === 1 ? w.syms : [String(w.n), ...w.syms];
  return factors.join(' * ');
}

/** A convolution argument per spatial dimension: an int for all of them, or a tuple of ints. */
export function perDimension(v: Value, nd: number): number[] | undefined {
  if (v.k === 'num' && Number.isInteger(v.v)) return new Array<number>(nd).fill(v.v);
  if (v.k === 'list' && v.items.length === nd && v.items.every((x) => x.k === 'num' && Number.isInteger(x.v))) return v.items.map((x) => (x as { v: number }).v);
  return undefined;
}

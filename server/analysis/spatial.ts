/**
 * Where each convolution runs: the positions (pixels of its output feature map, or samples along
 * a sequence) it computes per sample, so a CNN's FLOPs and shares come out right. The model's
 * modules are visited in the order their constructors assigned them — the order most models run
 * them in — carrying the feature map's size from the input image through every convolution,
 * pooling and upsampling module. Two conventions of real code are read:
 * - a residual branch (`shortcut`, `skip`, and a `downsample` built after the main path already
 *   strided, as in torchvision's ResNet blocks) sees the block's input, not the main path's output;
 * - a module that pools to a fixed size inside a block (squeeze-and-excitation gates) does not
 *   shrink what follows it: the block's main path keeps its size.
 * Operations written only in forward (F.max_pool2d, x[:, :, ::2]) are not seen.
 */
import { asNumber, perDimension, type ConvGeometry, type LayerInst, type Value } from './values';

/** Feature-map sides per number of spatial dimensions (1: a sequence, 2: an image, 3: a volume). */
export type Sides = Partial<Record<1 | 2 | 3, number[]>>;

const BRANCH = /^(shortcut|short_cut|skip|skip_connection|residual|res_branch|identity)$/i;
const DOWNSAMPLE = /^(downsample|down_sample|downsample_layer)$/i;

function product(xs: number[]): number {
  return xs.reduce((a, b) => a * b, 1);
}

/** Output sides of a convolution (PyTorch's formulas), at least 1 each. */
export function convOutput(g: ConvGeometry, input: number[]): number[] {
  return input.map((n, i) => {
    const k = g.kernel[i];
    const s = g.stride[i];
    const d = g.dilation[i];
    if (g.transposed) {
      const p = g.padding === 'same' ? 0 : g.padding[i];
      return Math.max(1, (n - 1) * s - 2 * p + d * (k - 1) + g.outputPadding[i] + 1);
    }
    if (g.padding === 'same') return n;
    return Math.max(1, Math.floor((n + 2 * g.padding[i] - d * (k - 1) - 1) / s) + 1);
  });
}

/** A pooling or upsampling module's output sides; undefined when it changes nothing known. */
function spatialOutput(native: string, attrs: Map<string, Value>, input: number[]): { sides: number[]; adaptive: boolean } | undefined {
  const nd = input.length;
  const dims = (name: string): number[] | undefined => {
    const v = attrs.get(name);
    return v ? perDimension(v, nd) : undefined;
  };
  if (/Adaptive\w+Pool\dd$/.test(native)) {
    const v = attrs.get('output_size');
    // Entries may be None (keep that side).
    const out = v?.k === 'list' ? v.items.map((x, i) => asNumber(x) ?? input[i]) : v ? perDimension(v, nd) : undefined;
    return out && out.length === nd ? { sides: out, adaptive: true } : undefined;
  }
  if (/Upsample$/.test(native)) {
    const size = dims('size');
    if (size) return { sides: size, adaptive: false };
    const f = attrs.get('scale_factor');
    const factors = f?.k === 'num' ? new Array<number>(nd).fill(f.v) : f?.k === 'list' ? f.items.map((x) => asNumber(x) ?? 1) : undefined;
    return factors ? { sides: input.map((n, i) => Math.floor(n * factors[i])), adaptive: false } : undefined;
  }
  const kernel = dims('kernel_size');
  if (!kernel) return undefined;
  const strideValue = attrs.get('stride');
  const stride = strideValue && strideValue.k !== 'none' ? perDimension(strideValue, nd) : kernel;
  const padding = attrs.has('padding') ? dims('padding') : new Array<number>(nd).fill(0);
  const dilation = attrs.has('dilation') ? dims('dilation') : new Array<number>(nd).fill(1);
  if (!stride || !padding || !dilation) return undefined;
  const ceil = attrs.get('ceil_mode')?.k === 'bool' && (attrs.get('ceil_mode') as { v: boolean }).v;
  const sides = input.map((n, i) => {
    const span = n + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1;
    return Math.max(1, (ceil ? Math.ceil(span / stride[i]) : Math.floor(span / stride[i])) + 1);
  });
  return { sides, adaptive: false };
}

function same(a: Sides, b: Sides): boolean {
  return ([1, 2, 3] as const).every((nd) => (a[nd] ?? []).join() === (b[nd] ?? []).join());
}

/**
 * Positions per sample of every convolution reachable from `root` whose geometry is known: output
 * positions for a convolution, input positions for a transposed one (its GEMM runs per input).
 */
export function convPositions(root: Value | undefined, start: Sides): Map<LayerInst, number> {
  const out = new Map<LayerInst, number>();
  const seen = new Set<Value>();
  /** The sides after `v`, and whether it pooled to a fixed size (an adaptive pool as its own step). */
  const visit = (v: Value, sides: Sides, depth: number): { sides: Sides; adaptive: boolean } => {
    if (depth > 64 || seen.has(v) || (v.k !== 'obj' && v.k !== 'list' && v.k !== 'dict')) return { sides, adaptive: false };
    seen.add(v);
    let cur = sides;
    if (v.k === 'obj') {
      for (const layer of v.layers) {
        const g = layer.conv;
        const nd = g?.kernel.length as 1 | 2 | 3 | undefined;
        const input = nd && cur[nd];
        if (!g || !nd || !input) continue;
        const output = convOutput(g, input);
        out.set(layer, product(g.transposed ? input : output));
        cur = { ...cur, [nd]: output };
      }
      if (v.native && /(Pool\dd|Upsample)$/.test(v.native)) {
        const nd = Number(/(\d)d$/.exec(v.native)?.[1] ?? 2) as 1 | 2 | 3;
        const input = cur[nd];
        const r = input ? spatialOutput(v.native, v.attrs, input) : undefined;
        return r ? { sides: { ...cur, [nd]: r.sides }, adaptive: r.adaptive } : { sides: cur, adaptive: false };
      }
      if (v.native) return { sides: cur, adaptive: false };
    }
    const children = v.k === 'obj' ? [...v.attrs] : v.k === 'list' ? v.items.map((x, i) => [String(i), x] as const) : [...v.map];
    const entry = cur;
    let gated = false;
    for (const [key, child] of children) {
      if (child.k !== 'obj' && child.k !== 'list' && child.k !== 'dict') continue;
      if (BRANCH.test(key) || (DOWNSAMPLE.test(key) && !same(cur, entry))) {
        visit(child, entry, depth + 1);
        continue;
      }
      const r = visit(child, cur, depth + 1);
      cur = r.sides;
      gated ||= r.adaptive;
    }
    // A module (not a container) that pooled to a fixed size inside is a gate or a head: what
    // follows it in its parent keeps the parent's size.
    if (gated && v.k === 'obj' && depth > 0) return { sides: entry, adaptive: false };
    return { sides: cur, adaptive: false };
  };
  if (root) visit(root, start, 0);
  return out;
}

/**
 * Dataset loaders for the engine: decode files in TypeScript (where a clear error naming the file
 * and the problem is easy), then hand the engine flat typed arrays once.
 *   - synthetic: seeded, always available (classification for mlp/mixer/vit, a Markov-chain token
 *     stream for gpt);
 *   - Fashion-MNIST from IDX files, gzip or not (Debian's dataset-fashion-mnist or a user folder);
 *   - a character-level corpus from any UTF-8 text file;
 *   - user arrays from .npy files (x.npy, y.npy, optional x_test.npy / y_test.npy).
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { FileRefusedError, formatBytes, readDataFile } from '../io/userFile';

export interface ClassificationData {
  kind: 'classification';
  name: string;
  features: number;
  classes: number;
  /** x·scale + shift is what the model sees (bytes stay bytes in memory). */
  scale: number;
  shift: number;
  trainX: Uint8Array | Float32Array;
  trainY: Int32Array;
  testX: Uint8Array | Float32Array;
  testY: Int32Array;
}

export interface TokenData {
  kind: 'tokens';
  name: string;
  /** Vocabulary size. */
  classes: number;
  /** For a text corpus: the characters, id i = vocab[i]. */
  vocab?: string[];
  trainTokens: Int32Array;
  testTokens: Int32Array;
}

export type LoadedData = ClassificationData | TokenData;

/** A file that cannot be used as data: the message names the file and the problem. */
export class DataFileError extends FileRefusedError {
  constructor(file: string, problem: string) {
    super(file, problem);
    this.name = 'DataFileError';
  }
}

/**
 * How much a loader may read: every file (after decompression) is refused beyond `maxBytes`. The
 * daemon passes what is left of the machine's memory after the job's models; 2 GB by default.
 */
export interface DataLimits {
  maxBytes?: number;
}
export const DEFAULT_MAX_DATA_BYTES = 2 * 1024 ** 3;
/** Labels are class indices: the engine's heads have at most this many classes (core/modelSpec's size bound). */
const MAX_CLASSES = 1 << 20;

export const DEBIAN_FASHION_MNIST = '/usr/share/datasets/fashion-mnist';
// Per-pixel statistics of the Fashion-MNIST training set, for x/255 normalisation.
const FMNIST_MEAN = 0.286;
const FMNIST_STD = 0.353;

// ------------------------------------------------------------------------------- synthetic

/** splitmix32-style generator: the same data for the same seed everywhere. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
  };
}

function gaussian(next: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
}

export interface SyntheticOptions {
  seed?: number;
  /** Classification: inputs per sample, classes and split sizes. */
  features?: number;
  classes?: number;
  train?: number;
  test?: number;
  /** Noise around each class prototype (relative to the prototype's unit scale). */
  noise?: number;
}

/**
 * Classification: each class has a random prototype; a sample is its class prototype plus
 * Gaussian noise, so a model must learn the prototypes (loss starts at ln(classes) and falls).
 */
export function syntheticClassification(o: SyntheticOptions = {}): ClassificationData {
  const features = o.features ?? 784;
  const classes = o.classes ?? 10;
  const nTrain = o.train ?? 4096;
  const nTest = o.test ?? 1024;
  const noise = o.noise ?? 1.5;
  const next = rng(o.seed ?? 0);
  const protos = new Float32Array(classes * features);
  for (let i = 0; i < protos.length; i++) protos[i] = gaussian(next) * 0.5;
  const make = (n: number) => {
    const x = new Float32Array(n * features);
    const y = new Int32Array(n);
    for (let s = 0; s < n; s++) {
      const c = Math.floor(next() * classes);
      y[s] = c;
      for (let f = 0; f < features; f++) x[s * features + f] = protos[c * features + f] + noise * 0.5 * gaussian(next);
    }
    return { x, y };
  };
  const tr = make(nTrain);
  const te = make(nTest);
  return { kind: 'classification', name: 'synthetic', features, classes, scale: 1, shift: 0, trainX: tr.x, trainY: tr.y, testX: te.x, testY: te.y };
}

/** Tokens: a random sparse Markov chain (each symbol has 3 likely successors): learnable structure. */
export function syntheticTokens(o: { seed?: number; vocab?: number; train?: number; test?: number } = {}): TokenData {
  const vocab = o.vocab ?? 32;
  const next = rng(o.seed ?? 0);
  const successors = Array.from({ length: vocab }, () => [0, 1, 2].map(() => Math.floor(next() * vocab)));
  const make = (n: number) => {
    const t = new Int32Array(n);
    let cur = 0;
    for (let i = 0; i < n; i++) {
      t[i] = cur;
      const r = next();
      cur = r < 0.9 ? successors[cur][Math.floor(next() * 3)] : Math.floor(next() * vocab);
    }
    return t;
  };
  return { kind: 'tokens', name: 'synthetic-tokens', classes: vocab, trainTokens: make(o.train ?? 65536), testTokens: make(o.test ?? 8192) };
}

// ------------------------------------------------------------------------------- files

/**
 * A data file through the bounded reader (no devices, FIFOs or folders; gzip decompressed with a
 * cap, and with the format's own header declaring the size when `expectSize` reads it).
 */
async function readFile(file: string, limits: DataLimits, expectSize?: (head: Buffer) => number | undefined): Promise<Buffer> {
  try {
    return await readDataFile(file, { maxBytes: limits.maxBytes ?? DEFAULT_MAX_DATA_BYTES, what: 'dataset file', expectSize, headBytes: 64 * 1024 });
  } catch (e) {
    if (e instanceof FileRefusedError) throw new DataFileError(e.file, e.problem);
    throw e;
  }
}

/** Bytes an IDX file holds according to its header, or undefined when the head is not a whole header. */
function idxSize(head: Buffer): number | undefined {
  if (head.length < 4 || head[0] !== 0 || head[1] !== 0) return undefined;
  const ndim = head[3];
  if (ndim < 1 || ndim > 4 || head.length < 4 + 4 * ndim) return undefined;
  let count = 1;
  for (let i = 0; i < ndim; i++) count *= head.readUInt32BE(4 + 4 * i);
  return 4 + 4 * ndim + count;
}

/** Parses an IDX file (unsigned-byte payload, as MNIST-style datasets use): [dims, bytes]. */
export function parseIdx(file: string, buf: Buffer): { dims: number[]; data: Uint8Array } {
  if (buf.length < 4) throw new DataFileError(file, `too short for an IDX header (${buf.length} bytes)`);
  if (buf[0] !== 0 || buf[1] !== 0) throw new DataFileError(file, 'not an IDX file (magic must start with two zero bytes)');
  if (buf[2] !== 0x08) throw new DataFileError(file, `IDX element type 0x${buf[2].toString(16)} is not supported (expected 0x08, unsigned bytes)`);
  const ndim = buf[3];
  if (ndim < 1 || ndim > 4) throw new DataFileError(file, `IDX has ${ndim} dimensions (expected 1 to 4)`);
  if (buf.length < 4 + 4 * ndim) throw new DataFileError(file, 'truncated IDX header');
  const dims = Array.from({ length: ndim }, (_, i) => buf.readUInt32BE(4 + 4 * i));
  const count = dims.reduce((a, b) => a * b, 1);
  if (buf[2] === 0x08 && count > buf.length) throw new DataFileError(file, `IDX header (${dims.join('×')}) declares ${formatBytes(count)}, the file holds ${formatBytes(buf.length - 4 - 4 * ndim)}`);
  const start = 4 + 4 * ndim;
  if (buf.length - start !== count) {
    throw new DataFileError(file, `IDX payload has ${buf.length - start} bytes, the header (${dims.join('×')}) says ${count}`);
  }
  return { dims, data: new Uint8Array(buf.buffer, buf.byteOffset + start, count) };
}

async function idxFile(folder: string, base: string): Promise<string> {
  for (const name of [`${base}.gz`, base]) {
    const f = join(folder, name);
    try {
      await fs.access(f);
      return f;
    } catch {
      /* try the next spelling */
    }
  }
  throw new DataFileError(join(folder, `${base}.gz`), `file not found (nor ${base} without .gz)`);
}

/** Fashion-MNIST (or MNIST) from a folder of the four standard IDX files. */
export async function loadFashionMnist(folder = DEBIAN_FASHION_MNIST, limits: DataLimits = {}): Promise<ClassificationData> {
  const split = async (prefix: string) => {
    const imgFile = await idxFile(folder, `${prefix}-images-idx3-ubyte`);
    const img = parseIdx(imgFile, await readFile(imgFile, limits, idxSize));
    const lblFile = await idxFile(folder, `${prefix}-labels-idx1-ubyte`);
    const lbl = parseIdx(lblFile, await readFile(lblFile, limits, idxSize));
    if (img.dims.length !== 3) throw new DataFileError(imgFile, `expected 3 dimensions (n, rows, cols), got ${img.dims.length}`);
    if (lbl.dims.length !== 1) throw new DataFileError(lblFile, `expected 1 dimension (n), got ${lbl.dims.length}`);
    if (img.dims[0] !== lbl.dims[0]) throw new DataFileError(lblFile, `${lbl.dims[0]} labels for ${img.dims[0]} images in ${imgFile}`);
    const y = Int32Array.from(lbl.data);
    for (const v of y) if (v > 9) throw new DataFileError(lblFile, `label ${v} outside 0..9`);
    return { x: img.data, y, features: img.dims[1] * img.dims[2] };
  };
  const tr = await split('train');
  const te = await split('t10k');
  return {
    kind: 'classification',
    name: 'fashion-mnist',
    features: tr.features,
    classes: 10,
    scale: 1 / (255 * FMNIST_STD),
    shift: -FMNIST_MEAN / FMNIST_STD,
    trainX: tr.x,
    trainY: tr.y,
    testX: te.x,
    testY: te.y,
  };
}

/**
 * A character-level corpus: vocabulary = the distinct characters (code points, sorted as strings
 * sort), last `testFraction` held out. Tokenised in one pass into an Int32Array (4 bytes a
 * character), never through an array of one-character strings (tens of bytes each).
 */
export async function loadTextCorpus(file: string, testFraction = 0.1, limits: DataLimits = {}): Promise<TokenData> {
  const text = (await readFile(file, limits)).toString('utf8');
  const { tokens, vocab } = tokenizeChars(text);
  if (tokens.length < 100) throw new DataFileError(file, `only ${tokens.length} characters; a corpus needs at least 100`);
  const cut = Math.floor(tokens.length * (1 - testFraction));
  return { kind: 'tokens', name: `text:${file}`, classes: vocab.length, vocab, trainTokens: tokens.slice(0, cut), testTokens: tokens.slice(cut) };
}

/** Code point ids in order of first appearance, then renumbered so the vocabulary is sorted. */
function tokenizeChars(text: string): { tokens: Int32Array; vocab: string[] } {
  const bmp = new Int32Array(0x10000).fill(-1);
  const astral = new Map<number, number>();
  const seen: number[] = [];
  const ids = new Int32Array(text.length);
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    let cp = text.charCodeAt(i);
    if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < text.length) {
      const lo = text.charCodeAt(i + 1);
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        cp = ((cp - 0xd800) << 10) + (lo - 0xdc00) + 0x10000;
        i++;
      }
    }
    let id = cp < 0x10000 ? bmp[cp] : (astral.get(cp) ?? -1);
    if (id < 0) {
      id = seen.length;
      seen.push(cp);
      if (cp < 0x10000) bmp[cp] = id;
      else astral.set(cp, id);
    }
    ids[n++] = id;
  }
  const chars = seen.map((cp) => String.fromCodePoint(cp));
  const order = chars.map((_, i) => i).sort((a, b) => (chars[a] < chars[b] ? -1 : chars[a] > chars[b] ? 1 : 0));
  const rank = new Int32Array(seen.length);
  order.forEach((old, i) => (rank[old] = i));
  const tokens = ids.subarray(0, n);
  for (let i = 0; i < n; i++) tokens[i] = rank[tokens[i]];
  return { tokens, vocab: order.map((i) => chars[i]) };
}

interface NpyArray {
  shape: number[];
  /** int64 arrives as Float64Array (exact to 2^53), so an out-of-range value is seen, not wrapped. */
  data: Float32Array | Float64Array | Int32Array | Uint8Array;
}

/** Parses a .npy file (format 1.0–3.0, C order; float32/64, int8–64, uint8, bool). */
export function parseNpy(file: string, buf: Buffer): NpyArray {
  const magic = '\x93NUMPY';
  if (buf.length < 10 || buf.toString('latin1', 0, 6) !== magic) throw new DataFileError(file, 'not a .npy file (bad magic)');
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12) + headerLen;
  if (start > buf.length) throw new DataFileError(file, 'truncated .npy header');
  const header = buf.toString('latin1', major === 1 ? 10 : 12, start);
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) throw new DataFileError(file, `unreadable .npy header: ${header.trim()}`);
  if (fortran === 'True') throw new DataFileError(file, 'Fortran-order arrays are not supported; save with np.ascontiguousarray');
  const dimsText = shapeText.split(',').map((s) => s.trim()).filter(Boolean);
  if (!dimsText.every((d) => /^\d{1,15}$/.test(d))) throw new DataFileError(file, `shape (${shapeText.trim()}): every dimension must be a non-negative integer`);
  const shape = dimsText.map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(count)) throw new DataFileError(file, `shape (${shape.join(', ')}) has more elements than any machine holds`);
  const body = buf.subarray(start);
  const kinds: Record<string, [number, (b: Buffer, i: number) => number]> = {
    '<f4': [4, (b, i) => b.readFloatLE(i * 4)],
    '<f8': [8, (b, i) => b.readDoubleLE(i * 8)],
    '<i8': [8, (b, i) => Number(b.readBigInt64LE(i * 8))],
    '<i4': [4, (b, i) => b.readInt32LE(i * 4)],
    '<i2': [2, (b, i) => b.readInt16LE(i * 2)],
    '|i1': [1, (b, i) => b.readInt8(i)],
    '|u1': [1, (b, i) => b[i]],
    '|b1': [1, (b, i) => b[i]],
  };
  const kind = kinds[descr];
  if (!kind) throw new DataFileError(file, `dtype ${descr} is not supported (use float32, float64, int or uint8)`);
  if (body.length < count * kind[0]) throw new DataFileError(file, `payload has ${body.length} bytes, shape (${shape.join(', ')}) of ${descr} needs ${count * kind[0]}`);
  if (descr === '|u1') return { shape, data: new Uint8Array(body.buffer, body.byteOffset, count).slice() };
  const data = descr.includes('f') ? new Float32Array(count) : descr === '<i8' ? new Float64Array(count) : new Int32Array(count);
  for (let i = 0; i < count; i++) data[i] = kind[1](body, i);
  return { shape, data };
}

/** Bytes a .npy file holds according to its header, or undefined when the head does not hold it all. */
function npySize(head: Buffer): number | undefined {
  if (head.length < 12 || head.toString('latin1', 0, 6) !== '\x93NUMPY') return undefined;
  const major = head[6];
  const start = (major === 1 ? 10 : 12) + (major === 1 ? head.readUInt16LE(8) : head.readUInt32LE(8));
  if (start > head.length) return undefined;
  const header = head.toString('latin1', major === 1 ? 10 : 12, start);
  const item = /'descr':\s*'[<|>]?[a-z](\d+)'/.exec(header)?.[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1]?.split(',').map((x) => x.trim()).filter(Boolean);
  if (!item || !shape || !shape.every((d) => /^\d{1,15}$/.test(d))) return undefined;
  return start + shape.reduce((a, d) => a * Number(d), 1) * Number(item);
}

async function npy(file: string, limits: DataLimits): Promise<NpyArray> {
  return parseNpy(file, await readFile(file, limits, npySize));
}

/**
 * User arrays: `x.npy` [n, ...features] (float or uint8) and `y.npy` [n] integer labels, in a
 * folder; `x_test.npy`/`y_test.npy` if present, else the last 10% is held out.
 */
export async function loadNpyFolder(folder: string, limits: DataLimits = {}): Promise<ClassificationData> {
  const exists = async (f: string) => fs.access(f).then(() => true, () => false);
  const load = async (xf: string, yf: string) => {
    const x = await npy(xf, limits);
    const y = await npy(yf, limits);
    if (x.shape.length < 1) throw new DataFileError(xf, 'must have a sample axis');
    if (y.shape.length !== 1) throw new DataFileError(yf, `labels must be 1-D, got shape (${y.shape.join(', ')})`);
    if (y.data instanceof Float32Array && y.data.some((v) => !Number.isInteger(v))) throw new DataFileError(yf, 'labels must be integers');
    if (x.shape[0] !== y.shape[0]) throw new DataFileError(yf, `${y.shape[0]} labels for ${x.shape[0]} samples in ${xf}`);
    // Checked before the Int32 conversion, which would wrap a label of 2^40 to 0.
    for (const v of y.data) {
      if (v < 0) throw new DataFileError(yf, `negative label ${v}`);
      if (v >= MAX_CLASSES) throw new DataFileError(yf, `label ${v} is beyond the ${MAX_CLASSES - 1} a class index may be`);
    }
    const xData = x.data instanceof Int32Array || x.data instanceof Float64Array ? Float32Array.from(x.data) : x.data;
    return { x: xData, y: Int32Array.from(y.data), features: x.shape.slice(1).reduce((a, b) => a * b, 1), yf };
  };
  const tr = await load(join(folder, 'x.npy'), join(folder, 'y.npy'));
  let te;
  if (await exists(join(folder, 'x_test.npy'))) {
    te = await load(join(folder, 'x_test.npy'), join(folder, 'y_test.npy'));
    if (te.features !== tr.features) throw new DataFileError(join(folder, 'x_test.npy'), `${te.features} features per sample, x.npy has ${tr.features}`);
  } else {
    const n = tr.y.length;
    const cut = Math.max(1, Math.floor(n * 0.9));
    if (cut >= n) throw new DataFileError(join(folder, 'x.npy'), `only ${n} samples: too few to hold out a test split (add x_test.npy/y_test.npy)`);
    te = { x: tr.x.slice(cut * tr.features), y: tr.y.slice(cut), features: tr.features, yf: tr.yf };
    tr.x = tr.x.slice(0, cut * tr.features);
    tr.y = tr.y.slice(0, cut);
  }
  let classes = 0;
  for (const v of tr.y) classes = Math.max(classes, v + 1);
  for (const v of te.y) classes = Math.max(classes, v + 1);
  return {
    kind: 'classification',
    name: `npy:${folder}`,
    features: tr.features,
    classes: Math.max(classes, 2),
    scale: tr.x instanceof Uint8Array ? 1 / 255 : 1,
    shift: 0,
    trainX: tr.x,
    trainY: tr.y,
    testX: te.x,
    testY: te.y,
  };
}

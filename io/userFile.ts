// Reading a path a user (or a client) handed us: a spec, a plan, a model file, a dataset. Such a
// path may name anything: /dev/zero (endless), a FIFO nobody writes to (blocks the reader for
// ever), a folder, a file of many gigabytes, a gzip bomb. Every read of such a path goes through
// here:
//   - open without blocking (O_NONBLOCK: opening a FIFO does not wait for a writer), then fstat the
//     open descriptor (no race with a rename) and refuse anything but a regular file;
//   - refuse a file larger than the caller's limit before reading it, and stop reading at the limit
//     (a file that grows while we read);
//   - decompress with a cap on the output, and a caller's check of the first bytes (a header that
//     says how big the data is), so a bomb is refused after its first chunk, not after gigabytes;
//   - every refusal names the file and says why (FileRefusedError).
// Shared by the CLI, the language server's analysis and the dataset loaders (Node only).
import { closeSync, constants, fstatSync, openSync, readSync, promises as fsp, type Stats } from 'node:fs';
import { createGunzip } from 'node:zlib';

/** A path we will not read, or could not: the message names the file and the reason. */
export class FileRefusedError extends Error {
  constructor(
    readonly file: string,
    readonly problem: string,
    readonly code?: string,
  ) {
    super(`${file}: ${problem}`);
    this.name = 'FileRefusedError';
  }
}

export interface ReadLimit {
  /** Largest accepted size in bytes (after decompression, for gunzip). */
  maxBytes: number;
  /** What the file is for, in messages ("model spec", "dataset file"). */
  what: string;
}

const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;
const CHUNK = 1 << 20;

/** "1.5 GB", "340 MB", "12 kB": sizes in messages. */
export function formatBytes(n: number): string {
  const units = ['bytes', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let u = 0;
  let v = n;
  while (Math.abs(v) >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return u === 0 ? `${n} bytes` : `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${units[u]}`;
}

/** Why a path of this kind cannot be read as a file (undefined for a regular file). */
export function notAFile(st: Stats): string | undefined {
  if (st.isFile()) return undefined;
  if (st.isDirectory()) return 'is a folder, expected a file';
  if (st.isFIFO()) return 'is a named pipe (FIFO), not a file: refusing to read it (it may never end or never start)';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'is a device, not a file: refusing to read it (it may never end)';
  if (st.isSocket()) return 'is a socket, not a file';
  return 'is not a regular file';
}

function openError(file: string, err: unknown): FileRefusedError {
  const e = err as NodeJS.ErrnoException;
  const why: Record<string, string> = {
    ENOENT: 'file not found',
    EACCES: 'permission denied',
    EISDIR: 'is a folder, expected a file',
    ENOTDIR: 'a folder on the path is a file',
    ELOOP: 'too many symbolic links',
    EMFILE: 'too many open files in the daemon (EMFILE): try again when fewer files are open',
    ENFILE: 'too many open files on this machine (ENFILE)',
  };
  return new FileRefusedError(file, why[e.code ?? ''] ?? e.message, e.code);
}

function tooBig(file: string, size: number, limit: ReadLimit): FileRefusedError {
  return new FileRefusedError(file, `is ${formatBytes(size)}, more than the ${formatBytes(limit.maxBytes)} a ${limit.what} may be`);
}

/** Checks an open descriptor's stat against the rules; returns its size. */
function checkStat(file: string, st: Stats, limit: ReadLimit): number {
  const bad = notAFile(st);
  if (bad) throw new FileRefusedError(file, bad);
  if (st.size > limit.maxBytes) throw tooBig(file, st.size, limit);
  return st.size;
}

/** The whole file, synchronously (CLI, analysis: small files). */
export function readUserFileSync(file: string, limit: ReadLimit): Buffer {
  let fd: number;
  try {
    fd = openSync(file, OPEN_FLAGS);
  } catch (err) {
    throw openError(file, err);
  }
  try {
    const size = checkStat(file, fstatSync(fd), limit);
    // A regular file may still grow (or be /proc-like and report 0): read to EOF, never past the limit.
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const buf = Buffer.allocUnsafe(Math.min(Math.max(size - total, 64 * 1024), CHUNK, limit.maxBytes + 1 - total));
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      chunks.push(n === buf.length ? buf : buf.subarray(0, n));
      total += n;
      if (total > limit.maxBytes) throw tooBig(file, total, limit);
    }
    return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total);
  } catch (err) {
    if (err instanceof FileRefusedError) throw err;
    throw openError(file, err);
  } finally {
    closeSync(fd);
  }
}

/** UTF-8 text of a small file (specs, plans, model sources). */
export function readUserTextSync(file: string, limit: ReadLimit): string {
  return readUserFileSync(file, limit).toString('utf8');
}

export interface DataReadOptions extends ReadLimit {
  /**
   * Sees the first bytes of the (decompressed) data and returns how many bytes the whole file
   * must hold, or undefined when the format does not say; throws to refuse the file. Called once
   * at least `headBytes` are in (or the file ended).
   */
  expectSize?: (head: Buffer) => number | undefined;
  headBytes?: number;
}

/**
 * A data file, asynchronously, decompressed when it is gzip (magic 1f 8b, whatever its name).
 * The output is capped at `maxBytes`, and at the size the header declares when `expectSize` knows
 * it: decompression stops at the first byte beyond, so a bomb costs one chunk, not its payload.
 */
export async function readDataFile(file: string, opts: DataReadOptions): Promise<Buffer> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(file, OPEN_FLAGS);
  } catch (err) {
    throw openError(file, err);
  }
  try {
    const st = await handle.stat();
    const bad = notAFile(st);
    if (bad) throw new FileRefusedError(file, bad);
    const magic = Buffer.alloc(2);
    const { bytesRead } = await handle.read(magic, 0, 2, 0);
    const gzip = bytesRead === 2 && magic[0] === 0x1f && magic[1] === 0x8b;
    if (!gzip && st.size > opts.maxBytes) throw tooBig(file, st.size, opts);
    const sink = new CappedSink(file, opts);
    if (gzip) await inflateInto(file, handle, sink);
    else {
      for (let position = 0; ; ) {
        const buf = Buffer.allocUnsafe(CHUNK);
        const { bytesRead: n } = await handle.read(buf, 0, buf.length, position);
        if (n === 0) break;
        position += n;
        sink.push(buf.subarray(0, n));
      }
    }
    return sink.finish();
  } catch (err) {
    if (err instanceof FileRefusedError) throw err;
    throw openError(file, err);
  } finally {
    await handle.close();
  }
}

/** Collects output chunks, checking the header once and the cap on every chunk. */
class CappedSink {
  private readonly chunks: Buffer[] = [];
  private total = 0;
  private cap: number;
  private checked = false;

  constructor(
    private readonly file: string,
    private readonly opts: DataReadOptions,
  ) {
    this.cap = opts.maxBytes;
  }

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.total += chunk.length;
    if (!this.checked && this.total >= (this.opts.headBytes ?? 0)) this.checkHead();
    if (this.total > this.cap) {
      throw new FileRefusedError(
        this.file,
        this.cap < this.opts.maxBytes
          ? `holds more than the ${formatBytes(this.cap)} its header declares (a corrupt file, or a decompression bomb)`
          : `is (or decompresses to) more than the ${formatBytes(this.opts.maxBytes)} a ${this.opts.what} may be`,
      );
    }
  }

  private checkHead(): void {
    this.checked = true;
    if (!this.opts.expectSize) return;
    const head = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.total);
    const expected = this.opts.expectSize(head);
    if (expected === undefined) return;
    if (expected > this.opts.maxBytes) {
      throw new FileRefusedError(this.file, `its header declares ${formatBytes(expected)}, more than the ${formatBytes(this.opts.maxBytes)} a ${this.opts.what} may be`);
    }
    this.cap = expected;
  }

  finish(): Buffer {
    if (!this.checked) this.checkHead();
    return this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.total);
  }
}

async function inflateInto(file: string, handle: fsp.FileHandle, sink: CappedSink): Promise<void> {
  const gunzip = createGunzip({ chunkSize: 256 * 1024 });
  const done = new Promise<void>((resolve, reject) => {
    gunzip.on('data', (chunk: Buffer) => {
      try {
        sink.push(chunk);
      } catch (err) {
        gunzip.destroy();
        reject(err);
      }
    });
    gunzip.on('end', resolve);
    gunzip.on('error', (e) => reject(new FileRefusedError(file, `corrupt gzip data (${e.message})`)));
  });
  // Feed compressed chunks as the inflater drains them: memory is one chunk in, one chunk out.
  const feed = (async () => {
    for (let position = 0; ; ) {
      const buf = Buffer.allocUnsafe(CHUNK);
      const { bytesRead } = await handle.read(buf, 0, buf.length, position);
      if (bytesRead === 0 || gunzip.destroyed) break;
      position += bytesRead;
      if (!gunzip.write(buf.subarray(0, bytesRead))) {
        // Wake on whichever comes first and drop the other listener: a large file waits here
        // thousands of times, and a leftover 'close' listener per wait would pile up.
        await new Promise<void>((r) => {
          const wake = () => {
            gunzip.off('drain', wake);
            gunzip.off('close', wake);
            r();
          };
          gunzip.on('drain', wake);
          gunzip.on('close', wake);
        });
      }
    }
    if (!gunzip.destroyed) gunzip.end();
  })();
  // Both settle before the caller closes the file (a read still in flight would fail on it).
  const [inflated, fed] = await Promise.allSettled([done, feed]);
  if (inflated.status === 'rejected') throw inflated.reason;
  if (fed.status === 'rejected') throw fed.reason;
}

// Data files for tests: .npy and IDX as numpy and MNIST write them, and files that attack a reader
// (gzip bombs: many gigabytes from a few megabytes; FIFOs without a writer).
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

/**
 * A gzip file that inflates to `totalBytes` (rounded to 64 MB members) of zeros after `head`:
 * concatenated gzip members, so it is cheap to make whatever it inflates to (3.2 GB from 3.2 MB).
 */
let zeros: Buffer | undefined;
const CHUNK = 64 * 1024 * 1024;

export function writeGzipBomb(file: string, totalBytes: number, head: Buffer = Buffer.alloc(0)): void {
  const chunk = CHUNK;
  const member = (zeros ??= gzipSync(Buffer.alloc(chunk), { level: 9 }));
  const members = Math.max(1, Math.round(totalBytes / chunk));
  const first = gzipSync(head, { level: 9 });
  writeFileSync(file, Buffer.concat([first, ...Array.from({ length: members }, () => member)]));
}

/** An IDX header (unsigned bytes) with the given dimensions. */
export function idxHeader(dims: number[]): Buffer {
  const b = Buffer.alloc(4 + 4 * dims.length);
  b[2] = 0x08;
  b[3] = dims.length;
  dims.forEach((d, i) => b.writeUInt32BE(d, 4 + 4 * i));
  return b;
}

/** A named pipe (nobody will ever write to it). */
export function makeFifo(file: string): void {
  execFileSync('mkfifo', [file]);
}

/** A .npy file as numpy writes it (format 1.0); `shape` as the header spells it, e.g. [20, 4] or '-1, 4'. */
export function npyFile(descr: string, shape: number[] | string, payload: Buffer): Buffer {
  const dims = typeof shape === 'string' ? shape : `${shape.join(', ')}${shape.length === 1 ? ',' : ''}`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${dims}), }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const lead = Buffer.alloc(10);
  lead.write('\x93NUMPY', 0, 'latin1');
  lead[6] = 1;
  lead.writeUInt16LE(header.length, 8);
  return Buffer.concat([lead, Buffer.from(header, 'latin1'), payload]);
}

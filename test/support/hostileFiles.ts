// Files that attack a reader: gzip bombs (many gigabytes from a few megabytes) and FIFOs without a
// writer. Shared by the bounded-reader unit tests and the daemon's hostile-input tests.
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

// The bounded reader every user-supplied path goes through: devices, FIFOs and folders are refused
// without blocking, sizes are capped before and while reading, and gzip is inflated with a cap (the
// header's declared size when the format has one), so a bomb costs a chunk, not its payload.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { FileRefusedError, formatBytes, readDataFile, readUserFileSync } from '../../io/userFile';
import { idxHeader, makeFifo, writeGzipBomb } from '../support/dataFiles';

const dir = mkdtempSync(join(tmpdir(), 'pixelfly-userfile-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const limit = { maxBytes: 1024 * 1024, what: 'test file' };

test('devices, FIFOs without a writer, folders and missing paths are refused at once, naming the file', async () => {
  const fifo = join(dir, 'fifo');
  makeFifo(fifo);
  const cases: Array<[string, RegExp]> = [
    ['/dev/zero', /^\/dev\/zero: is a device, not a file/],
    ['/dev/urandom', /^\/dev\/urandom: is a device/],
    [fifo, /fifo: is a named pipe \(FIFO\), not a file/],
    [dir, /: is a folder, expected a file/],
    [join(dir, 'nope.json'), /nope\.json: file not found/],
  ];
  for (const [path, why] of cases) {
    assert.throws(() => readUserFileSync(path, limit), (e: Error) => e instanceof FileRefusedError && why.test(e.message), path);
    await assert.rejects(readDataFile(path, limit), (e: Error) => e instanceof FileRefusedError && why.test(e.message), path);
  }
});

test('a file over the limit is refused before it is read, with both sizes', async () => {
  const big = join(dir, 'big.txt');
  writeFileSync(big, Buffer.alloc(limit.maxBytes + 1, 0x61));
  assert.throws(() => readUserFileSync(big, limit), /big\.txt: is 1\.0 MB, more than the 1\.0 MB a test file may be/);
  await assert.rejects(readDataFile(big, limit), /big\.txt: is 1\.0 MB, more than/);
  const ok = join(dir, 'ok.txt');
  writeFileSync(ok, 'hello');
  assert.equal(readUserFileSync(ok, limit).toString(), 'hello');
  assert.equal((await readDataFile(ok, limit)).toString(), 'hello');
});

test('gzip is inflated transparently, capped at the limit, and at the size its header declares', async () => {
  const small = join(dir, 'small.gz');
  writeFileSync(small, gzipSync(Buffer.from('x'.repeat(1000))));
  assert.equal((await readDataFile(small, limit)).length, 1000);

  // A bomb without a header: 3.2 GB of zeros from ~3 MB, refused once past the 1 MB cap.
  const bomb = join(dir, 'bomb.gz');
  writeGzipBomb(bomb, 3.2e9);
  const before = process.memoryUsage().rss;
  await assert.rejects(readDataFile(bomb, limit), /bomb\.gz: is \(or decompresses to\) more than the 1\.0 MB a test file may be/);
  // With a header that declares 47 MB (Fashion-MNIST's), the cap is the declared size even under a larger limit.
  const idx = join(dir, 'train-images-idx3-ubyte.gz');
  writeGzipBomb(idx, 3.2e9, idxHeader([60000, 28, 28]));
  const declared = (head: Buffer) => (head.length >= 16 ? 16 + head.readUInt32BE(4) * head.readUInt32BE(8) * head.readUInt32BE(12) : undefined);
  await assert.rejects(
    readDataFile(idx, { maxBytes: 2 * 1024 ** 3, what: 'dataset file', expectSize: declared, headBytes: 16 }),
    /holds more than the 47\.0 MB its header declares \(a corrupt file, or a decompression bomb\)/,
  );
  const grew = process.memoryUsage().rss - before;
  assert.ok(grew < 512 * 1024 ** 2, `reading the bombs grew this process by ${formatBytes(grew)}`);
  // A header declaring more than the limit is refused from the header alone.
  await assert.rejects(
    readDataFile(idx, { maxBytes: 16 * 1024 ** 2, what: 'dataset file', expectSize: declared, headBytes: 16 }),
    /its header declares 47\.0 MB, more than the 16\.8 MB a dataset file may be/,
  );
  const corrupt = join(dir, 'corrupt.gz');
  writeFileSync(corrupt, Buffer.concat([gzipSync(Buffer.from('abc')).subarray(0, 12), Buffer.from('garbage')]));
  await assert.rejects(readDataFile(corrupt, limit), /corrupt\.gz: corrupt gzip data/);
});

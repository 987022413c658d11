// The daemon stops when its discovery file is gone or names another daemon, and must not mistake a
// file it cannot read just now (out of descriptors) for one that is gone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { discoveryOwner, homePaths, writeDiscovery } from '../../io/home';

const home = mkdtempSync(join(tmpdir(), 'pixelfly-home-'));
process.on('exit', () => rmSync(home, { recursive: true, force: true }));

test('discoveryOwner: the pid the file names; gone when the file, its folder or its pid is missing', () => {
  assert.equal(discoveryOwner(home), 'gone');
  writeDiscovery({ port: 1234, pid: 4242, host: '127.0.0.1', startedAt: '', version: '0' }, home);
  assert.equal(discoveryOwner(home), 4242);
  writeFileSync(homePaths(home).discovery, '{"port": 1234}');
  assert.equal(discoveryOwner(home), 'gone');
  writeFileSync(homePaths(home).discovery, 'not json');
  assert.equal(discoveryOwner(home), 'gone');
  assert.equal(discoveryOwner(join(home, 'no-such-folder')), 'gone');
  rmSync(homePaths(home).discovery);
  mkdirSync(homePaths(home).discovery);
  assert.equal(discoveryOwner(home), 'gone', 'a folder in its place is no discovery file');
  rmSync(homePaths(home).discovery, { recursive: true });
});

test('discoveryOwner: a process out of file descriptors gets "unreadable", not "gone"', () => {
  writeDiscovery({ port: 1234, pid: 4242, host: '127.0.0.1', startedAt: '', version: '0' }, home);
  // A child with a low descriptor limit opens /dev/null until EMFILE, then asks.
  const script = `
    const fs = require('node:fs');
    const { discoveryOwner } = require(${JSON.stringify(join(__dirname, '..', '..', 'io', 'home.js'))});
    const fds = [];
    try { for (;;) fds.push(fs.openSync('/dev/null', 'r')); } catch (err) { if (err.code !== 'EMFILE') throw err; }
    const owner = discoveryOwner(${JSON.stringify(home)});
    for (const fd of fds) fs.closeSync(fd);
    console.log(JSON.stringify({ owner, after: discoveryOwner(${JSON.stringify(home)}) }));`;
  const r = spawnSync('prlimit', ['--nofile=64:64', '--', process.execPath, '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { owner: 'unreadable', after: 4242 });
});

// The tree shows who imports whom: each process's folder imports only the shared folders it may,
// so a glance at the imports tells which code runs where. The daemon does not reach into the CLI
// or the editor; the language server and the extension share only core/, protocol/ and io/ (the
// extension gets the analysis over LSP); the extension and the CLI reach the daemon through
// client/; webview pages import nothing that needs Node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, normalize, relative, sep } from 'node:path';

const root = join(__dirname, '..', '..');

const ALLOWED: Record<string, string[]> = {
  core: [],
  protocol: ['core'],
  io: [],
  native: ['core', 'io'],
  server: ['core', 'protocol', 'io'],
  client: ['core', 'protocol', 'io'],
  daemon: ['core', 'protocol', 'io', 'native'],
  // `pixelfly daemon foreground` runs the daemon; `pixelfly analyze` runs the language server's analysis.
  cli: ['core', 'protocol', 'io', 'native', 'client', 'daemon', 'server'],
  extension: ['core', 'protocol', 'io', 'client'],
  webview: ['core', 'protocol'],
};

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name !== 'build' && name !== 'node_modules') out.push(...sources(p));
    } else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Top-level folders (or root files) that `file`'s relative imports reach. */
function reaches(file: string): Array<{ spec: string; top: string }> {
  const src = readFileSync(file, 'utf8');
  const out: Array<{ spec: string; top: string }> = [];
  for (const m of src.matchAll(/(?:import|export)[^'";]*?from\s+['"]([^'"]+)['"]|(?:require|import)\(\s*['"]([^'"]+)['"]\s*\)/g)) {
    const spec = m[1] ?? m[2];
    if (!spec.startsWith('.')) continue;
    const target = relative(root, normalize(join(file, '..', spec)));
    out.push({ spec, top: target.split(sep)[0] });
  }
  return out;
}

for (const [folder, allowed] of Object.entries(ALLOWED)) {
  test(`${folder}/ imports only ${[folder, ...allowed].join(', ')}`, () => {
    const files = sources(join(root, folder));
    assert.ok(files.length > 0, `no sources under ${folder}/`);
    const wrong: string[] = [];
    for (const f of files) {
      for (const { spec, top } of reaches(f)) {
        // package.json (the version the daemon reports) is data, not code.
        if (top !== folder && !allowed.includes(top) && top !== 'package.json') wrong.push(`${relative(root, f)} imports '${spec}'`);
      }
    }
    assert.deepEqual(wrong, []);
  });
}

test('the import scan sees imports (it can fail)', () => {
  const found = reaches(join(root, 'cli', 'commands', 'daemon.ts')).map((r) => r.top);
  assert.ok(found.includes('daemon') && found.includes('client'), found.join(', '));
});

// core/ is shared by webviews, the language server and the daemon: it must import nothing
// but itself — no Node built-ins, no VS Code, no packages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

test('core/ imports only core/', () => {
  const dir = join(__dirname, '..', '..', '..', 'core');
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
  assert.ok(files.length > 5);
  for (const f of files) {
    const src = readFileSync(join(dir, f), 'utf8');
    for (const m of src.matchAll(/(?:import|export)[^'";]*?from\s+['"]([^'"]+)['"]|require\(\s*['"]([^'"]+)['"]\s*\)/g)) {
      const spec = m[1] ?? m[2];
      assert.ok(spec.startsWith('./'), `core/${f} imports '${spec}'`);
    }
  }
});

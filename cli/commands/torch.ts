// `pixelfly torch install [--python PATH]`: builds pixelfly_torch's extension for a user's interpreter
// (its torch, its C++ ABI) from the sources shipped with Pixelfly, installs the package into that
// interpreter's site-packages, and checks the import. `pixelfly torch status` says what that
// interpreter would run.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pixelflyHome } from '../../io/home';
import { CliError, parse, type Command } from './command';

const options = {
  python: { type: 'string' },
  'python-only': { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

/** The folder holding pytorch/build.py and native/ (a checkout, or the extension's install folder). */
export function torchSourceRoot(): string {
  for (let dir = __dirname; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'pytorch', 'build.py')) && existsSync(join(dir, 'native', 'binding.gyp'))) return dir;
    if (dirname(dir) === dir) throw new CliError(`pixelfly_torch's sources (pytorch/build.py) are not beside ${__dirname}: reinstall Pixelfly`, 1);
  }
}

interface Interpreter {
  executable: string;
  version: string;
  torch: string | null;
  /** Where the package goes: the environment's site-packages when writable, else the user site. */
  target: string;
}

// Asked of the interpreter itself: a venv, conda env or system Python each answer for themselves.
const PROBE = `
import json, os, site, sys, sysconfig
try:
    import torch; t = torch.__version__
except Exception:
    t = None
pure = sysconfig.get_paths()["purelib"]
target = pure if os.access(pure if os.path.isdir(pure) else os.path.dirname(pure), os.W_OK) else site.getusersitepackages()
print(json.dumps({"executable": sys.executable, "version": sys.version.split()[0], "torch": t, "target": target}))
`;

function probe(python: string): Interpreter {
  const r = spawnSync(python, ['-c', PROBE], { encoding: 'utf8', timeout: 120_000 });
  if (r.error) throw new CliError(`cannot run ${python}: ${r.error.message}`, 1);
  if (r.status !== 0) throw new CliError(`${python} failed: ${(r.stderr || '').trim().split('\n').pop()}`, 1);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Interpreter;
}

/** What `import pixelfly_torch` gives that interpreter (run outside any folder that could shadow it). */
function importCheck(python: string, extraPath?: string): { ok: boolean; backend: string } {
  const cwd = mkdtempSync(join(tmpdir(), 'pixelfly-import-'));
  try {
    const env = { ...process.env, ...(extraPath ? { PYTHONPATH: extraPath } : {}) };
    const r = spawnSync(python, ['-W', 'ignore', '-c', 'import pixelfly_torch as p; print(p.backend())'], { cwd, encoding: 'utf8', env, timeout: 120_000 });
    const out = (r.status === 0 ? r.stdout : r.stderr).trim().split('\n').pop() ?? '';
    return { ok: r.status === 0, backend: out };
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
}

function runBuild(python: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

const DEFAULT_PYTHON = 'python3';

export const torchCommand: Command = {
  summary: 'install the pixelfly_torch package (PixelflyLinear on Pixelfly\'s kernels) into a Python interpreter',
  usage:
    'install|status [--python PATH] [--python-only] [--json]\n\n' +
    '  install       build the extension for that interpreter\'s torch and install the package into its site-packages\n' +
    '                (a virtual environment\'s, or the user site when the system one is not writable)\n' +
    '  status        what `import pixelfly_torch` gives that interpreter\n' +
    `  --python      the interpreter (default: ${DEFAULT_PYTHON}); the VS Code extension passes the one the Python extension selected\n` +
    '  --python-only install without the extension (masked-dense: no speedup) where no C++ compiler or torch headers exist',
  async run(argv) {
    const { values, positionals } = parse(argv, options, true);
    const [verb, ...extra] = positionals;
    if (extra.length || (verb !== 'install' && verb !== 'status')) throw new CliError('expected `pixelfly torch install` or `pixelfly torch status`');
    const python = values.python ?? DEFAULT_PYTHON;
    const py = probe(python);
    const say = (line: string): void => {
      if (!values.json) process.stdout.write(`${line}\n`);
    };
    if (verb === 'status') {
      const r = importCheck(py.executable);
      process.stdout.write(values.json ? `${JSON.stringify({ ...py, installed: r.ok, backend: r.backend })}\n` : `${py.executable} (Python ${py.version}, torch ${py.torch ?? 'missing'}): ${r.ok ? r.backend : `pixelfly_torch not importable (${r.backend})`}\n`);
      return r.ok ? 0 : 1;
    }
    if (!py.torch) throw new CliError(`${py.executable} has no torch: install PyTorch into it first (e.g. \`${py.executable} -m pip install torch\`)`, 1);
    const root = torchSourceRoot();
    say(`pixelfly_torch for ${py.executable} (Python ${py.version}, torch ${py.torch}) -> ${py.target}`);
    const tag = `py${py.version.split('.').slice(0, 2).join('')}-torch${py.torch}`;
    // Objects are cached per Python and torch version (PIXELFLY_TORCH_BUILD_DIR overrides where).
    const buildDir = process.env.PIXELFLY_TORCH_BUILD_DIR ?? join(pixelflyHome(), 'build', 'torch', tag);
    const args = [join(root, 'pytorch', 'build.py'), '--out', py.target, '--native', join(root, 'native'), '--build-dir', buildDir];
    if (values['python-only']) args.push('--python-only', '--reason', 'installed with pixelfly torch install --python-only');
    if (values.json) args.push('--quiet');
    const status = await runBuild(py.executable, args);
    if (status !== 0) throw new CliError(`building pixelfly_torch for ${py.executable} failed (exit ${status}); see the messages above. \`--python-only\` installs it without the extension.`, 1);
    const check = importCheck(py.executable);
    if (!check.ok) throw new CliError(`installed into ${py.target}, but ${py.executable} cannot import it: ${check.backend}`, 1);
    say(`installed: ${check.backend}`);
    if (values.json) process.stdout.write(`${JSON.stringify({ ...py, installed: true, backend: check.backend })}\n`);
    return 0;
  },
};

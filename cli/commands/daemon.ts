// `pixelfly daemon start|stop|status|foreground [--port N]`: the local training daemon.
import { connectDaemon, discover, spawnDaemon } from '../../client/discovery';
import { pixelflyHome, processAlive } from '../../io/home';
import { AlreadyRunningError, startDaemon } from '../../daemon/main';
import { DEFAULT_SERVER_LIMITS } from '../../daemon/server';
import { loadEngineServices } from '../../daemon/engineServices';
import { CliError, intOption, parse, type Command } from './command';

const options = {
  port: { type: 'string' },
  'high-water': { type: 'string' },
  'stall-ms': { type: 'string' },
  'flush-ms': { type: 'string' },
  'handshake-ms': { type: 'string' },
} as const;

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function foreground(values: Record<string, unknown>, home: string): Promise<number> {
  const port = intOption(values, 'port', 0);
  if (port < 0 || port > 65535) throw new CliError(`--port must be in 0..65535, got ${port}`);
  const limits = {
    ...DEFAULT_SERVER_LIMITS,
    highWaterBytes: intOption(values, 'high-water', DEFAULT_SERVER_LIMITS.highWaterBytes),
    stallMs: intOption(values, 'stall-ms', DEFAULT_SERVER_LIMITS.stallMs),
    handshakeTimeoutMs: intOption(values, 'handshake-ms', DEFAULT_SERVER_LIMITS.handshakeTimeoutMs),
  };
  if (limits.handshakeTimeoutMs < 100 || limits.handshakeTimeoutMs > 60_000) throw new CliError(`--handshake-ms must be in 100..60000, got ${limits.handshakeTimeoutMs}`);
  const flushMs = intOption(values, 'flush-ms', 250);
  if (flushMs < 1 || flushMs > 1000) throw new CliError(`--flush-ms must be in 1..1000 (metrics are flushed at least every second), got ${flushMs}`);
  const log = (line: string) => process.stderr.write(`${new Date().toISOString()} pixelfly-daemon: ${line}\n`);
  const engine = loadEngineServices(log);
  if (!engine.available) log(`WARNING: ${engine.error}`);
  let daemon;
  try {
    daemon = await startDaemon({ home, host: '127.0.0.1', port, limits, flushMs }, engine, log);
  } catch (err) {
    if (err instanceof AlreadyRunningError) throw new CliError(`${err.message}; 'pixelfly daemon status' shows where`, 1);
    throw err;
  }
  const stop = () => void daemon.stop();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await daemon.stopped;
  // Native work abandoned by a forced stop would keep the process alive: leave now.
  process.exit(0);
}

async function status(home: string): Promise<number> {
  const found = discover(home);
  if (!found) {
    say(`no daemon running (home ${home})`);
    return 3;
  }
  const client = await connectDaemon(found);
  try {
    const hello = await client.request('hello', { client: 'pixelfly-cli' });
    const { jobs } = await client.request('job.list', {});
    const active = jobs.filter((j) => j.state === 'running' || j.state === 'queued');
    say(`daemon ${hello.version} running: pid ${hello.pid}, 127.0.0.1:${found.port}, home ${hello.home}`);
    say(`engine: ${hello.engine.available ? `${hello.backends.join(', ')}, ${hello.threads} threads` : `unavailable (${hello.engine.error})`}`);
    say(`cpu: ${hello.cpu.model}, ${hello.cpu.cores} cores, ${hello.cpu.features.join(' ') || 'no feature list'}`);
    say(`gpus: ${hello.gpus.length > 0 ? hello.gpus.map((g) => g.name).join(', ') : 'none'}`);
    say(`jobs: ${jobs.length} (${active.length} queued or running)`);
  } finally {
    client.close();
  }
  return 0;
}

async function stop(home: string): Promise<number> {
  const found = discover(home);
  if (!found) {
    say('no daemon running');
    return 0;
  }
  try {
    const client = await connectDaemon(found);
    await client.request('daemon.shutdown', {});
    client.close();
  } catch {
    // Not answering: ask the process directly.
    process.kill(found.pid, 'SIGTERM');
  }
  const deadline = Date.now() + 30_000;
  while (processAlive(found.pid)) {
    if (Date.now() > deadline) throw new CliError(`the daemon (pid ${found.pid}) did not stop within 30 s`, 1);
    await new Promise((r) => setTimeout(r, 100));
  }
  say(`daemon stopped (pid ${found.pid})`);
  return 0;
}

export const daemonCommand: Command = {
  summary: 'start, stop or inspect the local training daemon',
  usage:
    'start|stop|status|foreground [--port N]\n\n' +
    '  start       start the daemon in the background (a second start finds the first)\n' +
    '  stop        stop it; a running job is checkpointed and can be resumed\n' +
    '  status      show pid, port, engine, CPU features and jobs (exit status 3 when not running)\n' +
    '  foreground  run it in this terminal (logs on stderr)\n\n' +
    '  --port N          listen on 127.0.0.1:N (default: any free port, written to the discovery file)\n' +
    '  --high-water B    unsent bytes per client before replay pauses (default 1 MiB)\n' +
    '  --stall-ms MS     a client paused that long is disconnected (default 10000)\n' +
    '  --flush-ms MS     metrics reach metrics.jsonl within this time (default 250, at most 1000)\n' +
    '  --handshake-ms MS a connection must complete its authenticated handshake within this time (default 5000)\n' +
    `The daemon's folder is $PIXELFLY_HOME or ~/.pixelfly.`,
  async run(argv) {
    const { values, positionals } = parse(argv, options, true);
    const [action, ...extra] = positionals;
    if (extra.length > 0) throw new CliError(`unexpected argument '${extra[0]}'`);
    const home = pixelflyHome();
    switch (action) {
      case 'foreground':
        return foreground(values, home);
      case 'start': {
        const found = discover(home);
        if (found) {
          say(`daemon already running: pid ${found.pid}, 127.0.0.1:${found.port}`);
          return 0;
        }
        const passOn = Object.entries(values).flatMap(([k, v]) => [`--${k}`, String(v)]);
        const started = await spawnDaemon(home, passOn);
        say(`daemon started: pid ${started.pid}, 127.0.0.1:${started.port} (log: ${home}/daemon.log)`);
        return 0;
      }
      case 'stop':
        return stop(home);
      case 'status':
        return status(home);
      case undefined:
        throw new CliError('expected an action: start, stop, status or foreground');
      default:
        throw new CliError(`unknown action '${action}': expected start, stop, status or foreground`);
    }
  },
};

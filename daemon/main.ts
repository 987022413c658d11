// The daemon process (`pixelfly daemon foreground`, which `daemon start` spawns detached):
// takes the lock in the Pixelfly folder (a second daemon finds the first and exits), writes a
// fresh token (0600) and the discovery file, loads past runs, and serves until told to stop
// (SIGTERM/SIGINT or `daemon.shutdown`), checkpointing a running job as it goes.
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { PROTOCOL_VERSION, type MethodParams, type MethodResult } from '../protocol/daemon';
import { createToken, discoveryOwner, ensureHome, ensureReserve, homePaths, processAlive, removeDiscovery, withSpace, writeDiscovery } from '../io/home';
import { JobManager } from './jobs/jobManager';
import type { TrainingBackend, TrainingRequest } from './jobs/trainer';
import { DaemonServer, DEFAULT_SERVER_LIMITS } from './server';
import { cpuInfo, gpuInfo } from './systemInfo';
import { loadProfile } from './planning';
import type { ProfilePrecision } from '../io/deviceProfile';
import type { PlanTarget } from '../core/planner';
import type { Plan } from './jobs/trainer';
import type { JobAdmission } from './jobs/jobManager';
import { freeBytes, type RunDir } from './jobs/runStore';
import type { MethodContext } from './methods';
import { RpcFailure } from './methods';
import { machineMemory } from './memory';
import { runTask } from './workers';
import { LoopDelayMonitor } from './loopDelay';
import { formatBytes } from '../io/userFile';
import { ErrorCode } from '../protocol/daemon';
import { version } from '../package.json';

export interface DaemonOptions {
  home: string;
  host: string;
  /** 0: any free port (clients read it from the discovery file). */
  port: number;
  limits: typeof DEFAULT_SERVER_LIMITS;
  flushMs: number;
}

/** What a running daemon offers to the training side: the engine, and what it can say about itself. */
export interface EngineServices {
  backend: TrainingBackend;
  available: boolean;
  /** The PyTorch runner is offered (torch jobs go to it even when the native engine is not available). */
  torch?: boolean;
  error?: string;
  backends: string[];
  threads: number;
  trainingRequest(params: MethodParams<'job.submit'>, plan: (inventory: unknown, target: PlanTarget) => Promise<Plan>): Promise<TrainingRequest>;
  /** Checks a job against the machine before anything is allocated (memory, disk); throws RejectedError. */
  admit(request: TrainingRequest, runsRoot: string, run?: RunDir): JobAdmission | Promise<JobAdmission>;
  benchLayers(params: MethodParams<'bench.layers'>, profilesDir: string): Promise<MethodResult<'bench.layers'>>;
}

/** Below this much free space where the runs are, no run can start (a checkpoint would not fit). */
const MIN_FREE_BYTES = 16 * 1024 ** 2;

/** Why runs cannot start in `runs` now, or undefined. */
function storageProblem(runs: string, free: number | undefined): string | undefined {
  if (free === undefined || free >= MIN_FREE_BYTES) return undefined;
  return `the disk holding ${runs} is full (${formatBytes(free)} free): runs cannot start until space is freed (finished runs are folders there)`;
}

const ORPHAN_CHECK_MS = 2000;

export class AlreadyRunningError extends Error {
  constructor(readonly pid: number) {
    super(`a Pixelfly daemon is already running (pid ${pid})`);
  }
}

/** Exclusive lock file holding our pid; a lock left by a dead process is taken over. */
function acquireLock(file: string): () => void {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      withSpace(dirname(file), () => {
        const fd = openSync(file, 'wx', 0o600);
        try {
          writeSync(fd, String(process.pid));
        } catch (err) {
          closeSync(fd);
          rmSync(file, { force: true });
          throw err;
        }
        closeSync(fd);
      });
      return () => {
        try {
          if (readFileSync(file, 'utf8').trim() === String(process.pid)) rmSync(file, { force: true });
        } catch {
          // Already gone.
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(readFileSync(file, 'utf8').trim());
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && processAlive(holder)) throw new AlreadyRunningError(holder);
      rmSync(file, { force: true });
    }
  }
  throw new Error(`could not take the daemon lock ${file}`);
}

export interface RunningDaemon {
  port: number;
  token: string;
  /** Resolves once the daemon has fully stopped. */
  stopped: Promise<void>;
  stop(): Promise<void>;
}

export async function startDaemon(opts: DaemonOptions, engine: EngineServices, log: (line: string) => void): Promise<RunningDaemon> {
  ensureHome(opts.home);
  const paths = homePaths(opts.home);
  const releaseLock = acquireLock(paths.lock);
  const started = Date.now();
  try {
    const token = createToken(opts.home);
    const jobs = new JobManager({
      runsRoot: paths.runs,
      backend: engine.backend,
      flushMs: opts.flushMs,
      log,
      finishRun: (input) => runTask('finishRun', input, 'summarising the run', 120_000),
      admit: (request, run) => {
        // The reserve given back on a full disk forms again once there is room.
        ensureReserve(opts.home);
        return engine.admit(request, paths.runs, run);
      },
    });
    jobs.loadExisting();
    ensureReserve(opts.home);
    const storage = () => {
      const free = freeBytes(opts.home);
      return { runs: paths.runs, freeBytes: free, problem: storageProblem(paths.runs, free) };
    };
    const startProblem = storage().problem;
    if (startProblem) log(`WARNING: ${startProblem}`);
    // Costed with the profile measured at the job's precision (an fp32 job on a bf16 CPU is not priced at bf16 rates).
    const planOffLoop = (inventory: unknown, target: PlanTarget, fromSpec = false, batchSize?: number, precision: ProfilePrecision = 'auto'): Promise<Plan> =>
      runTask('plan', { inventory, target, profile: loadProfile(paths.profiles, log, precision), fromSpec, batchSize }, 'planning');
    const loopDelay = new LoopDelayMonitor();
    let stopping: Promise<void> | undefined;
    let measuring = false;
    let resolveStopped: () => void = () => undefined;
    const stopped = new Promise<void>((r) => (resolveStopped = r));

    const context: Omit<MethodContext, 'connection'> = {
      jobs,
      log,
      hello: () => ({
        name: 'pixelfly-daemon',
        version,
        protocol: PROTOCOL_VERSION,
        pid: process.pid,
        home: opts.home,
        backends: engine.backends,
        engine: { available: engine.available, error: engine.error },
        cpu: cpuInfo(),
        gpus: gpuInfo(),
        threads: engine.threads,
        memory: machineMemory(),
        storage: storage(),
      }),
      suggestPlan: (p) => planOffLoop(p.inventory, p.target),
      trainingRequest: async (p) => {
        if (!engine.available && !(p.runner === 'torch' && engine.torch)) throw new RpcFailure(ErrorCode.ENGINE_UNAVAILABLE, `the native engine is not available: ${engine.error ?? 'unknown reason'}`);
        return engine.trainingRequest(p, (inventory, target) => planOffLoop(inventory, target, true, p.hyper.batchSize, p.hyper.precision));
      },
      benchLayers: async (p) => {
        if (!engine.available) throw new RpcFailure(ErrorCode.ENGINE_UNAVAILABLE, `the native engine is not available: ${engine.error ?? 'unknown reason'}`);
        // One measurement at a time: two would time each other, and each holds its operands.
        if (measuring) throw new RpcFailure(ErrorCode.INVALID_STATE, 'a bench.layers measurement is already running; ask again when it has answered');
        measuring = true;
        try {
          return await engine.benchLayers(p, paths.profiles);
        } finally {
          measuring = false;
        }
      },
      stats: (p) => {
        const mem = process.memoryUsage();
        return {
          ...server.stats(),
          jobs: jobs.list().length,
          rssBytes: mem.rss,
          heapUsedBytes: mem.heapUsed,
          uptimeMs: Date.now() - started,
          eventLoop: loopDelay.read(p.resetEventLoop ?? false),
        };
      },
      shutdown: () => void stop(),
    };
    const server = new DaemonServer({ host: opts.host, port: opts.port, token, ...opts.limits }, context);
    const port = await server.listen();
    writeDiscovery({ port, pid: process.pid, host: opts.host, startedAt: new Date(started).toISOString(), version }, opts.home);
    log(`listening on ${opts.host}:${port} (pid ${process.pid}, home ${opts.home})`);

    // No client can find a daemon whose discovery file is gone or names another process (its
    // folder was deleted, or replaced by hand): such an orphan stops instead of running forever.
    // A file it cannot read just now (out of descriptors: EMFILE) is no reason to stop serving.
    const orphanCheck = setInterval(() => {
      const owner = discoveryOwner(opts.home);
      if (owner !== 'unreadable' && owner !== process.pid) {
        log(`${paths.discovery} no longer names this daemon: stopping`);
        void stop();
      }
    }, ORPHAN_CHECK_MS);
    orphanCheck.unref();

    const stop = (): Promise<void> => {
      clearInterval(orphanCheck);
      stopping ??= (async () => {
        log('stopping');
        try {
          await jobs.shutdown();
        } catch (err) {
          // E.g. the run folders were deleted under us: still stop.
          log(`while stopping the jobs: ${(err as Error).message}`);
        }
        await server.close();
        loopDelay.stop();
        removeDiscovery(process.pid, opts.home);
        releaseLock();
        log('stopped');
        resolveStopped();
      })();
      return stopping;
    };
    return { port, token, stopped, stop };
  } catch (err) {
    releaseLock();
    throw err;
  }
}

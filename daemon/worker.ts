// The daemon's second script (dist/worker.js): a worker thread running one task (daemon/tasks.ts),
// or, started as `worker.js engine-job` by the daemon, a training job's process (jobs/engineChild.ts).
// Each role loads only its own modules.
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { ENGINE_JOB_ROLE } from '../protocol/engineJob';

async function main(): Promise<void> {
  if (!isMainThread) {
    const { runTaskHere } = await import('./tasks');
    const { task, input } = workerData as { task: Parameters<typeof runTaskHere>[0]; input: unknown };
    parentPort?.postMessage(runTaskHere(task, input));
  } else if (process.argv[2] === ENGINE_JOB_ROLE) {
    (await import('./jobs/engineChild')).serveEngineJob();
  } else {
    process.stderr.write('this is a Pixelfly daemon worker; the daemon starts it, not a person\n');
    process.exitCode = 2;
  }
}

void main();

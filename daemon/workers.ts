// Work the daemon must not do on its event loop (planning a client's inventory can take seconds
// for thousands of wide layers) runs in worker threads; training jobs run in child processes
// (jobs/engineProcess.ts). Both start the same script, daemon/worker.ts (dist/worker.js in the
// bundle), which sits next to this file in either layout.
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { TaskInput, TaskName, TaskOutput, TaskReply } from './tasks';
import { RejectedError } from './jobs/trainer';

export function workerScript(): string {
  return join(__dirname, 'worker.js');
}

/** Tasks running at once; more wait their turn (a client flooding plan.suggest gets a queue, not a thread each). */
const MAX_RUNNING = 2;
/** Tasks waiting beyond this are refused at once. */
const MAX_WAITING = 64;
/** Heap a task's thread may use: a plan of the largest inventory the protocol accepts needs far less. */
const TASK_HEAP_MB = 512;

let running = 0;
const waiting: Array<() => void> = [];

async function slot(): Promise<() => void> {
  if (running >= MAX_RUNNING) {
    if (waiting.length >= MAX_WAITING) throw new RejectedError(`the daemon is busy: ${MAX_RUNNING + waiting.length} planning requests are queued; try again shortly`);
    await new Promise<void>((resolve) => waiting.push(resolve));
  }
  running++;
  return () => {
    running--;
    waiting.shift()?.();
  };
}

/**
 * Runs a task (daemon/tasks.ts) in a worker thread; a task that outlasts `timeoutMs` or its heap
 * is stopped and refused (REJECTED) with the reason.
 */
export async function runTask<K extends TaskName>(task: K, input: TaskInput<K>, what: string, timeoutMs = 30_000): Promise<TaskOutput<K>> {
  const release = await slot();
  try {
    return await new Promise<TaskOutput<K>>((resolve, reject) => {
      const worker = new Worker(workerScript(), { workerData: { task, input }, resourceLimits: { maxOldGenerationSizeMb: TASK_HEAP_MB } });
      let settled = false;
      const settle = (f: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        void worker.terminate();
        f();
      };
      const timer = setTimeout(() => settle(() => reject(new RejectedError(`${what} took longer than ${timeoutMs / 1000} s and was stopped`))), timeoutMs);
      worker.once('message', (reply: TaskReply) =>
        settle(() => (reply.ok ? resolve(reply.result as TaskOutput<K>) : reject(reply.rejected ? new RejectedError(reply.message) : new Error(reply.message)))),
      );
      worker.once('error', (err) =>
        settle(() =>
          reject((err as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY' ? new RejectedError(`${what} needed more than ${TASK_HEAP_MB} MB and was stopped`) : err),
        ),
      );
      worker.once('exit', (code) => settle(() => reject(new Error(`${what}: the worker thread exited with status ${code} before answering`))));
    });
  } finally {
    release();
  }
}

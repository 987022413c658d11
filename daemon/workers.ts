// Work the daemon must not do on its event loop runs in helper processes started from one script,
// daemon/worker.ts (dist/worker.js in the bundle, beside this file in either layout): training jobs
// (jobs/engineProcess.ts) and one-shot tasks such as planning a client's inventory, which can take
// seconds for thousands of wide layers. A process, not a thread: its memory goes back to the system
// when it ends (a thread's would stay in the daemon's allocator), and it can be stopped at any moment.
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { TaskInput, TaskName, TaskOutput, TaskReply } from './tasks';
import { describeIoError, errnoCode, JobIoError, RejectedError } from './jobs/trainer';

/** Why a helper process could not be started or reached, as the job or request is told it. */
function startFailure(err: unknown, what: string): Error {
  const code = errnoCode(err);
  return code ? new JobIoError(code, describeIoError(code, `starting a helper process for ${what}`)) : new RejectedError(`${what}: could not start a helper process: ${(err as Error).message}`);
}

export function workerScript(): string {
  return join(__dirname, 'worker.js');
}

/** First argument of the worker script that makes it a task process. */
export const TASK_ROLE = 'task';
/** Tasks running at once; more wait their turn (a client flooding plan.suggest gets a queue, not a process each). */
const MAX_RUNNING = 2;
/** Tasks waiting beyond this are refused at once. */
const MAX_WAITING = 64;
/** Heap a task may use: a plan of the largest inventory the protocol accepts needs far less. */
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
 * Runs a task (daemon/tasks.ts) in a helper process; a task that outlasts `timeoutMs` or its heap
 * is stopped and refused (REJECTED) with the reason.
 */
export async function runTask<K extends TaskName>(task: K, input: TaskInput<K>, what: string, timeoutMs = 30_000): Promise<TaskOutput<K>> {
  const release = await slot();
  try {
    return await new Promise<TaskOutput<K>>((resolve, reject) => {
      let child: ChildProcess;
      try {
        child = fork(workerScript(), [TASK_ROLE], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], execArgv: [`--max-old-space-size=${TASK_HEAP_MB}`] });
      } catch (err) {
        return reject(startFailure(err, what));
      }
      // No process (no descriptor left for its pipes, EMFILE; no memory to fork, ENOMEM): the reason, not a crash.
      if (child.pid === undefined || typeof child.send !== 'function') {
        const failed = child;
        const timer = setTimeout(() => reject(startFailure(new Error('the process did not start'), what)), 1000);
        failed.once('error', (err) => {
          clearTimeout(timer);
          reject(startFailure(err, what));
        });
        if (failed.pid !== undefined) failed.kill('SIGKILL');
        return;
      }
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString('utf8')).slice(-2000)));
      let settled = false;
      const settle = (f: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (child.exitCode === null) child.kill('SIGKILL');
        f();
      };
      const timer = setTimeout(() => settle(() => reject(new RejectedError(`${what} took longer than ${timeoutMs / 1000} s and was stopped`))), timeoutMs);
      child.once('message', (reply: TaskReply) =>
        settle(() => (reply.ok ? resolve(reply.result as TaskOutput<K>) : reject(reply.rejected ? new RejectedError(reply.message, reply.data) : new Error(reply.message)))),
      );
      child.once('error', (err) => settle(() => reject(startFailure(err, what))));
      child.once('exit', (code, signal) =>
        settle(() =>
          reject(
            /heap out of memory/i.test(stderr)
              ? new RejectedError(`${what} needed more than ${TASK_HEAP_MB} MB and was stopped`)
              : new Error(`${what}: the helper process ended (${signal ?? `status ${code}`}) before answering${stderr ? `: ${stderr.trim().split('\n').pop()}` : ''}`),
          ),
        ),
      );
      child.send({ task, input });
    });
  } finally {
    release();
  }
}

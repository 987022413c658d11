// The daemon's second script (dist/worker.js), started by the daemon, never by a person:
//   worker.js task        answers one task (daemon/tasks.ts) sent over IPC, then exits;
//   worker.js engine-job  a training job's process (jobs/engineChild.ts).
// Each role loads only its own modules.
import { ENGINE_JOB_ROLE } from '../protocol/engineJob';

async function main(): Promise<void> {
  const role = process.argv[2];
  if (role === ENGINE_JOB_ROLE) {
    (await import('./jobs/engineChild')).serveEngineJob();
  } else if (role === 'task' && process.send) {
    const { runTaskHere } = await import('./tasks');
    process.once('message', async (m: { task: Parameters<typeof runTaskHere>[0]; input: unknown }) => {
      const reply = await runTaskHere(m.task, m.input);
      process.send?.(reply, () => process.disconnect());
    });
  } else {
    process.stderr.write('this is a Pixelfly daemon worker; the daemon starts it, not a person\n');
    process.exitCode = 2;
  }
}

void main();

// The daemon and the CUDA backend: `hello` lists GPUs with compute capability when the CUDA
// runtime sees them, a job's `backend` setting picks or forces the backend, and the job record
// says which one ran ('cuda' on a GPU machine with 'auto', 'cpu' here).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { JobEvent } from '../../protocol/daemon';
import type { DaemonClient } from '../../client/daemonClient';
import { cudaInfo } from '../../native/cuda';
import { removeHome, startDaemon, tempHome, waitFor } from '../daemon/harness';

const info = cudaInfo();
const skip = info ? false : 'SKIPPED: the native addon is not built; run `npm run build`';
const TINY_MLP = { kind: 'mlp', name: 'tiny', inputFeatures: 16, hidden: [32], classes: 4 };

async function runJob(client: DaemonClient, backend: 'auto' | 'cpu' | 'cuda') {
  const job = await client.request('job.submit', {
    spec: TINY_MLP,
    plan: { layers: [] },
    dataset: { kind: 'synthetic' },
    hyper: { epochs: 1, batchSize: 8, lr: 1e-3, maxSteps: 3, threads: 1, backend },
    compare: false,
  });
  const events: JobEvent[] = [];
  client.onEvent((e) => {
    if (e.jobId === job.jobId) events.push(e);
  });
  await client.request('job.subscribe', { jobId: job.jobId, fromSeq: 0 });
  await waitFor(() => events.some((e) => e.type === 'completed'), 30_000, `the ${backend} job to finish`);
  return client.request('job.get', { jobId: job.jobId });
}

test('hello reports GPUs from the CUDA runtime; jobs record and obey their backend setting', { skip, timeout: 90_000 }, async () => {
  const home = tempHome();
  const daemon = await startDaemon(home);
  try {
    const client = await daemon.client();
    const hello = await client.request('hello', {} as never);
    if (info!.available) {
      assert.ok(hello.gpus.length > 0 && hello.gpus.every((g) => /^\d+\.\d+$/.test(g.computeCapability ?? '')), JSON.stringify(hello.gpus));
    }
    const cpu = await runJob(client, 'cpu');
    assert.equal(cpu.state, 'completed', cpu.error);
    assert.equal(cpu.backend, 'cpu', 'the cpu setting forces the CPU');
    const auto = await runJob(client, 'auto');
    assert.equal(auto.state, 'completed', auto.error);
    assert.equal(auto.backend, info!.available ? 'cuda' : 'cpu');
    const cuda = await runJob(client, 'cuda');
    if (info!.available) {
      assert.equal(cuda.state, 'completed', cuda.error);
      assert.equal(cuda.backend, 'cuda');
    } else {
      assert.equal(cuda.state, 'failed');
      assert.match(cuda.error ?? '', /backend: 'cuda' requested but .+/);
    }
    client.close();
  } finally {
    await daemon.stop();
    removeHome(home);
  }
});

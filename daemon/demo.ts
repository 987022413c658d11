// The built-in default run of `pixelfly train` (and `npm run demo`): an MLP-Mixer on
// Fashion-MNIST, dense vs Pixelfly, sized to finish in a couple of minutes on 2 cores. When the
// dataset is not installed the daemon substitutes the synthetic task and says so.
import type { MethodParamsIn } from '../protocol/daemon';
import type { MixerSpec } from '../core/modelSpec';

export interface Demo {
  description: string;
  spec: Record<string, unknown>;
  dataset: MethodParamsIn<'job.submit'>['dataset'];
  hyper: MethodParamsIn<'job.submit'>['hyper'];
}

export function defaultDemo(): Demo {
  // Channel-mixing layers 256 -> 1024 -> 256 are what the planner sparsifies (token mixing over
  // 49 tokens is too small to gain); two blocks keep a step well under a second on 2 cores.
  const spec: MixerSpec = {
    kind: 'mixer',
    name: 'demo-mixer-fashion-mnist',
    image: { channels: 1, height: 28, width: 28 },
    patch: 4,
    dim: 256,
    depth: 2,
    tokenHidden: 128,
    channelHidden: 1024,
    classes: 10,
  };
  return {
    description:
      'no model given: training the built-in demo, an MLP-Mixer (patch 4, width 256, 2 blocks) on Fashion-MNIST, dense vs Pixelfly in alternating steps',
    spec: { ...spec },
    dataset: { kind: 'fashion-mnist' },
    hyper: { epochs: 1, batchSize: 64, lr: 2e-3, warmupSteps: 20, maxSteps: 200, evalEvery: 100, evalSamples: 2000 },
  };
}

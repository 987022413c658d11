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
  // Mixer-S widths (dim 512, token hidden 256, channel hidden 2048) at depth 2: the channel-mixing
  // layers 512 -> 2048 -> 512 are what the planner sparsifies (token mixing over 49 tokens is too
  // small to gain), and at these widths they are most of a dense step, as in the paper's Mixers.
  // A Pixelfly step takes about 0.2 s on 2 cores, so 200 alternating steps take about 2 minutes.
  const spec: MixerSpec = {
    kind: 'mixer',
    name: 'demo-mixer-fashion-mnist',
    image: { channels: 1, height: 28, width: 28 },
    patch: 4,
    dim: 512,
    depth: 2,
    tokenHidden: 256,
    channelHidden: 2048,
    classes: 10,
  };
  return {
    description:
      'no model given: training the built-in demo, an MLP-Mixer (patch 4, width 512, 2 blocks) on Fashion-MNIST, dense vs Pixelfly in alternating steps',
    spec: { ...spec },
    dataset: { kind: 'fashion-mnist' },
    hyper: { epochs: 1, batchSize: 64, lr: 2e-3, warmupSteps: 20, maxSteps: 200, evalEvery: 100, evalSamples: 2000 },
  };
}

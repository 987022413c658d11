// Small models shared by the engine and CUDA tests.
import type { ModelSpec } from '../../core/modelSpec';
import type { PlanLike } from '../../native/engine';

export const PF = { block: 16, butterflySize: 2, nFactors: 1, globalSize: 0, shuffle: false, rank: 4 };

/** A two-block MLP-Mixer on 8x8 single-channel images, 4 classes. */
export const MIXER: ModelSpec = {
  kind: 'mixer', image: { channels: 1, height: 8, width: 8 }, patch: 2, dim: 32, depth: 2, tokenHidden: 16, channelHidden: 64, classes: 4,
};

/** Pixelfly on both channel-mix layers and the first token-mix layer of MIXER. */
export const MIXER_PLAN: PlanLike = {
  layers: [
    { name: 'blocks.channel_mix.fc1', sparsify: true, config: PF },
    { name: 'blocks.channel_mix.fc2', sparsify: true, config: PF },
    { name: 'blocks.token_mix.fc1', sparsify: true, config: PF },
  ],
};

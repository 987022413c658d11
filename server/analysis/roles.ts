/**
 * What a layer does in the model, from the names on its module path (`blocks.3.attn.qkv`), the
 * classes of the modules it sits in (`Attention`, `Mlp`, `MixerBlock`) and its kind. The names
 * follow the conventions of nanoGPT/minGPT, timm, Hugging Face and lucidrains' repositories.
 */
import type { LayerRole } from '../../core/inventory';
import type { LayerKind } from './values';

export interface PathStep {
  /** Attribute name or container index. */
  key: string;
  /** Class of the module reached through this step (undefined for plain containers). */
  className?: string;
  /** One representative of many (built in a loop run once with a multiplier): printed as `*`. */
  star?: boolean;
  /** Role implied by the neighbours in a Sequential (after a patchifying Rearrange, after a pooling Reduce). */
  hint?: 'patch_embed' | 'head';
  /** Position among the layers of its Sequential/ModuleList: the first of an MLP is fc1, the last fc2. */
  ordinal?: 'first' | 'last';
}

const QKV = /^(qkv|c_attn|q_attn|k_attn|v_attn|in_proj|query_key_value|to_qkv|wqkv|qkv_proj|q|k|v|kv|query|key|value|to_q|to_k|to_v|to_kv|q_proj|k_proj|v_proj|wq|wk|wv|q_lin|k_lin|v_lin)$/i;
const ATTN_OUT = /^(proj|c_proj|out_proj|o_proj|to_out|out|wo|dense|o|output|out_lin|proj_out)$/i;
const FC1 = /^(fc1|c_fc|w1|w3|up|up_proj|gate_proj|dense_h_to_4h|lin1|wi|wi_0|wi_1|intermediate|fc_in|fc1_g|fc1_x|in_proj)$/i;
const FC2 = /^(fc2|c_proj|w2|down|down_proj|dense_4h_to_h|lin2|wo|output|fc_out|proj|out_proj)$/i;
/** Names that mean fc1/fc2 even outside an MLP-named module. */
const STRONG_FC1 = /^(fc1|c_fc|w1|w3|up_proj|gate_proj|dense_h_to_4h|fc_in|lin1|linear1)$/i;
const STRONG_FC2 = /^(fc2|w2|down_proj|dense_4h_to_h|fc_out|lin2|linear2)$/i;
/** Output layers: `head`, torchvision's `heads`, DeiT's `head_dist`, `lm_head`, `mlp_head`, HF's `score` / `classifier` / `qa_outputs`, … */
const HEAD = /^(heads?|score|classifier|logits|output_layer|to_logits|last_linear|qa_outputs)$|^(head|classifier|logits)_\w+$|_(head|classifier)$/i;
/** Modules whose layers all belong to the head: timm's ClassifierHead / NormMlpClassifierHead, a `head` Sequential, `pre_logits`. */
const HEAD_CTX_KEY = /^(heads?|classifier|pre_logits|(head|classifier)_\w+|\w+_(head|classifier))$/i;
const HEAD_CTX_CLASS = /(Head|Classifier)$/;
const ATTN_CTX = /(attn|attention|mha|msa)/i;
const MLP_CTX = /(mlp|ffn|feedforward|feed_forward|^ff$|channel|intermediate|swiglu|glu)/i;
const TOKEN_CTX = /(token|spatial)/i;

function words(path: PathStep[]): string[] {
  return path.flatMap((s) => [s.key, s.className ?? '']).filter((w) => w && !/^\d+$|^\*$/.test(w));
}

export function classifyRole(kind: LayerKind, path: PathStep[], inF: number | undefined, outF: number | undefined, vocab: Set<number>): LayerRole {
  if (kind === 'embedding') return 'embedding';
  if (kind === 'patch') return 'patch_embed';
  if (kind === 'attn_core') return 'attn_core';
  if (kind === 'mha_in') return 'attn_qkv';
  if (kind === 'mha_out') return 'attn_out';
  const hint = path[path.length - 1]?.hint;
  if (hint && (kind === 'linear' || kind === 'hf_conv1d')) return hint;
  const names = path.map((s) => s.key).filter((k) => !/^\d+$|^\*$/.test(k));
  const leaf = names[names.length - 1] ?? '';
  const context = words(path.slice(0, -1));
  // Token mixing: a Mixer's token MLP, or lucidrains' channel-first Conv1d(k=1) over the patch axis.
  // A Linear over flattened patches (lucidrains' to_patch_embedding) is the patch embedding.
  if ([leaf, ...context].some((w) => /patch_?embed|patch_?embedding|to_patch/i.test(w))) return 'patch_embed';
  const headContext = path.slice(0, -1).some((s) => (HEAD_CTX_KEY.test(s.key) || HEAD_CTX_CLASS.test(s.className ?? '')) && !ATTN_CTX.test(s.className ?? ''));
  // A classifier's `fc` at the model's top level (torchvision's ResNet, Inception, …) is its head.
  const topLevelFc = names.length === 1 && /^fc$/i.test(leaf) && kind !== 'conv';
  if (HEAD.test(leaf) || headContext || topLevelFc || (outF !== undefined && vocab.has(outF) && !context.some((w) => ATTN_CTX.test(w) || MLP_CTX.test(w)))) {
    return 'head';
  }
  if (kind === 'conv') return 'conv';
  if (kind === 'conv1d' || context.some((w) => TOKEN_CTX.test(w)) || TOKEN_CTX.test(leaf)) return 'token_mix';
  const inAttn = context.some((w) => ATTN_CTX.test(w));
  const inMlp = context.some((w) => MLP_CTX.test(w));
  // The innermost context wins when both appear (an Mlp inside an attention-named block).
  const innermost = [...context].reverse().find((w) => ATTN_CTX.test(w) || MLP_CTX.test(w));
  const attnFirst = innermost !== undefined && ATTN_CTX.test(innermost) && !MLP_CTX.test(innermost);
  if (inAttn && (attnFirst || !inMlp)) {
    if (QKV.test(leaf)) return 'attn_qkv';
    if (ATTN_OUT.test(leaf)) return 'attn_out';
    if (inF !== undefined && outF !== undefined && outF > inF) return 'attn_qkv';
    return 'attn_out';
  }
  if (inMlp || STRONG_FC1.test(leaf) || STRONG_FC2.test(leaf)) {
    if (FC1.test(leaf)) return 'mlp_fc1';
    if (FC2.test(leaf)) return 'mlp_fc2';
    const ordinal = path[path.length - 1]?.ordinal;
    if (ordinal) return ordinal === 'first' ? 'mlp_fc1' : 'mlp_fc2';
    if (inF !== undefined && outF !== undefined) return outF >= inF ? 'mlp_fc1' : 'mlp_fc2';
    return 'mlp_fc1';
  }
  if (QKV.test(leaf) && leaf.length > 1) return 'attn_qkv';
  return 'other';
}

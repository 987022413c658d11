/**
 * Python source for the library helpers that model files most often import, used when the
 * real package is not found on the search paths (no site-packages selected, or not installed).
 * They mirror the upstream signatures and the layers they build, nothing else: the real
 * timm/transformers sources are read instead whenever they are installed.
 */
const TIMM_LAYERS = `
import torch.nn as nn
from functools import partial

def to_2tuple(x):
    if isinstance(x, (tuple, list)):
        return tuple(x)
    return (x, x)

def make_divisible(v, divisor=8, min_value=None, round_limit=.9):
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v

class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, norm_layer=None,
                 bias=True, drop=0., use_conv=False):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        linear_layer = partial(nn.Conv2d, kernel_size=1) if use_conv else nn.Linear
        self.fc1 = linear_layer(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.fc2 = linear_layer(hidden_features, out_features, bias=bias)

class GluMlp(nn.Module):
    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.Sigmoid, norm_layer=None,
                 bias=True, drop=0., use_conv=False, gate_last=True):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        linear_layer = partial(nn.Conv2d, kernel_size=1) if use_conv else nn.Linear
        self.fc1 = linear_layer(in_features, hidden_features, bias=bias)
        self.fc2 = linear_layer(hidden_features // 2, out_features, bias=bias)

class SwiGLU(nn.Module):
    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.SiLU, norm_layer=None,
                 bias=True, drop=0.):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1_g = nn.Linear(in_features, hidden_features, bias=bias)
        self.fc1_x = nn.Linear(in_features, hidden_features, bias=bias)
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)

class PatchEmbed(nn.Module):
    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, norm_layer=None, flatten=True,
                 output_fmt=None, bias=True, strict_img_size=True, dynamic_img_pad=False):
        super().__init__()
        self.patch_size = to_2tuple(patch_size)
        self.img_size = to_2tuple(img_size)
        self.grid_size = tuple([s // p for s, p in zip(self.img_size, self.patch_size)])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=bias)

class Attention(nn.Module):
    def __init__(self, dim, num_heads=8, qkv_bias=False, qk_norm=False, proj_bias=True, attn_drop=0., proj_drop=0.,
                 norm_layer=nn.LayerNorm):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

def trunc_normal_(tensor, mean=0., std=1., a=-2., b=2.):
    return tensor

def lecun_normal_(tensor):
    return tensor

def use_fused_attn(experimental=False):
    return True

def get_act_layer(name):
    return nn.GELU

def get_norm_layer(name):
    return nn.LayerNorm

class DropPath(nn.Module):
    def __init__(self, drop_prob=0., scale_by_keep=True):
        super().__init__()

class LayerScale(nn.Module):
    def __init__(self, dim, init_values=1e-5, inplace=False):
        super().__init__()
        self.dim = dim
`;

const TIMM_BUILDER = `
def build_model_with_cfg(model_cls, variant, pretrained=False, pretrained_cfg=None, pretrained_cfg_overlay=None,
                         model_cfg=None, feature_cfg=None, pretrained_strict=True, pretrained_filter_fn=None,
                         kwargs_filter=None, **kwargs):
    if model_cfg is not None:
        return model_cls(cfg=model_cfg, **kwargs)
    return model_cls(**kwargs)
`;

const TIMM_REGISTRY = `
def register_model(fn):
    return fn

def generate_default_cfgs(cfgs):
    return cfgs
`;

const HF_PYTORCH_UTILS = `
import torch.nn as nn

class Conv1D(nn.Module):
    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
`;

const HF_MODELING_UTILS = `
import torch.nn as nn
from transformers.pytorch_utils import Conv1D

class PreTrainedModel(nn.Module):
    def __init__(self, config, *inputs, **kwargs):
        super().__init__()
        self.config = config

    def post_init(self):
        return None
`;

const HF_CONFIGURATION_UTILS = `
class PretrainedConfig:
    attribute_map = {}

    def __init__(self, **kwargs):
        self.add_cross_attention = kwargs.pop("add_cross_attention", False)
        self.is_decoder = kwargs.pop("is_decoder", False)
        self.num_labels = kwargs.pop("num_labels", 2)
        for key, value in kwargs.items():
            setattr(self, key, value)
`;

const HF_ACTIVATIONS = `
import torch.nn as nn
ACT2FN = {"gelu": nn.GELU, "gelu_new": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}
`;

/** Module name → source. Several names map to the same helpers, as upstream re-exports them. */
export const STUBS: ReadonlyMap<string, string> = new Map([
  ['timm.layers', TIMM_LAYERS],
  ['timm.models.layers', TIMM_LAYERS],
  ['timm.layers.mlp', TIMM_LAYERS],
  ['timm.layers.patch_embed', TIMM_LAYERS],
  ['timm.layers.helpers', TIMM_LAYERS],
  ['timm.models._builder', TIMM_BUILDER],
  ['timm.models._registry', TIMM_REGISTRY],
  ['timm.models.registry', TIMM_REGISTRY],
  ['timm.models._manipulate', 'def checkpoint_seq(functions, x):\n    return x\n'],
  ['timm.models.helpers', TIMM_BUILDER],
  ['transformers.pytorch_utils', HF_PYTORCH_UTILS],
  ['transformers.modeling_utils', HF_MODELING_UTILS],
  ['transformers.configuration_utils', HF_CONFIGURATION_UTILS],
  ['transformers.activations', HF_ACTIVATIONS],
]);

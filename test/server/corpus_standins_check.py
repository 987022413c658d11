"""Checks the test stand-ins in test/fixtures/python-site against what the real libraries do: einops'
patterns against explicit permute/reshape, HF Conv1D against its addmm formula, PretrainedConfig's
aliasing, defaults and attention implementation, PreTrainedModel's init and weight tying, timm's layers and builder defaults.
Run by corpusRuntime.test.ts (PYTHONPATH=test/fixtures/python-site); exits non-zero on a failure.
"""
import math
import sys
import unittest
from pathlib import Path

import torch
import torch.nn as nn

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"
sys.path.insert(0, str(MODELS))
import build_corpus  # noqa: E402  (puts the stand-ins on sys.path and loads the corpus files)


class Einops(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)

    def test_patterns_equal_explicit_permute_and_reshape(self):
        from einops import rearrange, reduce, repeat
        x = torch.randn(2, 3, 8, 12)
        self.assertTrue(torch.equal(rearrange(x, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=4, p2=4),
                                    x.reshape(2, 3, 2, 4, 3, 4).permute(0, 2, 4, 3, 5, 1).reshape(2, 6, 48)))
        t = torch.randn(2, 5, 24)
        heads = rearrange(t, "b n (h d) -> b h n d", h=4)
        self.assertTrue(torch.equal(heads, t.view(2, 5, 4, 6).transpose(1, 2)))
        self.assertTrue(torch.equal(rearrange(heads, "b h n d -> b n (h d)"), t))
        cls = torch.randn(1, 1, 7)
        self.assertTrue(torch.equal(repeat(cls, "1 1 d -> b 1 d", b=3), cls.expand(3, 1, 7)))
        self.assertTrue(torch.equal(repeat(t, "b n c -> b n c k", k=2), t.unsqueeze(-1).expand(2, 5, 24, 2)))
        self.assertTrue(torch.equal(repeat(t, "b n c -> (b r) n c", r=2), t.unsqueeze(1).expand(2, 2, 5, 24).reshape(4, 5, 24)))
        self.assertTrue(torch.equal(repeat(t, "b n c -> b n c 3"), t.unsqueeze(-1).expand(2, 5, 24, 3)))
        self.assertTrue(torch.equal(rearrange(t, "b n c -> b 1 n c"), t.unsqueeze(1)))
        self.assertTrue(torch.equal(rearrange(t, "b n c -> b n () c"), t.unsqueeze(2)))
        self.assertTrue(torch.allclose(reduce(t, "b n c -> b c", "mean"), t.mean(1)))
        self.assertTrue(torch.equal(reduce(t[:, :4], "b (h p) c -> b c h", "max", p=2), t[:, :4].view(2, 2, 2, 24).amax(2).transpose(1, 2)))
        self.assertTrue(torch.allclose(reduce(t, "b n c -> c", "sum"), t.sum((0, 1))))

    def test_layers_are_the_functions_as_parameter_free_modules(self):
        from einops import rearrange, reduce
        from einops.layers.torch import Rearrange, Reduce
        x = torch.randn(2, 3, 8, 8, requires_grad=True)
        layer = Rearrange("b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=4, p2=4)
        self.assertEqual(list(layer.parameters()), [])
        y = layer(x)
        self.assertTrue(torch.equal(y, rearrange(x, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=4, p2=4)))
        y.sum().backward()
        self.assertTrue(torch.equal(x.grad, torch.ones_like(x)))
        z = torch.randn(2, 5, 6)
        self.assertTrue(torch.equal(Reduce("b n c -> b c", "mean")(z), reduce(z, "b n c -> b c", "mean")))

    def test_errors_say_what_is_wrong(self):
        from einops import EinopsError, rearrange, repeat
        from einops.layers.torch import Rearrange
        x = torch.randn(2, 6)
        cases = [
            (lambda: rearrange(x, "b c d -> b c d"), "left side has 3 dimensions"),
            (lambda: rearrange(x, "b (c k) -> b c k", k=4), "does not split"),
            (lambda: rearrange(x, "b (c k) -> b c k"), "cannot infer"),
            (lambda: rearrange(x, "b c -> b d"), "same axes on both sides"),
            (lambda: rearrange(x, "b ... -> b ..."), "ellipsis"),
            (lambda: rearrange(x, "b c"), "exactly one '->'"),
            (lambda: rearrange(x, "b (c -> b c"), "'(' without ')'"),
            (lambda: rearrange(x, "b c -> b c", z=3), "not used"),
            (lambda: repeat(x, "b c -> b c r"), "must be given"),
            (lambda: Rearrange("b c -> c b d"), "same axes"),
        ]
        for fn, message in cases:
            with self.assertRaises(EinopsError) as cm:
                fn()
            self.assertIn(message, str(cm.exception))


class Transformers(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)

    def test_conv1d_is_hf_conv1d(self):
        from transformers.pytorch_utils import Conv1D
        m = Conv1D(1024, 256)
        self.assertEqual(tuple(m.weight.shape), (256, 1024))
        self.assertTrue(torch.equal(m.bias, torch.zeros(1024)))
        self.assertAlmostEqual(float(m.weight.std()), 0.02, delta=0.001)
        self.assertAlmostEqual(float(m.weight.mean()), 0.0, delta=0.001)
        with torch.no_grad():
            m.bias.normal_()
        x = torch.randn(2, 5, 256)
        self.assertTrue(torch.equal(m(x), torch.addmm(m.bias, x.view(-1, 256), m.weight).view(2, 5, 1024)))
        self.assertTrue(torch.allclose(m(x), x @ m.weight + m.bias, atol=1e-5))
        self.assertEqual(repr(m), "Conv1D(nf=1024, nx=256)")

    def test_act2fn_builds_a_new_module_per_lookup(self):
        from transformers.activations import ACT2FN
        a, b = ACT2FN["gelu_new"], ACT2FN["gelu_new"]
        self.assertIsNot(a, b)
        x = torch.randn(100)
        self.assertTrue(torch.allclose(a(x), nn.functional.gelu(x, approximate="tanh"), atol=1e-6))
        self.assertTrue(torch.allclose(ACT2FN["gelu"](x), nn.functional.gelu(x)))
        with self.assertRaises(KeyError):
            ACT2FN["nope"]

    def test_config_defaults_and_attribute_map(self):
        GPT2Config = build_corpus.load("hf_gpt2/configuration_gpt2.py").GPT2Config
        c = GPT2Config(n_embd=64, n_layer=2, foo=3)
        self.assertEqual((c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.max_position_embeddings), (64, 2, 12, 1024))
        c.hidden_size = 128
        self.assertEqual(c.n_embd, 128)
        self.assertNotIn("hidden_size", c.__dict__)
        self.assertEqual((c.num_labels, c.id2label), (2, {0: "LABEL_0", 1: "LABEL_1"}))
        self.assertEqual((c.add_cross_attention, c.tie_word_embeddings, c.pad_token_id, c.bos_token_id, c.foo), (False, True, None, 50256, 3))
        self.assertEqual(GPT2Config(num_labels=5).num_labels, 5)
        self.assertTrue(c.use_return_dict)
        # transformers 4.36+: the attention implementation is the attn_implementation keyword, "eager" by default.
        self.assertEqual((c._attn_implementation, GPT2Config(attn_implementation="sdpa")._attn_implementation), ("eager", "sdpa"))
        self.assertNotIn("attn_implementation", c.__dict__)

    def test_pretrained_model_init_hooks_and_tying(self):
        from transformers import PretrainedConfig, PreTrainedModel
        hf = build_corpus.load("hf_gpt2/modeling_gpt2.py")
        GPT2Config, GPT2LMHeadModel = hf.GPT2Config, hf.GPT2LMHeadModel
        with self.assertRaises(ValueError):
            GPT2LMHeadModel({"n_embd": 8})
        seen = []

        class Probe(PreTrainedModel):
            def __init__(self, config):
                super().__init__(config)
                self.a = nn.Linear(2, 2)
                self.b = nn.Sequential(nn.Linear(2, 2))
                self.post_init()
                self.post_init()  # as a wrapper model's post_init would: modules are initialised once

            def _init_weights(self, module):
                seen.append(type(module).__name__)

        Probe(PretrainedConfig())
        self.assertEqual(sorted(seen), ["Linear", "Linear", "Probe", "Sequential"])
        tied = GPT2LMHeadModel(GPT2Config(vocab_size=96, n_positions=16, n_embd=32, n_layer=1, n_head=2))
        self.assertIs(tied.lm_head.weight, tied.transformer.wte.weight)
        untied = GPT2LMHeadModel(GPT2Config(vocab_size=96, n_positions=16, n_embd=32, n_layer=1, n_head=2, tie_word_embeddings=False))
        self.assertIsNot(untied.lm_head.weight, untied.transformer.wte.weight)
        ids = torch.randint(0, 96, (2, 16))
        out = tied(ids, labels=ids)
        self.assertIs(out.loss, out[0])
        self.assertIs(out.logits, out["logits"])
        self.assertEqual(len(out.to_tuple()), 2)
        self.assertEqual(tuple(out.logits.shape), (2, 16, 96))
        self.assertEqual(len(tied(ids, return_dict=False)), 1)


class Timm(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)

    def test_mlp_and_glu_mlp(self):
        from timm.layers import GluMlp, Mlp
        m = Mlp(16, 64)
        self.assertEqual((m.fc1.in_features, m.fc1.out_features, m.fc2.out_features), (16, 64, 16))
        self.assertIsInstance(m.act, nn.GELU)
        self.assertEqual(Mlp(16).fc1.out_features, 16)
        x = torch.randn(3, 16)
        self.assertTrue(torch.allclose(m(x), m.fc2(nn.functional.gelu(m.fc1(x)))))
        self.assertIsNone(Mlp(16, 8, bias=False).fc1.bias)
        conv = Mlp(16, 8, use_conv=True)
        self.assertEqual(conv.fc1.kernel_size, (1, 1))
        g = GluMlp(16, 64)
        self.assertEqual((g.fc1.out_features, g.fc2.in_features), (64, 32))
        h = g.fc1(x)
        self.assertTrue(torch.allclose(g(x), g.fc2(h[:, :32] * torch.sigmoid(h[:, 32:]))))
        with self.assertRaises(AssertionError):
            GluMlp(16, 63)

    def test_patch_embed(self):
        from timm.layers import PatchEmbed
        p = PatchEmbed(img_size=32, patch_size=8, in_chans=3, embed_dim=24)
        self.assertEqual((p.grid_size, p.num_patches, p.proj.kernel_size, p.proj.stride), ((4, 4), 16, (8, 8), (8, 8)))
        x = torch.randn(2, 3, 32, 32)
        self.assertTrue(torch.equal(p(x), p.proj(x).flatten(2).transpose(1, 2)))
        with self.assertRaises(AssertionError):
            p(torch.randn(2, 3, 16, 32))
        self.assertEqual(tuple(PatchEmbed(32, 8, 3, 24, output_fmt="NHWC")(x).shape), (2, 4, 4, 24))
        self.assertEqual(tuple(PatchEmbed(32, 8, 3, 24, strict_img_size=False, dynamic_img_pad=True)(torch.randn(1, 3, 30, 33)).shape), (1, 20, 24))

    def test_drop_path_layer_scale_init_and_helpers(self):
        from timm.layers import DropPath, LayerScale, lecun_normal_, to_2tuple, trunc_normal_, use_fused_attn
        x = torch.ones(4000, 3)
        d = DropPath(0.5)
        d.train()
        y = d(x)
        self.assertEqual(set(y[:, 0].tolist()), {0.0, 2.0})
        self.assertTrue(torch.equal(y[:, 0], y[:, 2]), "whole samples are dropped")
        self.assertAlmostEqual(float((y[:, 0] == 0).float().mean()), 0.5, delta=0.05)
        d.eval()
        self.assertIs(d(x), x)
        self.assertTrue(torch.equal(LayerScale(3, init_values=0.1)(x), x * 0.1))
        self.assertEqual((to_2tuple(3), to_2tuple((1, 2))), ((3, 3), (1, 2)))
        self.assertEqual(use_fused_attn(), hasattr(nn.functional, "scaled_dot_product_attention"))
        w = torch.empty(512, 400)
        lecun_normal_(w)
        self.assertAlmostEqual(float(w.std()), 1 / math.sqrt(400), delta=0.002)
        self.assertLessEqual(float(w.abs().max()), 2 * (1 / math.sqrt(400)) / .87962566103423978 + 1e-6)
        trunc_normal_(w, std=0.02)
        self.assertLessEqual(float(w.abs().max()), 2.0)

    def test_registry_and_builder_defaults(self):
        import timm
        vit = build_corpus.load("timm/vision_transformer.py")
        build_corpus.load("timm/mlp_mixer.py")
        self.assertTrue({"vit_tiny_patch16_224", "vit_base_patch16_224", "mixer_s16_224", "gmixer_24_224"} <= set(timm.list_models()))
        self.assertEqual(timm.list_models("mixer_*"), ["mixer_b16_224", "mixer_s16_224"])
        # the ViT variants have configs with fixed_input_size: img_size defaults from the config's input_size
        m = vit.vit_tiny_patch16_224(depth=1)
        self.assertEqual((m.patch_embed.img_size, m.head.out_features), ((224, 224), 1000))
        self.assertEqual(m.pretrained_cfg["interpolation"], "bicubic")
        self.assertEqual(vit.vit_tiny_patch16_224(depth=1, img_size=32).patch_embed.img_size, (32, 32))
        made = timm.create_model("vit_tiny_patch16_224.augreg_in21k_ft_in1k", depth=1, img_size=32, num_classes=7)
        self.assertEqual((type(made).__name__, made.head.out_features, made.pretrained_cfg["crop_pct"]), ("VisionTransformer", 7, 0.9))
        with self.assertRaises(RuntimeError):
            vit.vit_tiny_patch16_224(pretrained=True)
        with self.assertRaises(RuntimeError):
            timm.create_model("resnet50")


if __name__ == "__main__":
    unittest.main(verbosity=1)

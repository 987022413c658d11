"""PixelflyMultiheadAttention computes what nn.MultiheadAttention does, and sparsify makes the
projections of an nn.MultiheadAttention (nn.TransformerEncoder's included) Pixelfly."""
import torch
import torch.nn as nn

import pixelfly_torch as pt
from support import Case

E, H = 64, 4


def same(dense):
    return dense


class Attention(Case):
    def check(self, mha, *args, **kwargs):
        mine = pt.PixelflyMultiheadAttention.from_mha(mha, same, same)
        want_out, want_w = mha(*args, **kwargs)
        out, w = mine(*args, **kwargs)
        what = f"batch_first={mha.batch_first} {sorted(kwargs)}"
        self.assertClose(out, want_out, 1e-5, f"{what}: output")
        if want_w is None:
            self.assertIsNone(w)
        else:
            self.assertClose(w, want_w, 1e-5, f"{what}: weights")

    def test_matches_nn_multihead_attention(self):
        torch.manual_seed(0)
        for batch_first in (False, True):
            mha = nn.MultiheadAttention(E, H, batch_first=batch_first).eval()
            shape = (3, 7, E) if batch_first else (7, 3, E)
            x = torch.randn(*shape)
            kv = torch.randn(*((3, 5, E) if batch_first else (5, 3, E)))
            causal = torch.triu(torch.ones(7, 7, dtype=torch.bool), 1)
            pad = torch.zeros(3, 7, dtype=torch.bool)
            pad[1, -2:] = True
            self.check(mha, x, x, x)
            self.check(mha, x, x, x, attn_mask=causal)
            self.check(mha, x, x, x, attn_mask=torch.randn(7, 7))
            self.check(mha, x, x, x, attn_mask=torch.randn(3 * H, 7, 7), key_padding_mask=pad)
            self.check(mha, x, x, x, need_weights=False)
            self.check(mha, x, x, x, average_attn_weights=False)
            self.check(mha, x, kv, kv)
        mha = nn.MultiheadAttention(E, H).eval()
        u = torch.randn(6, E)
        self.check(mha, u, u, u)

    def test_sparsify_makes_transformer_encoder_projections_pixelfly(self):
        torch.manual_seed(0)
        layer = nn.TransformerEncoderLayer(E, H, dim_feedforward=128, dropout=0.0, batch_first=True)
        enc = nn.TransformerEncoder(layer, num_layers=2).eval()
        x = torch.randn(2, 9, E)
        with torch.no_grad():
            want = enc(x)
        full = {"block": 16, "butterflySize": 2, "nFactors": 1, "rank": E}
        plan = {"layers": [{"name": "layers.*.self_attn.in_proj", "in": E, "out": 3 * E, "sparsify": True, "config": full},
                           {"name": "layers.*.self_attn.out_proj", "in": E, "out": E, "sparsify": True, "config": full}]}
        report = pt.sparsify(enc, plan, from_dense=True)
        self.assertEqual([r.name for r in report], ["layers.0.self_attn.in_proj", "layers.0.self_attn.out_proj",
                                                    "layers.1.self_attn.in_proj", "layers.1.self_attn.out_proj"])
        self.assertIsInstance(enc.layers[1].self_attn, pt.PixelflyMultiheadAttention)
        self.assertIsInstance(enc.layers[1].self_attn.in_proj, pt.PixelflyLinear)
        with torch.no_grad():
            self.assertClose(enc(x), want, 1e-4, "full-rank Pixelfly projections keep the encoder's function")
        enc.train()
        enc(x).square().mean().backward()
        self.assertEqual([n for n, p in enc.named_parameters() if p.grad is None], [])

    def test_only_one_projection_and_unsupported_attention(self):
        torch.manual_seed(0)
        model = nn.Sequential(nn.MultiheadAttention(E, H))
        cfg = {"block": 16, "butterflySize": 4, "nFactors": 2, "rank": 4}
        pt.sparsify(model, {"layers": [{"name": "0.out_proj", "in": E, "out": E, "sparsify": True, "config": cfg}]})
        self.assertIsInstance(model[0].in_proj, nn.Linear)
        self.assertIsInstance(model[0].out_proj, pt.PixelflyLinear)
        other = nn.Sequential(nn.MultiheadAttention(E, H, kdim=32, vdim=32))
        with self.assertRaises(pt.PixelflyPlanError) as cm:
            pt.sparsify(other, {"layers": [{"name": "0.out_proj", "in": E, "out": E, "sparsify": True, "config": cfg}]})
        self.assertIn("0: MultiheadAttention cannot be made Pixelfly: its key/value widths", str(cm.exception))

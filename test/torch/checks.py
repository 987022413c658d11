#!/usr/bin/python3
"""The PyTorch side of the node tests that compare pixelfly_torch with the TypeScript core and the native
engine (torch.test.ts) and run a model the quick fixes rewrote (test/server/torchExport.test.ts).

  layouts CASES OUT     pixelfly_torch's layout (rows of '0'/'1') or the parameter it rejects, per case
  engine WEIGHTS X OUT  every Pixelfly layer of an engine weight export, applied to X (float64)
  attention WEIGHTS OUT every attention core of an engine weight export: its projection, density, one forward
  model DIR OUT         import the rewritten tiny model from DIR, forward + backward, report its modules
"""
import json
import sys

import torch


def layouts(cases_path, out_path):
    from pixelfly_torch import PixelflyConfigError, flat_block_butterfly_layout
    out = []
    for c in json.load(open(cases_path)):
        try:
            m = flat_block_butterfly_layout(c["out"], c["in"], c["block"], c["butterflySize"], c["nFactors"], c["globalSize"], c["shuffle"])
            out.append({"rows": ["".join("1" if v else "0" for v in row) for row in m.tolist()]})
        except PixelflyConfigError as e:
            out.append({"error": e.param})
    json.dump(out, open(out_path, "w"))


def engine(weights, x_path, out_path):
    from pixelfly_torch import PixelflyLinear, load_engine_weights, pixelfly_layers_from_export
    case = json.load(open(x_path))
    result = {}
    for name, layer in pixelfly_layers_from_export(weights).items():
        x = torch.tensor(case["x"], dtype=torch.float64).reshape(case["shape"])
        # float32 runs on the native operators where the extension is built; float64 is the masked-dense reference.
        result[name + ":float32"] = layer(x.float()).flatten().tolist()
        y = layer.double()(x)
        result[name] = y.flatten().tolist()
        # The same weights through load_engine_weights into a layer the user built.
        mine = PixelflyLinear(layer.in_features, layer.out_features, block=layer.block, butterfly_size=layer.butterfly_size,
                              n_factors=layer.n_factors, rank=layer.rank, global_size=layer.global_size, shuffle=layer.shuffle)
        load_engine_weights(mine, weights, prefix=name + ".")
        result[name + ":load_engine_weights_equal"] = bool(torch.equal(mine.double()(x), y))
    json.dump(result, open(out_path, "w"))


def attention(weights, out_path):
    from pixelfly_torch import pixelfly_attention_from_export
    torch.manual_seed(0)
    result = {}
    for name, core in pixelfly_attention_from_export(weights).items():
        q, k, v = (torch.randn(2, 2, core.max_seq_length, core.head_dim) for _ in range(3))
        y = core(q, k, v)
        fm = core.feature_map
        result[name] = {"projection": fm.projection.flatten().tolist() if fm is not None else None, "density": core.density,
                        "causal": core.causal, "finite": bool(torch.isfinite(y).all()), "shape": list(y.shape)}
    json.dump(result, open(out_path, "w"))


def model(directory, out_path):
    sys.path.insert(0, directory)
    from model import TinyTransformer
    from pixelfly_torch import PixelflyLinear
    torch.manual_seed(0)
    m = TinyTransformer()
    x = torch.randn(2, 64, 512)
    y = m(x)
    y.square().mean().backward()
    pixelfly = [n for n, mod in m.named_modules() if isinstance(mod, PixelflyLinear)]
    unused = [n for n, p in m.named_parameters() if p.grad is None]
    json.dump({
        "output": list(y.shape),
        "pixelfly": pixelfly,
        "params": sum(p.numel() for p in m.parameters()),
        "unused": unused,
        "finite": bool(torch.isfinite(y).all()),
        "backend": __import__("pixelfly_torch").backend(),
    }, open(out_path, "w"))


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    {"layouts": layouts, "engine": engine, "attention": attention, "model": model}[mode](*args)

"""A Vision Transformer as the masked autoencoder's encoder is saved (timm's
VisionTransformer with MAE's fixed 2-D sin-cos position embeddings, LayerNorm
eps 1e-6, class-token pooling), with random weights, and the output-parity
fixture the Rust import test reproduces (tests/import_vit.rs).

MAE's table, written here from its published description: for a g x g grid
and width D, with q = D/4 and frequencies w_i = 10000^(-i/q), the token at
(row, col) is [sin(col w), cos(col w), sin(row w), cos(row w)], each block
q wide; the class token's row is zero.

The fixture (default: tests/fixtures/vit_d32_p8_32px.safetensors) holds the
state dict under timm's names and layouts (OIHW patch embedding,
`pos_embed` [1, 1 + g², D]), `input.images_nhwc` (the batch in mtaffect's
NHWC layout, values in [-1, 1]) and `output.features` (the class token
after the final norm). `--learned` replaces the table with random values:
the importer must refuse it.

Usage: python3 scripts/torch_vit.py [OUT] [--width 32] [--depth 2]
       [--heads 2] [--patch 8] [--size 32] [--batch 2] [--seed 0] [--learned]
Needs torch and timm (pip install timm).
"""
import argparse
import math
import os
import sys
from functools import partial

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_train import write_safetensors  # noqa: E402


def sincos_table(g, d, dtype=torch.float32):
    """[1, 1 + g², d]: the class token's zero row, then the grid's rows (computed in float64)."""
    q = d // 4
    w = torch.tensor([10000.0 ** (-i / q) for i in range(q)], dtype=torch.float64)
    rows = [torch.zeros(d, dtype=torch.float64)]
    for p in range(g * g):
        row, col = divmod(p, g)
        parts = []
        for coord in (col, row):
            a = coord * w
            parts += [a.sin(), a.cos()]
        rows.append(torch.cat(parts))
    return torch.stack(rows).unsqueeze(0).to(dtype)


def main():
    from timm.models.vision_transformer import VisionTransformer

    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", default="tests/fixtures/vit_d32_p8_32px.safetensors")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--patch", type=int, default=8)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--learned", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    net = VisionTransformer(
        img_size=a.size,
        patch_size=a.patch,
        embed_dim=a.width,
        depth=a.depth,
        num_heads=a.heads,
        mlp_ratio=4.0,
        qkv_bias=True,
        num_classes=0,
        global_pool="token",
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
    )
    gen = torch.Generator().manual_seed(a.seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name == "pos_embed":
                continue
            scale = 1.0 if name.endswith(".weight") and p.ndim == 1 else 0.0
            fan_in = p[0].numel() if p.ndim > 1 else 1
            p.copy_(scale + torch.randn(p.shape, generator=gen) * (0.1 if p.ndim == 1 else fan_in**-0.5))
        g = a.size // a.patch
        table = sincos_table(g, a.width)
        net.pos_embed.copy_(torch.randn(table.shape, generator=gen) * 0.02 if a.learned else table)
    net.eval()
    x = torch.rand(a.batch, 3, a.size, a.size, generator=gen) * 2 - 1
    with torch.no_grad():
        y = net.forward_head(net.forward_features(x), pre_logits=True)
    tensors = dict(net.state_dict())
    tensors["input.images_nhwc"] = x.permute(0, 2, 3, 1).contiguous()
    tensors["output.features"] = y
    meta = {k: str(v) for k, v in vars(a).items() if k != "out"}
    meta["torch"] = torch.__version__
    write_safetensors(a.out, tensors, meta)
    params = sum(p.numel() for p in net.parameters())
    print(f"{a.out}: ViT D{a.width} depth {a.depth} heads {a.heads} patch {a.patch}, {params} parameters, features {list(y.shape)}")


if __name__ == "__main__":
    main()

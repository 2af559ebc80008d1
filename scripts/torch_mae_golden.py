"""Writes tests/fixtures/golden_mae.safetensors: the golden state of one
masked-autoencoder pretraining step on a tiny ViT, computed by PyTorch, which
tests/golden_mae.rs checks mtaffect's pretraining trainer against.

The model is written here in plain torch from the definitions in
docs/pretraining.md, src/model/mae.rs and src/nn/vit_block.rs:
- patchify: a 24x24 NHWC image cut into a 3x3 grid of 8x8 patches, row-major
  over the grid, each patch read row by row with the channels innermost; the
  patch embedding is a linear map of that vector (our [D, P, P, 3] strided
  convolution is exactly that matrix);
- fixed 2-D sin-cos position embeddings (scripts/torch_vit.py's table): added
  to every patch token in the encoder, class-token row first in the decoder;
- masking by a given per-image permutation of the patches (MAE's
  `ids_shuffle`): the first `visible` are encoded; the decoder appends a mask
  token per hidden patch and undoes the permutation with its inverse;
- pre-norm blocks: x + proj(softmax(q k^T / sqrt(d_head)) v) over LN(x), then
  x + fc2(gelu(fc1(LN(x)))) with exact (erf) GELU, LayerNorm eps 1e-6, one
  fused qkv projection (rows q, k, v; heads contiguous inside each);
- loss: mean squared error over the hidden patches' values, each target patch
  normalised to mean 0 and std sqrt(unbiased var + 1e-6);
- update: our optimizer_step (global-norm clip, warm-up + cosine rate) with
  torch.optim.AdamW (decoupled decay), which our Adam follows; with
  train.decay_biases_and_norms = false, as here, one-dimensional parameters
  (biases, norms) are not decayed and every other one is (the class and mask
  tokens are [1, 1, D]).

Produced with torch 2.15.0 (the PyPI wheel, on the CPU); the version is also in
the file's metadata. Rerun with
    pip install torch
    python3 scripts/torch_mae_golden.py [OUT]
The Rust tests never run Python: the fixture is committed.

Precision: weights and images are drawn in f32 and stored in f32, so both
sides start from the same values; PyTorch computes in float64 and the results
are stored rounded to f32 (the Rust test runs in f32 only, with bounds ~100
times that rounding; f32 keeps the file small).

Format: safetensors; metadata magic = "mtaffect-golden-mae", version, the
pretraining config as TOML (the sections mtaffect's PretrainConfig parses),
torch version. Tensors, all f32:
    input.images          [N, 24, 24, 3] NHWC in [-1, 1]
    mask.shuffle          [STEPS, N, L] the permutation of each step and image
                          (integers); the forward below uses step 0's
    param.<name>          initial weights under our names and layouts
    output.reconstruction [N, L, P·P·3] the predicted patches, every patch
    loss.mse              [1] the loss of that forward
    grad.<name>           its gradient for every parameter
    trajectory            [STEPS, 3] per optimizer step on the same images
                          (step s masked by mask.shuffle[s]): loss, gradient
                          norm before clipping, lr
    final.<name>          the weights after the STEPS steps
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_train import clip_and_update, make_optimizer, to_toml, write_safetensors  # noqa: E402
from torch_vit import sincos_table  # noqa: E402

MAGIC, VERSION = "mtaffect-golden-mae", "1"
N, SIZE, PATCH, STEPS = 2, 24, 8, 5
LN_EPS = 1e-6

CONFIG = {
    "data": {"image_size": SIZE, "batch_size": N},
    # Unequal MLP widths (24 in the encoder, 48 in the decoder), depths and
    # head counts, so a shape or block swapped between the two cannot pass.
    "encoder": {"preset": "tiny", "depth": 2, "width": 8, "heads": 2, "patch": PATCH, "pooling": "cls", "drop_path": 0.0, "mlp_ratio": 3.0},
    # 9 patches, int(9 · 0.4) = 3 visible, 6 hidden.
    "mae": {"mask_ratio": 0.6, "decoder_depth": 1, "decoder_width": 12, "decoder_heads": 3, "norm_pix_loss": True},
    # Our pretraining optimizer (configs/mae-synthetic-cpu.toml): AdamW, MAE's betas and decay.
    "optim": {"kind": "adam", "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.05, "decoupled": True},
    "schedule": {"base_lr": 1e-2, "warmup_steps": 2, "decay": {"kind": "cosine", "total_steps": 3, "min_lr": 1e-4}},
    "train": {"grad_clip": 1.0, "decay_biases_and_norms": False, "device": "cpu", "precision": "f32"},
}


def patchify(images):
    """[N, S, S, 3] NHWC -> [N, L, P·P·3]: grid row-major, each patch (row, col, channel)."""
    n, s, _, c = images.shape
    g = s // PATCH
    x = images.reshape(n, g, PATCH, g, PATCH, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, g * g, PATCH * PATCH * c)


def take(x, ids):
    """x [N, T, D], ids [N, K] -> [N, K, D] with row j = x[n, ids[n, j]]."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[2]))


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        n, t, d = x.shape
        h = self.heads
        q, k, v = self.qkv(x).reshape(n, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) / (d // h) ** 0.5, dim=-1) @ v
        return self.proj(a.transpose(1, 2).reshape(n, t, d))


class Mlp(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, d, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(d, eps=LN_EPS)
        self.attn = Attention(d, heads)
        self.norm2 = nn.LayerNorm(d, eps=LN_EPS)
        self.mlp = Mlp(d, round(d * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """`proj` as a linear map of patch vectors; saved as our [D, P, P, 3] convolution weight."""

    def __init__(self, d):
        super().__init__()
        self.proj = nn.Linear(PATCH * PATCH * 3, d)


class Mae(nn.Module):
    def __init__(self, enc, mae):
        super().__init__()
        d, dd = enc["width"], mae["decoder_width"]
        g = SIZE // PATCH
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.patch_embed = PatchEmbed(d)
        self.blocks = nn.ModuleList(Block(d, enc["heads"], enc["mlp_ratio"]) for _ in range(enc["depth"]))
        self.norm = nn.LayerNorm(d, eps=LN_EPS)
        self.decoder_embed = nn.Linear(d, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.decoder_blocks = nn.ModuleList(Block(dd, mae["decoder_heads"], 4.0) for _ in range(mae["decoder_depth"]))
        self.decoder_norm = nn.LayerNorm(dd, eps=LN_EPS)
        self.decoder_pred = nn.Linear(dd, PATCH * PATCH * 3)
        self.register_buffer("pos", sincos_table(g, d, torch.float64)[:, 1:], persistent=False)
        self.register_buffer("decoder_pos", sincos_table(g, dd, torch.float64), persistent=False)

    def forward(self, images, shuffle, visible):
        """images [N, S, S, 3], shuffle [N, L] -> predicted patches [N, L, P·P·3]."""
        tokens = self.patch_embed.proj(patchify(images)) + self.pos
        x = take(tokens, shuffle[:, :visible])
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        for b in self.blocks:
            x = b(x)
        x = self.decoder_embed(self.norm(x))
        n, l = shuffle.shape
        masks = self.mask_token.expand(n, l - visible, -1)
        ordered = take(torch.cat([x[:, 1:], masks], dim=1), torch.argsort(shuffle, dim=1))
        x = torch.cat([x[:, :1], ordered], dim=1) + self.decoder_pos
        for b in self.decoder_blocks:
            x = b(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]


def mae_loss(pred, images, shuffle, visible):
    target = patchify(images)
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True, correction=1)
    target = (target - mean) / (var + 1e-6).sqrt()
    hidden = shuffle[:, visible:]
    return ((take(pred, hidden) - take(target, hidden)) ** 2).mean()


def build(g):
    """The model in float64 from f32 weights: every tensor drawn (no zero bias,
    no unit norm, class and mask tokens far from 0) so a term dropped, swapped
    or transposed changes the result."""
    net = Mae(CONFIG["encoder"], CONFIG["mae"])
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("_token"):
                v = torch.randn(p.shape, generator=g) * 0.5
            elif p.ndim > 1:
                v = torch.randn(p.shape, generator=g) * p.shape[1] ** -0.5
            elif "norm" in name and name.endswith("weight"):
                v = 1.0 + torch.randn(p.shape, generator=g) * 0.2
            else:
                v = torch.randn(p.shape, generator=g) * 0.1
            p.copy_(v)
    return net.double()


def to_ours(name, t):
    """Our layout of a parameter or its gradient: the patch embedding as an NHWC convolution."""
    t = t.detach()
    if name == "patch_embed.proj.weight":
        t = t.reshape(t.shape[0], PATCH, PATCH, 3)
    return t.float().contiguous()


def optimizer(net):
    """AdamW with no decay on one-dimensional parameters (train.decay_biases_and_norms = false)."""
    decay = [p for p in net.parameters() if p.ndim > 1]
    rest = [p for p in net.parameters() if p.ndim <= 1]
    return make_optimizer([{"params": decay}, {"params": rest, "weight_decay": 0.0}], CONFIG["optim"])


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/golden_mae.safetensors"
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(20261208)
    net = build(g)
    images32 = torch.rand(N, SIZE, SIZE, 3, generator=g) * 2 - 1
    tokens = (SIZE // PATCH) ** 2
    visible = int(tokens * (1 - CONFIG["mae"]["mask_ratio"]))
    # MAE's per-image shuffle: the patches sorted by uniform noise.
    shuffles = torch.argsort(torch.rand(STEPS, N, tokens, generator=g), dim=-1)
    images = images32.double()

    f = {"input.images": images32, "mask.shuffle": shuffles.float()}
    for name, p in net.named_parameters():
        f[f"param.{name}"] = to_ours(name, p)
    pred = net(images, shuffles[0], visible)
    loss = mae_loss(pred, images, shuffles[0], visible)
    loss.backward()
    f["output.reconstruction"] = pred.detach().float()
    f["loss.mse"] = loss.detach().float().reshape(1)
    for name, p in net.named_parameters():
        f[f"grad.{name}"] = to_ours(name, p.grad)

    opt = optimizer(net)
    traj = []
    for s in range(STEPS):
        opt.zero_grad(set_to_none=True)
        loss = mae_loss(net(images, shuffles[s], visible), images, shuffles[s], visible)
        loss.backward()
        norm, lr = clip_and_update(net, opt, CONFIG, s)
        traj.append((loss.item(), norm, lr))
    f["trajectory"] = torch.tensor(traj, dtype=torch.float32)
    for name, p in net.named_parameters():
        f[f"final.{name}"] = to_ours(name, p)

    meta = {"magic": MAGIC, "version": VERSION, "config": to_toml(CONFIG), "torch_version": torch.__version__}
    write_safetensors(out, f, meta)
    count = sum(p.numel() for p in net.parameters())
    print(f"wrote {out}: {len(list(net.parameters()))} parameters ({count} values), {os.path.getsize(out)} bytes")
    for s, (l, n, r) in enumerate(traj):
        print(f"step {s}: loss {l:.6f} |g| {n:.4f} lr {r:.2e}")


if __name__ == "__main__":
    main()

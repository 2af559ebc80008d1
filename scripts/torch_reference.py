"""Writes tests/fixtures/golden_mtl.safetensors: the golden state of a tiny
SE-ResNet multi-task model computed by PyTorch, which tests/golden.rs checks
mtaffect against (the llm.c approach: one batch, every gradient, ten steps).

Produced with torch 2.15.0 (the PyPI wheel, run on the CPU) and numpy 2.4;
the version is also in the file's metadata. Rerun with
    pip install torch
    python3 scripts/torch_reference.py [OUT]
The Rust tests never run Python: the fixture is committed.

The model is scripts/torch_model.py's MtlNet (our architecture, parameter
names as in our checkpoints) at depth 10, width 0.05 (stage widths 8, 8, 13,
26: unequal in/out channels, so a transposed weight cannot pass), ImageNet
stem, MTANet neck, dropout 0; one batch of 5 images of 36x36 (feature maps 18,
9, 9, 5, 3, 2) with mixed valid and invalid labels; BN in training mode; the
loss and update of scripts/torch_train.py (our mtl_loss.rs, AdamW, warm-up
plus cosine, gradient clipping).

Precision: weights and images are drawn in f32 and stored in f32, so both
sides start from the same exact values; PyTorch then computes in float64, so
the reference carries no f32 rounding of its own. The Rust test runs the
model in f64 (must agree to ~1e-10: same maths) and in f32 (must agree to
f32 rounding: ~1e-5).

Format: safetensors, like our checkpoints. Shapes and dtypes of every tensor
are in its header; the metadata holds magic = "mtaffect-golden", version
(bumped on any incompatible change; the test refuses other versions), the
run config as TOML (the [model], [loss], [optim], [schedule], [train]
sections mtaffect parses), and the torch version. Tensors:
    input.images        [N, H, W, 3] f32 (NHWC, our layout)
    label.va            [N, 2] f32, -5 invalid
    label.au            [N, 12] f32, -1 invalid
    label.expr          [N] f32 class index, -1 invalid
    param.<name>        f32 initial weights under our names, conv [K, R, S, C]
    output.{va,au,expr} f64 head outputs of the training-mode forward
    loss.terms          [4] f64: total, va, au, expr
    grad.<name>         f64 gradient of the total loss, our names and layout
    buffer.<bn>.running_{mean,var}  f64 BN running statistics after that forward
    trajectory          [10, 6] f64 per optimizer step on the same batch:
                        loss, va, au, expr, grad norm before clipping, lr
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_model import MtlNet  # noqa: E402
from torch_train import mtl_loss, to_ours, to_toml, train_step, make_optimizer, write_safetensors  # noqa: E402

MAGIC, VERSION = "mtaffect-golden", "1"
N, SIZE, STEPS = 5, 36, 10

CONFIG = {
    "data": {"image_size": SIZE, "batch_size": N},
    "model": {
        "depth": 10,
        "width_mult": 0.05,
        "se_reduction": 4,
        "stem": "imagenet",
        "neck": "mtanet",
        "dropout": 0.0,
        "n_aus": 12,
        "n_expr": 8,
    },
    # Unequal task weights, so a dropped or swapped weight shows.
    "loss": {"weighting": "fixed", "w_va": 1.0, "w_au": 0.5, "w_expr": 0.75, "label_smoothing": 0.0},
    "optim": {"kind": "adam", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01, "decoupled": True},
    "schedule": {"base_lr": 5e-3, "warmup_steps": 2, "decay": {"kind": "cosine", "total_steps": 8, "min_lr": 1e-4}},
    # The gradient norm falls from ~15 to ~1 over the ten steps: clipped in the first half only.
    "train": {"grad_clip": 3.0},
}

# Sample 1 has no label at all; sample 3 lacks arousal; sample 2 has some AUs.
VA = [[0.3, -0.2], [-5.0, -5.0], [-0.6, 0.5], [0.1, -5.0], [0.8, 0.7]]
EXPR = [3, -1, 0, 7, 5]


def labels(g):
    au = (torch.rand(N, 12, generator=g) < 0.4).float()
    au[1] = -1.0
    au[2, ::3] = -1.0
    return torch.tensor(VA), au, torch.tensor(EXPR)


def build(g):
    torch.manual_seed(0)
    net = MtlNet(CONFIG["model"])
    with torch.no_grad():
        for m in net.modules():
            # BN weight 1 and bias 0 would hide a swapped or missing affine term.
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.4 - 0.2)
    return net.double()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/golden_mtl.safetensors"
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(20261122)
    net = build(g)
    x32 = torch.rand(N, SIZE, SIZE, 3, generator=g) * 2 - 1  # NHWC, f32
    va, au, expr = labels(g)
    x = x32.double().permute(0, 3, 1, 2).contiguous()
    va64, au64 = va.double(), au.double()
    names = [n for n, _ in net.named_parameters()]

    f = {"input.images": x32, "label.va": va, "label.au": au, "label.expr": expr.float()}
    for n, p in net.named_parameters():
        f[f"param.{n}"] = to_ours(p.detach().float())

    net.train()
    outs = net(x)
    total, terms = mtl_loss(outs, va64, au64, expr, CONFIG["loss"])
    total.backward()
    for k, o in zip(["va", "au", "expr"], outs):
        f[f"output.{k}"] = o.detach()
    f["loss.terms"] = torch.stack([total.detach(), *(t.detach() for t in terms)])
    for n, p in net.named_parameters():
        f[f"grad.{n}"] = to_ours(p.grad)
    for n, b in net.named_buffers():
        if n.endswith("running_mean") or n.endswith("running_var"):
            f[f"buffer.{n}"] = b.detach().clone()

    # Ten steps from the same initial state (BN statistics included) on the same batch.
    net = build(torch.Generator().manual_seed(20261122))
    opt = make_optimizer(net.parameters(), CONFIG["optim"])
    traj = [train_step(net, opt, CONFIG, s, x, va64, au64, expr) for s in range(STEPS)]
    f["trajectory"] = torch.tensor(traj, dtype=torch.float64)

    meta = {"magic": MAGIC, "version": VERSION, "config": to_toml(CONFIG), "torch_version": torch.__version__}
    write_safetensors(out, f, meta)
    print(f"wrote {out}: {len(names)} parameters ({sum(p.numel() for p in net.parameters())} values), {os.path.getsize(out)} bytes")
    for s, row in enumerate(traj):
        print(f"step {s}: loss {row[0]:.6f} (va {row[1]:.4f} au {row[2]:.4f} expr {row[3]:.4f}) |g| {row[4]:.4f} lr {row[5]:.2e}")


if __name__ == "__main__":
    main()

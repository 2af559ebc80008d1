"""Training-step throughput of our SE-ResNet multi-task models in PyTorch, for
the side-by-side table against mtaffect (benches/train_step.rs).

Model: scripts/torch_model.py's MtlNet, our architecture (SE-ResNet-18 or -50,
width 1, SE reduction 16, ImageNet stem, MTANet neck, dropout 0.2 as
NetConfig's default). One step: forward, our masked multi-task loss
(scripts/torch_train.py, sync-free), backward, clip_grad_norm_ at 5, AdamW
(fused on CUDA). Random images in [-1, 1] with a quarter of each task's labels
invalid. Every combination of
    model 18 / 50, batch 64 / 256 at 112x112,
    eager / torch.compile (the model and loss together),
    f32 / bf16 autocast, NCHW / channels_last.
TF32 is off, so f32 means f32 as in mtaffect.

Prints one JSON line per configuration as it finishes (machine-readable),
then a table. A configuration that fails (out of memory, no compiler for
torch.compile on CPU) is reported with its error and the rest go on.

    python3 scripts/torch_bench.py --device cuda                  # the full grid
    python3 scripts/torch_bench.py --device cpu --quick           # a smoke test
    python3 scripts/torch_bench.py --models 18 --batches 64 --modes eager
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_model import MtlNet  # noqa: E402
from torch_train import mtl_loss  # noqa: E402

LOSS = {"weighting": "fixed", "w_va": 1.0, "w_au": 1.0, "w_expr": 1.0}


def model_config(depth):
    return {"depth": depth, "width_mult": 1.0, "se_reduction": 16, "stem": "imagenet", "neck": "mtanet", "dropout": 0.2, "n_aus": 12, "n_expr": 8}


def batch(n, size, device, gen):
    x = torch.rand(n, 3, size, size, generator=gen) * 2 - 1
    va = torch.rand(n, 2, generator=gen) * 2 - 1
    va[: n // 4] = -5.0
    au = (torch.rand(n, 12, generator=gen) < 0.3).float()
    au[n // 4 : n // 2] = -1.0
    expr = torch.randint(0, 8, (n,), generator=gen)
    expr[n // 2 : 3 * n // 4] = -1
    return [t.to(device) for t in (x, va, au, expr)]


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(depth, n, size, mode, precision, layout, device, warmup, iters):
    """images/s of the training step for one configuration."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = MtlNet(model_config(depth)).to(device).train()
    x, va, au, expr = batch(n, size, device, gen)
    if layout == "channels_last":
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    cuda = device.startswith("cuda")
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4, fused=cuda, foreach=not cuda)

    def forward_loss(x, va, au, expr):
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = net(x)
        return mtl_loss(tuple(o.float() for o in out), va, au, expr, LOSS)[0]

    fl = torch.compile(forward_loss) if mode == "compile" else forward_loss

    def step():
        opt.zero_grad(set_to_none=True)
        fl(x, va, au, expr).backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    sync(device)
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    sync(device)
    s = (time.perf_counter() - t0) / iters
    return {"ms_per_step": s * 1e3, "images_per_s": n / s, "warmup_s": warm_s}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="smoke test: batch 4 at 64x64, 1 warm-up + 2 timed steps")
    ap.add_argument("--models", default="18,50")
    ap.add_argument("--batches", default=None, help="default 64,256 (4 with --quick)")
    ap.add_argument("--size", type=int, default=None, help="default 112 (64 with --quick)")
    ap.add_argument("--modes", default="eager,compile")
    ap.add_argument("--precisions", default="f32,bf16")
    ap.add_argument("--layouts", default="nchw,channels_last")
    ap.add_argument("--warmup", type=int, default=None, help="default 5 (1 with --quick); compilation happens here")
    ap.add_argument("--iters", type=int, default=None, help="default 20 (2 with --quick)")
    a = ap.parse_args()
    q = a.quick
    batches = [int(b) for b in (a.batches or ("4" if q else "64,256")).split(",")]
    size = a.size or (64 if q else 112)
    warmup = a.warmup if a.warmup is not None else (1 if q else 5)
    iters = a.iters if a.iters is not None else (2 if q else 20)

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    dev_name = torch.cuda.get_device_name(a.device) if a.device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)"
    print(f"# torch {torch.__version__}, CUDA {torch.version.cuda}, device {dev_name}, {size}x{size}, warm-up {warmup}, timed {iters}")

    results = []
    for depth in [int(m) for m in a.models.split(",")]:
        for n in batches:
            for mode in a.modes.split(","):
                for precision in a.precisions.split(","):
                    for layout in a.layouts.split(","):
                        r = {"model": f"SE-ResNet-{depth}", "batch": n, "size": size, "mode": mode, "precision": precision, "layout": layout, "device": dev_name, "torch": torch.__version__}
                        try:
                            r.update(measure(depth, n, size, mode, precision, layout, a.device, warmup, iters))
                        except Exception as e:  # noqa: BLE001 -- report and go on with the grid
                            r["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                        if a.device.startswith("cuda"):
                            torch.cuda.empty_cache()
                        print(json.dumps(r), flush=True)
                        results.append(r)

    print(f"\n| model | batch | mode | precision | layout | ms/step | images/s |\n|---|---|---|---|---|---|---|")
    for r in results:
        cells = f"{r['ms_per_step']:.1f} | {r['images_per_s']:.1f}" if "error" not in r else f"- | {r['error']}"
        print(f"| {r['model']} | {r['batch']} | {r['mode']} | {r['precision']} | {r['layout']} | {cells} |")


if __name__ == "__main__":
    main()

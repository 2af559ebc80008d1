"""Trains the PyTorch twin of an mtaffect run from the same initial weights on
the same batches, and compares the per-step losses with mtaffect's metrics.jsonl.

How the two runs see identical data: mtaffect's own loader writes the batches
(examples/dump_batches.rs: the run config's initial checkpoint, then the first
K batches in the trainer's order, augmentation included, one safetensors file
per step), and this script feeds them to scripts/torch_model.py's network with
scripts/torch_train.py's loss, clipping, schedule and optimizer. Dropout must
be 0 (the two frameworks draw different masks). Both train in f32; --dtype
float64 runs PyTorch in double precision instead, which separates a real
disagreement from the f32 rounding sensitivity of a long trajectory (two f32
runs that differ only in rounding drift apart once training gets chaotic).

    cargo run --release -- train --set train.log_every=1 --set model.dropout=0.0 \\
        --set run.name=parity ...                    # writes runs/parity/
    cargo run --release --example dump_batches -- runs/parity/config.toml K /tmp/parity
    python3 scripts/torch_parity_run.py /tmp/parity --metrics runs/parity/metrics.jsonl [--device cuda]

Prints one line per step (ours, PyTorch, difference) and the maximum and
final absolute differences of the total loss; --json writes them as well.
"""
import argparse
import glob
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_model import load_mtaffect, read_safetensors  # noqa: E402
from torch_train import make_optimizer, train_step  # noqa: E402


def our_losses(path):
    """{step (0-based): (loss, va, au, expr)} from the train records of metrics.jsonl."""
    out = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("split") == "train":
                out[r["step"] - 1] = (r["loss"], r["loss_va"], r["loss_au"], r["loss_expr"])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dump", help="folder written by examples/dump_batches.rs")
    ap.add_argument("--metrics", help="mtaffect's runs/<run>/metrics.jsonl (train.log_every = 1)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float64"],
        help="PyTorch's precision; float64 tells f32 rounding sensitivity of the trajectory from a disagreement",
    )
    ap.add_argument("--autocast", choices=["none", "bf16"], default="none",
                    help="run each step under torch.autocast(bfloat16), the counterpart of mtaffect's train.precision = bf16")
    ap.add_argument("--json", help="write the per-step comparison here")
    a = ap.parse_args()

    torch.backends.cudnn.allow_tf32 = False  # f32 means f32 on the GPU too
    torch.backends.cuda.matmul.allow_tf32 = False
    net, cfg = load_mtaffect(os.path.join(a.dump, "init.safetensors"))
    if cfg["model"].get("dropout", 0.0) != 0.0:
        raise SystemExit(f"model.dropout = {cfg['model']['dropout']}: set it to 0 for a parity run")
    dtype = getattr(torch, a.dtype)
    net = net.to(a.device, dtype)
    opt = make_optimizer(net.parameters(), cfg["optim"])
    ours = our_losses(a.metrics) if a.metrics else {}
    batches = sorted(glob.glob(os.path.join(a.dump, "batch_*.safetensors")))
    if not batches:
        raise SystemExit(f"{a.dump}: no batch_*.safetensors (run examples/dump_batches.rs)")

    rows, diffs = [], []
    print(f"{'step':>5} {'mtaffect':>12} {'pytorch':>12} {'|diff|':>10}   (va, au, expr: pytorch)")
    for step, path in enumerate(batches):
        b, _ = read_safetensors(path)
        x = b["images"].permute(0, 3, 1, 2).contiguous().to(a.device, dtype)
        va, au, expr = (b["va"].to(a.device, dtype), b["aus"].to(a.device, dtype), b["expr"].long().to(a.device))
        with torch.autocast(a.device.split(":")[0], dtype=torch.bfloat16, enabled=a.autocast == "bf16"):
            loss, l_va, l_au, l_expr, norm, lr = train_step(net, opt, cfg, step, x, va, au, expr)
        row = {"step": step + 1, "pytorch": loss, "pytorch_terms": [l_va, l_au, l_expr], "grad_norm": norm, "lr": lr}
        line = f"{step + 1:>5} {'':>12} {loss:>12.6f} {'':>10}"
        if step in ours:
            row["mtaffect"] = ours[step][0]
            row["diff"] = abs(ours[step][0] - loss)
            diffs.append(row["diff"])
            line = f"{step + 1:>5} {ours[step][0]:>12.6f} {loss:>12.6f} {row['diff']:>10.2e}"
        print(f"{line}   ({l_va:.4f}, {l_au:.4f}, {l_expr:.4f})")
        rows.append(row)
    if diffs:
        print(f"{len(diffs)} steps compared: max |loss difference| {max(diffs):.3e}, at the last step {diffs[-1]:.3e}")
    elif a.metrics:
        print("no step of metrics.jsonl matched: was train.log_every = 1?")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"config": cfg, "device": a.device, "dtype": a.dtype, "autocast": a.autocast,
                       "torch": torch.__version__, "steps": rows}, f, indent=1)


if __name__ == "__main__":
    main()

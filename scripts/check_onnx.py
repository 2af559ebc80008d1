#!/usr/bin/env python3
"""Numerical parity of `mtaffect export --onnx` with ONNX Runtime.

For each model below: train it a few steps on a tiny synthetic set (so batch
norm's running statistics and the weights are not their initial values),
export it with `--dump` (a seeded input batch and mtaffect's own eval-mode
outputs for it), run `onnx.checker.check_model` (with shape inference) on the
file, run it in ONNX Runtime on the dumped input, and compare every output
element: it passes when |ort - ours| <= ATOL + RTOL * |ours|.

    python3 scripts/check_onnx.py --bin target/release/mtaffect
    python3 scripts/check_onnx.py --pair model.onnx dump.safetensors

Needs: pip install onnx onnxruntime safetensors numpy (.ci/run pins the
versions it was measured with). Exits non-zero when a model fails the check
or any output is out of tolerance.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file

# f32 end to end: the two runtimes sum in different orders (and ORT fuses
# batch norm into the convolutions), so about 1e-4 relative, with an
# absolute floor for outputs near zero.
RTOL = 1e-4
ATOL = 1e-5
OUTPUTS = ["valence_arousal", "au_logits", "expr_logits"]

# name -> (config TOML, extra `export` arguments). 32 px images, trained
# 3 steps; together they cover every backbone kind, both necks, both stems,
# basic blocks and bottlenecks, with and without SE gates (and timm's
# rounded gate width), both ViT poolings, a fixed and a dynamic
# batch, and opsets 17 and 18.
MODELS = {
    "se_resnet10-imagenet-mtanet": (
        '[model]\nneck = "mtanet"\n\n[model.backbone]\nkind = "se_resnet"\n'
        'depth = 10\nwidth_mult = 0.125\nse_reduction = 4\nstem = "imagenet"\n',
        [],
    ),
    "se_resnet50-small-gap": (
        '[model]\nneck = "gap"\n\n[model.backbone]\nkind = "se_resnet"\n'
        'depth = 50\nwidth_mult = 0.125\nse_reduction = 4\nstem = "small"\n',
        ["--batch", "2"],
    ),
    "resnet18-plain-gap": (
        '[model]\nneck = "gap"\n\n[model.backbone]\nkind = "se_resnet"\n'
        'depth = 18\nwidth_mult = 0.125\nse_reduction = 0\nstem = "imagenet"\n',
        [],
    ),
    "se_resnet50-timm-divisor-gap": (
        '[model]\nneck = "gap"\n\n[model.backbone]\nkind = "se_resnet"\n'
        'depth = 50\nwidth_mult = 0.125\nse_reduction = 16\nse_divisor = 8\nstem = "imagenet"\n',
        [],
    ),
    "densenet-mtanet": (
        '[model]\nneck = "mtanet"\n\n[model.backbone]\nkind = "densenet"\n'
        "block_config = [2, 2]\ngrowth_rate = 4\ninit_features = 8\nbn_size = 2\n",
        [],
    ),
    "iresnet18-mtanet": (
        '[model]\nneck = "mtanet"\n\n[model.backbone]\nkind = "iresnet"\n'
        "depth = 18\nwidth_mult = 0.125\nembedding = 16\nimage_size = 32\n",
        [],
    ),
    "vit-cls-mtanet": (
        '[model]\nneck = "mtanet"\n\n[model.backbone]\nkind = "vit"\n'
        'preset = "tiny"\ndepth = 2\nwidth = 32\nheads = 2\npatch = 8\npooling = "cls"\n',
        [],
    ),
    "vit-mean-gap-opset18": (
        '[model]\nneck = "gap"\n\n[model.backbone]\nkind = "vit"\n'
        'preset = "tiny"\ndepth = 2\nwidth = 32\nheads = 2\npatch = 8\npooling = "mean"\n',
        ["--opset", "18", "--batch", "2"],
    ),
}

TRAIN = (
    "[data]\nimage_size = 32\nbatch_size = 8\n\n"
    "[train]\nsteps = 3\neval_every = 3\nlog_every = 1\ndevice = \"cpu\"\n\n"
)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    return r.stdout


def compare(model_path, dump_path):
    """(worst abs error, worst rel error, ok) of the model against the dump."""
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    dump = load_file(dump_path)
    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    got = sess.run(OUTPUTS, {"images": dump["images"]})
    worst_abs, worst_rel, ok = 0.0, 0.0, True
    for name, g in zip(OUTPUTS, got):
        want = dump[name]
        if g.shape != want.shape:
            print(f"  {name}: shape {g.shape} vs ours {want.shape}")
            return float("inf"), float("inf"), False
        err = np.abs(g.astype(np.float64) - want.astype(np.float64))
        ref = np.abs(want.astype(np.float64))
        worst_abs = max(worst_abs, float(err.max()))
        worst_rel = max(worst_rel, float((err / np.maximum(ref, 1e-3)).max()))
        ok &= bool((err <= ATOL + RTOL * ref).all())
    return worst_abs, worst_rel, ok


def report(name, model_path, dump_path):
    a, r, ok = compare(model_path, dump_path)
    verdict = "ok" if ok else "FAIL"
    print(f"{name:32s} worst abs {a:.3e}  worst rel {r:.3e}  {verdict}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="target/release/mtaffect", help="the mtaffect binary")
    ap.add_argument("--pair", nargs=2, metavar=("ONNX", "DUMP"), help="check one exported model")
    ap.add_argument("--keep", help="work in this folder and keep it")
    args = ap.parse_args()
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}; "
          f"pass: |ort - ours| <= {ATOL:g} + {RTOL:g}·|ours|")
    if args.pair:
        sys.exit(0 if report(os.path.basename(args.pair[0]), *args.pair) else 1)

    work = args.keep or tempfile.mkdtemp(prefix="mtaffect-onnx-")
    os.makedirs(work, exist_ok=True)
    data = os.path.join(work, "data")
    if not os.path.isdir(data):
        run([args.bin, "synth", "--out", data, "--videos", "4", "--frames", "10", "--size", "32"])
    all_ok = True
    for name, (model_toml, export_args) in MODELS.items():
        d = os.path.join(work, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        cfg = os.path.join(d, "config.toml")
        with open(cfg, "w") as f:
            f.write(TRAIN + f'[run]\nruns_dir = "{d}/runs"\nname = "run"\n\n' + model_toml)
        run([args.bin, "train", "--config", cfg, "--data", data, "--quiet"])
        onnx_path, dump_path = os.path.join(d, "model.onnx"), os.path.join(d, "dump.safetensors")
        run([args.bin, "export", "--checkpoint", os.path.join(d, "runs", "run"),
             "--onnx", onnx_path, "--dump", dump_path] + export_args)
        all_ok &= report(name, onnx_path, dump_path)
    if not args.keep:
        shutil.rmtree(work)
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()

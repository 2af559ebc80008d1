"""Training-step throughput side by side in one run on one GPU: mtaffect
(benches/cuda_train_step.rs) against PyTorch eager and torch.compile
(scripts/torch_bench.py), as one markdown table.

mtaffect runs its own grid (SE-ResNet-18 and -50 at 112x112, batch 64 and
256, f32). PyTorch runs, for each model and batch:
    eager f32 in NCHW and channels_last (the table shows the better one),
    eager bf16 autocast, channels_last,
    torch.compile f32 and bf16 autocast, channels_last (not with --skip-compile).
Each PyTorch configuration is its own process with its own timeout (a
compilation that hangs is killed with its workers), so a configuration that
fails shows as "failed: reason" and the rest go on. Eager runs before
compile, so a --budget that runs out costs the slowest cells first.

The table's header names the device, the driver (nvidia-smi), the date (UTC),
the torch and CUDA versions and the mtaffect commit; ratios are mtaffect's
images/s over PyTorch's.

    python3 scripts/side_by_side.py                              # on the GPU host
    python3 scripts/side_by_side.py --ours bundle/benches/cuda_train_step-* \\
        --out side_by_side.md --benchmarks BENCHMARKS.md --budget 400
    python3 scripts/side_by_side.py --ours ./fake_ours.sh --device cpu --quick --skip-compile

--benchmarks FILE replaces the block between BEGIN and END (below) in FILE,
adding it at the end when missing, so re-running updates the table in place.
Needs Python 3 and torch only.
"""
import argparse
import glob
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "<!-- side-by-side:begin -->", "<!-- side-by-side:end -->"
# benches/cuda_train_step.rs: `train se-resnet-18 112x112 b64    23.1 ms/step   2776.4 images/s  (...)`
# or `train se-resnet-18 b64: skipped (reason)`; `train bf16 se-resnet-..` with train.precision = bf16.
OURS_LINE = re.compile(r"^train (bf16 )?se-resnet-(\d+)\s+(\d+)x\d+\s+b(\d+)\s+([\d.]+) ms/step\s+([\d.]+) images/s")
# The same line's step arithmetic: `images/s  (0.7427 TFLOP/step in convolutions and GEMMs, ...`.
OURS_FLOPS = re.compile(r"images/s\s+\(([\d.]+) TFLOP/step")
OURS_SKIP = re.compile(r"^train (bf16 )?se-resnet-(\d+) b(\d+): skipped \((.*)\)")
OURS_SIZE = 112  # cuda_train_step.rs's SIZE

# PyTorch cells: (column key, mode, precision, layout).
EAGER = [("eager_f32_nchw", "eager", "f32", "nchw"),
         ("eager_f32_cl", "eager", "f32", "channels_last"),
         ("eager_bf16_cl", "eager", "bf16", "channels_last")]
# bf16 first: the speed goal is against compiled bf16, so a budget that runs
# out costs compiled f32 first.
COMPILE = [("compile_bf16_cl", "compile", "bf16", "channels_last"),
           ("compile_f32_cl", "compile", "f32", "channels_last")]

# Dense peaks in TFLOP/s, (bf16 tensor cores, f32 without TF32), by a part
# of the device's name: NVIDIA's H100 SXM and PCIe data sheets (H200 is the
# SXM chip with more memory). Another device's utilisation is left out.
PEAKS = [("H200", (989.4, 66.9)), ("H100 80GB HBM3", (989.4, 66.9)), ("H100 SXM", (989.4, 66.9)),
         ("H100 PCIe", (756.5, 51.2))]


class Failed:
    """A cell whose configuration did not produce a figure: it failed, or
    (label "not run") the budget ran out before it started."""

    def __init__(self, reason, label="failed"):
        self.reason = " ".join(str(reason).split())[:80].replace("|", "/")
        self.label = label

    def __str__(self):
        return f"{self.label}: {self.reason}"


def log(msg):
    print(f"# {msg}", file=sys.stderr, flush=True)


def run(cmd, timeout, cwd=ROOT):
    """(returncode, stdout, stderr) of `cmd`; on timeout its whole process
    group is killed (torch.compile's workers too) and returncode is None."""
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=None if math.isinf(timeout) else max(timeout, 1))
        return p.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return None, out, err


def last_line(text):
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1] if lines else "no output"


def ours_command(ours):
    """The training-step bench to run: the first executable among `ours`
    (glob patterns expanded here too), else bundle/'s, else cargo."""
    for pattern in ours or [os.path.join(ROOT, "bundle", "benches", "cuda_train_step-*")]:
        for path in sorted(glob.glob(pattern)) or [pattern]:
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return [os.path.abspath(path)]
    if ours:
        raise SystemExit(f"side_by_side: --ours {' '.join(ours)}: no executable file")
    if shutil.which("cargo"):
        return ["cargo", "bench", "--bench", "cuda_train_step"]
    raise SystemExit("side_by_side: no bundle/benches/cuda_train_step-* and no cargo; give --ours")


def parse_ours(text, size):
    """{((depth, batch, image size), column): images/s or Failed} from the
    bench's output, column "ours" (f32) or "ours_bf16"; a skipped
    configuration is taken to be at `size`."""
    cells = {}
    col = lambda m: "ours_bf16" if m[1] else "ours"
    for line in text.splitlines():
        if m := OURS_LINE.match(line):
            cells[((int(m[2]), int(m[4]), int(m[3])), col(m))] = float(m[6])
        elif m := OURS_SKIP.match(line):
            cells[((int(m[2]), int(m[3]), size), col(m))] = Failed(m[4])
    return cells


def parse_flops(text):
    """{(depth, batch, image size): TFLOP per step} from the bench's lines
    (the same for f32 and bf16: one model, one step)."""
    return {(int(m[2]), int(m[4]), int(m[3])): float(f[1])
            for line in text.splitlines() if (m := OURS_LINE.match(line)) and (f := OURS_FLOPS.search(line))}


def parse_torch(text):
    """The JSON result lines of scripts/torch_bench.py."""
    return [json.loads(l) for l in text.splitlines() if l.startswith("{")]


def torch_cell(args, key, mode, precision, layout, timeout):
    """(images/s or Failed, the result dict or None) of one PyTorch configuration."""
    depth, batch, size = key
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "torch_bench.py"), "--device", args.device,
           "--models", str(depth), "--batches", str(batch), "--size", str(size), "--modes", mode,
           "--precisions", precision, "--layouts", layout] + (["--quick"] if args.quick else [])
    rc, out, err = run(cmd, timeout)
    results = parse_torch(out)
    if rc is None:
        return Failed(f"timeout after {timeout:.0f} s"), None
    if not results:
        return Failed(f"rc={rc}: {last_line(err or out)}"), None
    r = results[0]
    return (Failed(r["error"]) if "error" in r else r["images_per_s"]), r


def best(*cells):
    """The highest figure among `cells` (failed ones left out), or the first failure."""
    ok = [c for c in cells if isinstance(c, float)]
    return max(ok) if ok else next((c for c in cells if c is not None), None)


def fmt(cell, note=""):
    """A cell: images/s to three significant figures or better (a GPU's
    thousands as integers, a CPU smoke test's fractions readable)."""
    if cell is None:
        return "-"
    if isinstance(cell, Failed):
        return str(cell)
    return f"{cell:.{max(0, 2 - math.floor(math.log10(max(cell, 1e-9))))}f}{note}"


def ratio(ours, theirs):
    if isinstance(ours, float) and isinstance(theirs, float) and theirs > 0:
        return f"{ours / theirs:.2f}"
    return "-"


def table(rows, header):
    """The markdown block: header paragraph and one row per (depth, batch)."""
    cols = ["model", "batch", "size", "mtaffect f32", "mtaffect bf16", "PyTorch eager f32 (best layout)",
            "eager bf16 autocast CL", "compiled f32 CL", "compiled bf16 CL", "ours f32 / eager f32",
            "ours f32 / compiled f32", "ours bf16 / eager bf16", "ours bf16 / compiled bf16",
            "ours best / best PyTorch"]
    lines = [header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for (depth, batch, size), c in sorted(rows.items()):
        ours, ours16 = c.get("ours"), c.get("ours_bf16")
        nchw, cl = c.get("eager_f32_nchw"), c.get("eager_f32_cl")
        eager = best(nchw, cl)
        layout = (" (NCHW)" if eager is nchw else " (CL)") if isinstance(eager, float) else ""
        torch_all = [v for k, v in c.items() if not k.startswith("ours")]
        cells = [f"SE-ResNet-{depth}", str(batch), f"{size}x{size}", fmt(ours), fmt(ours16), fmt(eager, layout),
                 fmt(c.get("eager_bf16_cl")), fmt(c.get("compile_f32_cl")), fmt(c.get("compile_bf16_cl")),
                 ratio(ours, eager), ratio(ours, c.get("compile_f32_cl")), ratio(ours16, c.get("eager_bf16_cl")),
                 ratio(ours16, c.get("compile_bf16_cl")), ratio(best(ours, ours16), best(*torch_all))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def peaks(device):
    """(bf16, f32) dense peak TFLOP/s of `device`, or None when not known."""
    return next((p for name, p in PEAKS if name in device), None)


def utilisation(rows, flops, device):
    """The markdown paragraph on model FLOP utilisation: each figure of the
    table as TFLOP/s of convolutions and GEMMs (the step's count from
    mtaffect's bench, which equals PyTorch's flop counter on the same model:
    tests/flops.rs), with its share of the device's dense peak for its
    precision when the device is known."""
    if not flops:
        return ""
    peak = peaks(device)
    where = (f"% of {device}'s dense peak, {peak[0]} TFLOP/s bf16 and {peak[1]} f32" if peak
             else f"no peak known for {device}")
    cols = [("ours", "mtaffect f32", 1), ("ours_bf16", "mtaffect bf16", 0), ("eager_f32", "eager f32", 1),
            ("eager_bf16_cl", "eager bf16", 0), ("compile_f32_cl", "compiled f32", 1),
            ("compile_bf16_cl", "compiled bf16", 0)]
    lines = [f"**Model FLOP utilisation**: TFLOP/s in convolutions and GEMMs ({where}).", "",
             "| model | batch | TFLOP/step | " + " | ".join(c[1] for c in cols) + " |",
             "|" + "---|" * (3 + len(cols))]
    for key, c in sorted(rows.items()):
        if key not in flops:
            continue
        depth, batch, _ = key
        c = dict(c, eager_f32=best(c.get("eager_f32_nchw"), c.get("eager_f32_cl")))
        cells = [f"SE-ResNet-{depth}", str(batch), f"{flops[key]:.4f}"]
        for col, _, precision in cols:
            v = c.get(col)
            if not isinstance(v, float):
                cells.append("-")
                continue
            rate = flops[key] * v / batch
            cells.append(fmt(rate) + (f" ({100 * rate / peak[precision]:.1f}%)" if peak else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def replace_block(text, block):
    """`text` with the marked block replaced by `block` (appended when absent)."""
    marked = f"{BEGIN}\n{block}{END}"
    start, end = text.find(BEGIN), text.find(END)
    if start >= 0 and end > start:
        return text[:start] + marked + text[end + len(END):]
    if start >= 0 or end >= 0:
        raise SystemExit(f"side_by_side: only one of {BEGIN} / {END} found; fix the file by hand")
    return text.rstrip("\n") + "\n\n" + marked + "\n"


def write_atomic(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def environment(args, torch_results):
    """(the header's facts: device, driver, date, versions, commit; the device)."""
    import torch  # only here: the rest of the script needs no torch

    device = next((r["device"] for r in torch_results if r.get("device")), args.device)
    driver = "no nvidia-smi"
    if shutil.which("nvidia-smi"):
        rc, out, _ = run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], 30)
        if rc == 0 and out.strip():
            name, _, driver = out.strip().splitlines()[0].rpartition(", ")
            device = name or device
    # A bundle names the commit it was built from; the GPU host's copy of
    # the tree may carry a stale .git, so the bundle's word comes first.
    commit = "unknown"
    bundled = os.path.join(ROOT, "bundle", "commit.txt")
    rc, out, _ = run(["git", "describe", "--always", "--dirty"], 30) if shutil.which("git") else (1, "", "")
    from_bundle = any("bundle" in p for p in (args.ours or [bundled]))
    if from_bundle and os.path.isfile(bundled):
        with open(bundled) as f:
            commit = f.read().strip() + " (bundle)"
    elif rc == 0 and out.strip():
        commit = out.strip()
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"**Training step, side by side** (`python3 scripts/side_by_side.py`, {date}): {device}, driver "
            f"{driver}; torch {torch.__version__}, CUDA {torch.version.cuda}; mtaffect {commit}"), device


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ours", nargs="+", help="the cuda_train_step bench executable (glob patterns allowed); "
                    "default bundle/benches/cuda_train_step-*, else `cargo bench --bench cuda_train_step`")
    ap.add_argument("--device", default="cuda", help="PyTorch's device (cpu for a smoke test)")
    ap.add_argument("--quick", action="store_true", help="passed to torch_bench.py: batch 4 at 64x64, 3 steps")
    ap.add_argument("--models", default="18,50")
    ap.add_argument("--batches", default=None, help="PyTorch's batches; default 64,256 (4 with --quick)")
    ap.add_argument("--skip-compile", action="store_true", help="eager only (torch.compile takes minutes)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per configuration (mtaffect: per grid point)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds in all; configurations not started by then are reported as not run")
    ap.add_argument("--out", help="also write the table (markdown) to this file")
    ap.add_argument("--benchmarks", help="replace the side-by-side block in this markdown file (e.g. BENCHMARKS.md)")
    a = ap.parse_args()
    start = time.monotonic()

    def left():
        return float("inf") if a.budget is None else a.budget - (time.monotonic() - start)

    rows = {}
    cmd = ours_command(a.ours)
    log(f"mtaffect: {' '.join(cmd)}")
    rc, out, err = run(cmd, min(4 * a.timeout, left()))
    ours, flops = parse_ours(out, OURS_SIZE), parse_flops(out)
    for (key, col), v in ours.items():
        rows.setdefault(key, {})[col] = v
        log(f"mtaffect {col} SE-ResNet-{key[0]} b{key[1]} {key[2]}x{key[2]}: {fmt(v)} (images/s)")
    if rc != 0 or not ours:
        status = "timed out" if rc is None else f"rc={rc}"
        log(f"mtaffect: {status}, {len(ours)} result lines; last output: {last_line(err or out)}")

    # torch_bench.py's defaults; rows of different image sizes stay apart.
    batches, size = a.batches or ("4" if a.quick else "64,256"), 64 if a.quick else OURS_SIZE
    grid = [(int(d), int(b), size) for d in a.models.split(",") for b in batches.split(",")]
    configs = [(key, c) for c in EAGER for key in grid]
    if not a.skip_compile:
        configs += [(key, c) for c in COMPILE for key in grid]
    torch_results = []
    for n, (key, (col, mode, precision, layout)) in enumerate(configs, 1):
        budget = min(a.timeout, left())
        if budget <= 0:
            cell = Failed("--budget spent", "not run")
        else:
            log(f"[{n}/{len(configs)}] PyTorch SE-ResNet-{key[0]} b{key[1]} {mode} {precision} {layout} ...")
            cell, r = torch_cell(a, key, mode, precision, layout, budget)
            if r is not None:
                torch_results.append(r)
        log(f"[{n}/{len(configs)}] {fmt(cell)} (images/s)")
        rows.setdefault(key, {})[col] = cell

    header, device = environment(a, torch_results)
    md = table(rows, header + "; TF32 off; images/s (CL: channels_last).")
    if mfu := utilisation(rows, flops, device):
        md += "\n" + mfu
    print(md, end="")
    if a.out:
        write_atomic(a.out, md)
    if a.benchmarks:
        with open(a.benchmarks) as f:
            text = f.read()
        write_atomic(a.benchmarks, replace_block(text, md))
        log(f"updated the side-by-side block in {a.benchmarks}")
    ok = {k.startswith("ours") for c in rows.values() for k, v in c.items() if isinstance(v, float)}
    if ok != {True, False}:
        sys.exit("side_by_side: mtaffect or PyTorch gave no figure (see the table)")


if __name__ == "__main__":
    main()

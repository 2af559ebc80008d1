"""The CPU training step side by side: mtaffect (benches/train_step.rs) and a
PyTorch twin of the same configured model and step, alternately, several
rounds, the same thread count on both sides.

The twin is scripts/torch_model.py's MtlNet built from the run config's
[model] and one step is scripts/torch_train.py's train_step (the configured
loss, global-norm clipping, the configured optimizer at the schedule's rate,
dropout), on a batch with a quarter of each task's labels invalid, as the Rust
bench's. Each round runs our bench once and the twin once in NCHW and once in
channels_last; each side reports the median of its timed steps after warm-up.
The table gives, per side, the median over rounds (min-max of the rounds) and
our time over the faster PyTorch layout's; the load average is printed before
and after every round, since a busy machine moves both sides.

    cargo bench --bench train_step --no-run        # builds the bench
    python3 scripts/cpu_side_by_side.py            # configs/synthetic-cpu.toml, 2 threads, 3 rounds
    python3 scripts/cpu_side_by_side.py --threads 1 --rounds 5 --set model.backbone.depth=18

Without torch the PyTorch side is skipped with a message and ours still runs.
"""
import argparse
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tomllib
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def newest_bench():
    """The most recently built benches/train_step.rs binary."""
    found = [p for p in glob.glob(os.path.join(ROOT, "target/release/deps/train_step-*")) if os.access(p, os.X_OK) and not p.endswith(".d")]
    if not found:
        raise SystemExit("no train_step bench binary: run `cargo bench --bench train_step --no-run` first")
    return max(found, key=os.path.getmtime)


def cpu_model():
    flags, name = set(), platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return f"{name} ({', '.join(simd) or 'flags unknown'})"


def commit():
    try:
        out = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def apply_sets(cfg, sets):
    """--set section.key=value (TOML value) onto the parsed config, as the bench applies it."""
    for s in sets:
        key, _, value = s.partition("=")
        *path, last = key.split(".")
        node = cfg
        for p in path:
            node = node.setdefault(p, {})
        node[last] = tomllib.loads(f"v = {value}")["v"]
    return cfg


def run_ours(binary, config, sets, threads, warmup, steps):
    cmd = [binary, "--config", config, "--warmup", str(warmup), "--steps", str(steps), "--json"]
    for s in sets:
        cmd += ["--set", s]
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    line = [l for l in out.stdout.splitlines() if l.startswith("{")][-1]
    return json.loads(line)["ms_median"]


class Twin:
    """The PyTorch side: model, optimizer and batch built from the config."""

    def __init__(self, torch, cfg, layout):
        from torch_bench import batch
        from torch_model import MtlNet
        from torch_train import make_optimizer, train_step

        self.torch, self.cfg, self.train_step = torch, cfg, train_step
        torch.manual_seed(cfg.get("train", {}).get("seed", 0))
        model = dict(cfg["model"], n_aus=cfg["model"].get("n_aus", 12), n_expr=8)
        self.net = MtlNet(model).train()
        data = cfg["data"]
        gen = torch.Generator().manual_seed(0)
        self.x, self.va, self.au, self.expr = batch(data["batch_size"], data["image_size"], "cpu", gen)
        if layout == "channels_last":
            self.net = self.net.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.opt = make_optimizer(self.net.parameters(), cfg["optim"])
        self.step_no = 0

    def step(self):
        self.train_step(self.net, self.opt, self.cfg, self.step_no, self.x, self.va, self.au, self.expr)
        self.step_no += 1


def run_torch(torch, cfg, layout, warmup, steps):
    twin = Twin(torch, cfg, layout)
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        twin.step()
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def load():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=os.path.join(ROOT, "configs/synthetic-cpu.toml"))
    ap.add_argument("--set", action="append", default=[], dest="sets", help="section.key=value, on both sides")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--ours", default=None, help="the train_step bench binary (default: the newest build)")
    a = ap.parse_args()

    with open(a.config, "rb") as f:
        cfg = apply_sets(tomllib.load(f), a.sets)
    binary = a.ours or newest_bench()
    try:
        import torch

        torch.set_num_threads(a.threads)
        torch_version = torch.__version__
    except ImportError:
        torch, torch_version = None, "not installed"
        print("# torch is not installed (pip install torch): the PyTorch side is skipped", file=sys.stderr)

    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_model()}, {a.threads} threads, mtaffect {commit()}, torch {torch_version}")
    print(f"# {os.path.relpath(a.config, ROOT)} {' '.join(a.sets)}: median of {a.steps} steps after {a.warmup} warm-up, {a.rounds} rounds")
    cols = ["ours"] + (["torch_nchw", "torch_channels_last"] if torch else [])
    rounds = {c: [] for c in cols}
    for r in range(a.rounds):
        before = load()
        rounds["ours"].append(run_ours(binary, a.config, a.sets, a.threads, a.warmup, a.steps))
        if torch:
            rounds["torch_nchw"].append(run_torch(torch, cfg, "nchw", a.warmup, a.steps))
            rounds["torch_channels_last"].append(run_torch(torch, cfg, "channels_last", a.warmup, a.steps))
        cells = ", ".join(f"{c} {rounds[c][-1]:.1f} ms" for c in cols)
        print(f"round {r + 1}: {cells} (load average {before} -> {load()})", flush=True)

    med = {c: statistics.median(v) for c, v in rounds.items()}
    print("\n| side | ms/step, median of rounds | rounds min-max | ours / this |\n|---|---|---|---|")
    for c in cols:
        ratio = f"{med['ours'] / med[c]:.2f}" if c != "ours" else "-"
        print(f"| {c} | {med[c]:.1f} | {min(rounds[c]):.1f}-{max(rounds[c]):.1f} | {ratio} |")
    if torch:
        best = min(cols[1:], key=lambda c: med[c])
        print(f"\nours / PyTorch ({best}): {med['ours'] / med[best]:.2f} (below 1: mtaffect is faster)")


if __name__ == "__main__":
    main()

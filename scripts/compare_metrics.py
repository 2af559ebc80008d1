#!/usr/bin/env python3
"""Compares the train losses and validation P_MTL of two runs' metrics.jsonl.

    compare_metrics.py RUN_A RUN_B [--rtol R]

With --rtol 0 (the default) every figure must be equal bit for bit; otherwise
|a - b| <= rtol * max(|a|, 1). Prints one line per differing record and a
verdict; exits 1 when they differ. Stdlib only (the GPU host runs it).
"""
import argparse
import json
import sys
from pathlib import Path


def figures(run):
    out = []
    for line in (Path(run) / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        key = {"train": "loss", "val": "p_mtl"}.get(r.get("split"))
        if key is not None:
            out.append((r["split"], r["step"], r[key]))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rtol", type=float, default=0.0)
    args = p.parse_args()
    a, b = figures(args.a), figures(args.b)
    bad = 0
    if [r[:2] for r in a] != [r[:2] for r in b]:
        print(f"different records: {len(a)} vs {len(b)}")
        bad += 1
    for (split, step, x), (_, _, y) in zip(a, b):
        ok = x == y if args.rtol == 0 else abs(x - y) <= args.rtol * max(abs(x), 1.0)
        if not ok:
            print(f"{split} step {step}: {x!r} vs {y!r}")
            bad += 1
    kind = "bit for bit" if args.rtol == 0 else f"within rtol {args.rtol}"
    print(f"{'SAME' if bad == 0 else 'DIFFERENT'} ({kind}): {len(a)} records")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

"""PyTorch CPU f32 matmul at the shapes of benches/matmul.rs, for BENCHMARKS.md.

Usage: python3 scripts/torch_matmul_bench.py  (threads = number of cores, default 2)
"""
import os
import time

import torch

torch.set_num_threads(int(os.environ.get("THREADS", os.cpu_count() or 2)))
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
print(f"{'n':>6} {'ms':>10} {'GFLOP/s':>10}")
for n in (512, 1024, 2048):
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    a @ b  # warm-up
    reps = 10 if n <= 1024 else 3
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    print(f"{n:>6} {best * 1e3:>10.2f} {2 * n**3 / best / 1e9:>10.1f}")

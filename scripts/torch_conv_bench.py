"""PyTorch CPU reference figure for benches/conv.rs.

Same shape: conv2d 3x3, 64 -> 64 channels, pad 1, on an 8x56x56 batch,
f32, channels_last memory format, 2 threads. Forward, and backward =
input gradient + weight gradient (torch.autograd.grad for both, no bias).
Best of a few runs; GFLOP/s counted as 2*N*P*Q*K*R*S*C per pass (backward:
twice that), as in the Rust bench.

    pip install torch   # the CPU is enough
    python scripts/torch_conv_bench.py
"""

import time

import torch
import torch.nn.functional as F


def best_of(reps, fn):
    fn()  # warm-up
    best = float("inf")
    for _ in range(reps):
        best = min(best, fn())
    return best


def main():
    torch.set_num_threads(2)
    n, h, w, c, k = 8, 56, 56, 64, 64
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=g).to(memory_format=torch.channels_last).requires_grad_()
    wt = (torch.randn(k, c, 3, 3, generator=g) * 0.05).to(memory_format=torch.channels_last).requires_grad_()
    dy = torch.randn(n, k, h, w, generator=g).to(memory_format=torch.channels_last)
    flops = 2.0 * n * h * w * k * 9 * c
    reps = 5

    def fwd():
        with torch.no_grad():
            t = time.perf_counter()
            F.conv2d(x, wt, padding=1)
            return time.perf_counter() - t

    def bwd():
        y = F.conv2d(x, wt, padding=1)
        t = time.perf_counter()
        torch.autograd.grad(y, (x, wt), dy)
        return time.perf_counter() - t

    tf, tb = best_of(reps, fwd), best_of(reps, bwd)
    print(f"torch {torch.__version__} conv2d 3x3 {c}->{k} pad 1, input [{n}, {c}, {h}, {w}] channels_last f32, "
          f"{torch.get_num_threads()} threads")
    print(f"{'pass':>22} {'ms':>10} {'GFLOP/s':>10}")
    print(f"{'forward':>22} {tf * 1e3:>10.2f} {flops / tf / 1e9:>10.1f}")
    print(f"{'backward (dgrad+wgrad)':>22} {tb * 1e3:>10.2f} {2 * flops / tb / 1e9:>10.1f}")


if __name__ == "__main__":
    main()

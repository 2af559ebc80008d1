"""PyTorch CUDA yardsticks for benches/cuda_kernels.rs, same shapes, same GPU.

- f32 GEMM 4096^3 with TF32 off: torch.mm is cuBLAS SGEMM then.
- conv2d on the shapes of benches/cuda_kernels.rs (batch 64, f32,
  channels_last, cuDNN with TF32 off): fprop, dgrad (input gradient) and
  wgrad (weight gradient), each 2*N*P*Q*K*R*S*C FLOP.
- device-to-device copy of 1 GiB, GB/s counting read + write bytes.
- cross-entropy on [65536, 8] and [16384, 1000] and masked BCE-with-logits
  on [1398101, 12] (a quarter of the labels missing), loss and input
  gradient (torch.autograd.grad): the masked losses of scripts/torch_train.py
  that scripts/torch_bench.py trains with, in GB/s counting the same least
  traffic as benches/cuda_kernels.rs (logits read, gradient written, plus
  the targets: 4 bytes a row for CE, a full tensor for BCE) and in % of
  this script's copy.
- conv2d fprop in bf16, channels_last, cuDNN, on the layer shapes of
  benches/cuda_bf16.rs (same names, same FLOP count with the real C), bf16
  output as cuDNN gives it.

Each figure is the best of several CUDA-event-timed batches. Prints one
line per figure: `torch <name> <value> <unit>`, which scripts/gpu_checks.sh
copies into its summary.

    python3 scripts/torch_kernel_bench.py
"""

import os
import sys

import torch
import torch.nn.functional as F

# torch_train.py lives in scripts/; gpu_checks.sh runs a copy of this file
# from bundle/, next to scripts/ in the carried tree.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from torch_train import bce_loss, ce_loss  # noqa: E402


def best_ms(fn, reps=10, batches=5):
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(batches):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / reps)
    return best


def main():
    if not torch.cuda.is_available():
        print("torch_kernel_bench: skipped, torch sees no CUDA device")
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    print(f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name()}")

    n = 4096
    a = torch.randn(n, n, device=dev)
    b = torch.randn(n, n, device=dev)
    ms = best_ms(lambda: torch.mm(a, b))
    print(f"torch gemm_f32_4096 {2 * n**3 / ms / 1e9:.1f} TFLOP/s (cuBLAS SGEMM, TF32 off)")

    # benches/cuda_kernels.rs CONV_SHAPES: (name, N, H, W, C, K, R, stride, padding).
    shapes = [
        ("conv7x7s2_3_64_112x112_b64", 64, 112, 112, 3, 64, 7, 2, 3),
        ("conv3x3_64_28x28_b64", 64, 28, 28, 64, 64, 3, 1, 1),
        ("conv3x3_64_56x56_b64", 64, 56, 56, 64, 64, 3, 1, 1),
        ("conv3x3s2_64_128_56x56_b64", 64, 56, 56, 64, 128, 3, 2, 1),
        ("conv1x1_64_256_28x28_b64", 64, 28, 28, 64, 256, 1, 1, 0),
        ("conv1x1_256_64_28x28_b64", 64, 28, 28, 256, 64, 1, 1, 0),
        ("conv3x3_512_4x4_b64", 64, 4, 4, 512, 512, 3, 1, 1),
        # its dgrad is conv_transpose2d 128 -> 64, 16x16 -> 32x32
        ("conv4x4s2_64_128_32x32_b64", 64, 32, 32, 64, 128, 4, 2, 1),
    ]
    for name, bn, h, w, c, k, r, stride, pad in shapes:
        x = torch.randn(bn, c, h, w, device=dev).to(memory_format=torch.channels_last)
        wt = (torch.randn(k, c, r, r, device=dev) * 0.05).to(memory_format=torch.channels_last)
        y = F.conv2d(x, wt, stride=stride, padding=pad)
        dy = torch.randn_like(y).to(memory_format=torch.channels_last)
        flop = 2.0 * bn * y.shape[2] * y.shape[3] * k * r * r * c
        args = ([stride] * 2, [pad] * 2, [1, 1], False, [0, 0], 1)
        fprop = best_ms(lambda: F.conv2d(x, wt, stride=stride, padding=pad))
        dgrad = best_ms(lambda: torch.ops.aten.convolution_backward(dy, x, wt, None, *args, [True, False, False]))
        wgrad = best_ms(lambda: torch.ops.aten.convolution_backward(dy, x, wt, None, *args, [False, True, False]))
        for kind, ms in [("fprop", fprop), ("dgrad", dgrad), ("wgrad", wgrad)]:
            print(f"torch {name}_{kind} {flop / ms / 1e9:.1f} TFLOP/s (cuDNN f32, TF32 off)")

    src = torch.empty(1 << 28, device=dev)  # 1 GiB of f32
    dst = torch.empty_like(src)
    ms = best_ms(lambda: dst.copy_(src), reps=5)
    copy_gbs = 2 * src.numel() * 4 / ms / 1e6
    print(f"torch copy_d2d_1GiB {copy_gbs:.1f} GB/s (read+write)")
    del src, dst

    losses(dev, copy_gbs)

    conv_bf16(dev)


def losses(dev, copy_gbs):
    gen = torch.Generator(device=dev).manual_seed(0)

    def row(name, fn, x, tensors):
        ms = best_ms(lambda: torch.autograd.grad(fn(x), x))
        gbs = tensors * x.numel() * 4 / ms / 1e6
        print(f"torch {name} {gbs:.1f} GB/s ({100 * gbs / copy_gbs:.0f}% of copy, {ms:.3f} ms, loss + input gradient)")

    for n, c in [(65536, 8), (16384, 1000)]:
        z = (torch.randn(n, c, device=dev, generator=gen) * 2).requires_grad_()
        y = torch.randint(0, c, (n,), device=dev, generator=gen)
        y[3::4] = -1
        row(f"ce_{n}x{c}", lambda z: ce_loss(z, y), z, 2 + 1 / c)
    rows = (1 << 24) // 12
    x = (torch.randn(rows, 12, device=dev, generator=gen) * 2).requires_grad_()
    t = (torch.rand(rows, 12, device=dev, generator=gen) < 0.3).float()
    t[torch.rand(rows, 12, device=dev, generator=gen) < 0.25] = -1.0
    row(f"bce_{rows}x12_masked", lambda x: bce_loss(x, t), x, 3)


# (name, input N, H, W, C, K, R, S, stride, padding), as in benches/cuda_bf16.rs.
BF16_LAYERS = [
    ("stem7x7s2_3-64_112_b64", 64, 112, 112, 3, 64, 7, 7, 2, 3),
    ("3x3_64-64_56_b64", 64, 56, 56, 64, 64, 3, 3, 1, 1),
    ("3x3_64-64_56_b256", 256, 56, 56, 64, 64, 3, 3, 1, 1),
    ("3x3_64-64_28_b64", 64, 28, 28, 64, 64, 3, 3, 1, 1),
    ("3x3s2_64-128_56_b64", 64, 56, 56, 64, 128, 3, 3, 2, 1),
    ("1x1s2_256-512_56_b64", 64, 56, 56, 256, 512, 1, 1, 2, 0),
    ("1x1_64-256_28_b64", 64, 28, 28, 64, 256, 1, 1, 1, 0),
    ("1x1_256-64_28_b64", 64, 28, 28, 256, 64, 1, 1, 1, 0),
    ("3x3_512-512_4_b64", 64, 4, 4, 512, 512, 3, 3, 1, 1),
    ("1x1_256-1024_7_b256", 256, 7, 7, 256, 1024, 1, 1, 1, 0),
    ("3x3_512-512_4_b256", 256, 4, 4, 512, 512, 3, 3, 1, 1),
    ("1x1_2048-512_4_b256", 256, 4, 4, 2048, 512, 1, 1, 1, 0),
]


def conv_bf16(dev):
    for name, bn, h, w, c, k, r, s, st, pad in BF16_LAYERS:
        x = torch.randn(bn, c, h, w, device=dev, dtype=torch.bfloat16).to(memory_format=torch.channels_last)
        wt = (torch.randn(k, c, r, s, device=dev, dtype=torch.bfloat16) * 0.05).to(
            memory_format=torch.channels_last)
        y = F.conv2d(x, wt, stride=st, padding=pad)
        flop = 2.0 * bn * y.shape[2] * y.shape[3] * k * r * s * c
        ms = best_ms(lambda: F.conv2d(x, wt, stride=st, padding=pad))
        print(f"torch conv_bf16_{name} {flop / ms / 1e9:.1f} TFLOP/s (cuDNN bf16 channels_last fprop, {ms:.3f} ms)")
        dy = torch.randn_like(y).to(memory_format=torch.channels_last)
        args = ([st, st], [pad, pad], [1, 1], False, [0, 0], 1)
        ms = best_ms(lambda: torch.ops.aten.convolution_backward(dy, x, wt, None, *args, [False, True, False]))
        print(f"torch conv_bf16_wgrad_{name} {flop / ms / 1e9:.1f} TFLOP/s (cuDNN bf16 channels_last wgrad, {ms:.3f} ms)")
        ms = best_ms(lambda: torch.ops.aten.convolution_backward(dy, x, wt, None, *args, [True, False, False]))
        print(f"torch conv_bf16_dgrad_{name} {flop / ms / 1e9:.1f} TFLOP/s (cuDNN bf16 channels_last dgrad, {ms:.3f} ms)")


if __name__ == "__main__":
    main()

"""FLOPs of our SE-ResNet multi-task training step as PyTorch counts them
(torch.utils.flop_counter: convolutions and matrix products, two per
multiply-add; a backward pass per operand that needs a gradient), for the
reference figures in tests/flops.rs and the model FLOP utilisation in
BENCHMARKS.md; also a GRU layer's, for the same test. The model is scripts/torch_model.py's, configured as
scripts/torch_bench.py configures it (width 1, SE reduction 16, ImageNet
stem, MTANet neck), and the step is forward + loss + backward.

    python3 scripts/torch_flops.py                 # the tests' cases
    python3 scripts/torch_flops.py 50 256 112      # depth batch size
"""
import os
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_bench import LOSS, batch, model_config  # noqa: E402
from torch_model import MtlNet  # noqa: E402
from torch_train import mtl_loss  # noqa: E402

# (depth, batch, size) of the cases tests/flops.rs checks.
TEST_CASES = [(18, 2, 32), (50, 1, 48)]


def step_flops(depth, n, size):
    """(forward, backward) FLOPs of one training step."""
    torch.manual_seed(0)
    net = MtlNet(model_config(depth)).train()
    x, va, au, expr = batch(n, size, "cpu", torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as fwd:
        loss = mtl_loss(net(x), va, au, expr, LOSS)[0]
    with FlopCounterMode(display=False) as bwd:
        loss.backward()
    return fwd.get_total_flops(), bwd.get_total_flops()


def gru_flops(x_grad):
    """(forward, backward) FLOPs of nn.GRU(3, 4) over 2 sequences of 5 frames,
    the input needing a gradient or not."""
    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 4, batch_first=True)
    x = torch.randn(2, 5, 3, requires_grad=x_grad)
    with FlopCounterMode(display=False) as fwd:
        y = gru(x)[0]
    with FlopCounterMode(display=False) as bwd:
        y.sum().backward()
    return fwd.get_total_flops(), bwd.get_total_flops()


def main():
    cases = [tuple(int(a) for a in sys.argv[1:4])] if len(sys.argv) > 1 else TEST_CASES
    print("depth batch size forward backward total")
    for depth, n, size in cases:
        f, b = step_flops(depth, n, size)
        print(f"{depth} {n} {size} {f} {b} {f + b}")
    if len(sys.argv) == 1:
        print("GRU(3, 4), N 2, T 5: dx forward backward")
        for x_grad in (True, False):
            print(x_grad, *gru_flops(x_grad))


if __name__ == "__main__":
    main()

"""The face-recognition IResNet (the layout of insightface's arcface_torch
`iresnet.py`, written here from its published definition) with random
weights and random batch-norm statistics, and the output-parity fixture the
Rust import test reproduces (tests/import.rs).

Architecture, as mtaffect's src/model/backbone/iresnet.rs builds it:
  conv1 3x3/1 -> bn1 -> prelu
  4 stages of units (first unit of each stage: stride 2 and a downsample):
    bn1 -> conv1 3x3/1 -> bn2 -> prelu -> conv2 3x3/stride -> bn3, + shortcut
    (downsample = conv1x1/stride + BN where the shape changes)
  bn2 -> dropout -> flatten (NCHW) -> fc -> features (BatchNorm1d, weight fixed at 1)
Every BN has eps 1e-5; convolutions have no bias.

The fixture (default: tests/fixtures/iresnet18_w0125_32px.safetensors) holds
the PyTorch state dict under its own names and layouts (OIHW convolutions,
num_batches_tracked as int64, the FC over the NCHW flatten), plus
`input.images_nhwc` (the batch, in mtaffect's NHWC layout) and
`output.embedding` (the eval-mode outputs). A state dict and the I/O tensors
share one file to keep the fixture a single small file; the importer reports
the `input.`/`output.` tensors as unused.

Usage: python3 scripts/torch_iresnet.py [OUT] [--depth 18] [--width 0.125]
       [--embedding 32] [--size 32] [--batch 3] [--seed 0]
"""
import argparse
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_train import write_safetensors  # noqa: E402

LAYOUTS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 14, 3], 100: [3, 13, 30, 3]}
EPS = 1e-5


def conv3x3(c_in, c_out, stride=1):
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class Unit(nn.Module):
    """BN - conv3x3 - BN - PReLU - conv3x3(stride) - BN, plus the shortcut; no activation after the add."""

    def __init__(self, c_in, width, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in, eps=EPS)
        self.conv1 = conv3x3(c_in, width)
        self.bn2 = nn.BatchNorm2d(width, eps=EPS)
        self.prelu = nn.PReLU(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn3 = nn.BatchNorm2d(width, eps=EPS)
        self.downsample = None
        if stride != 1 or c_in != width:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, width, 1, stride=stride, bias=False), nn.BatchNorm2d(width, eps=EPS)
            )

    def forward(self, x):
        short = x if self.downsample is None else self.downsample(x)
        h = self.prelu(self.bn2(self.conv1(self.bn1(x))))
        return self.bn3(self.conv2(h)) + short


class IResNet(nn.Module):
    def __init__(self, depth, widths, embedding, image_size, dropout=0.0):
        super().__init__()
        self.conv1 = conv3x3(3, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0], eps=EPS)
        self.prelu = nn.PReLU(widths[0])
        c_in = widths[0]
        for stage, (n, width) in enumerate(zip(LAYOUTS[depth], widths)):
            units = []
            for i in range(n):
                units.append(Unit(c_in, width, 2 if i == 0 else 1))
                c_in = width
            setattr(self, f"layer{stage + 1}", nn.Sequential(*units))
        side = image_size // 16
        self.bn2 = nn.BatchNorm2d(c_in, eps=EPS)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(c_in * side * side, embedding)
        self.features = nn.BatchNorm1d(embedding, eps=EPS)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        for stage in range(1, 5):
            x = getattr(self, f"layer{stage}")(x)
        x = self.dropout(self.bn2(x))
        return self.features(self.fc(torch.flatten(x, 1)))


def widths(width_mult):
    """The stage widths mtaffect uses: round(base * width_mult), at least 8."""
    return [max(8, round(b * width_mult)) for b in (64, 128, 256, 512)]


def randomise(net, gen):
    """Random weights, slopes and batch-norm statistics, so the fixture tests every tensor."""
    with torch.no_grad():
        for name, m in net.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / fan_in**0.5)
                if m.bias is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                c = m.num_features
                if name != "features":  # the embedding BN's weight stays at 1
                    m.weight.copy_(1.0 + 0.2 * torch.randn(c, generator=gen))
                m.bias.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(0.25 + 0.1 * torch.randn(m.weight.shape, generator=gen))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", default="tests/fixtures/iresnet18_w0125_32px.safetensors")
    ap.add_argument("--depth", type=int, default=18)
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--embedding", type=int, default=32)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    gen = torch.Generator().manual_seed(a.seed)
    net = IResNet(a.depth, widths(a.width), a.embedding, a.size)
    randomise(net, gen)
    net.eval()
    x = torch.randn(a.batch, 3, a.size, a.size, generator=gen)
    with torch.no_grad():
        y = net(x)
    tensors = dict(net.state_dict())
    tensors["input.images_nhwc"] = x.permute(0, 2, 3, 1).contiguous()
    tensors["output.embedding"] = y
    meta = {
        "depth": str(a.depth),
        "width_mult": repr(a.width),
        "embedding": str(a.embedding),
        "image_size": str(a.size),
        "torch": torch.__version__,
    }
    write_safetensors(a.out, tensors, meta)
    params = sum(p.numel() for p in net.parameters())
    print(f"{a.out}: IResNet-{a.depth} widths {widths(a.width)}, {params} parameters, outputs {list(y.shape)}")


if __name__ == "__main__":
    main()

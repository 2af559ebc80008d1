"""ResNets with random weights and random batch-norm statistics, and the
output-parity fixtures the Rust import test reproduces
(tests/import_resnet.rs).

  resnet18, resnet50    torchvision's layout, no SE: 7x7/2 stem conv1-bn1-
                        ReLU-maxpool, basic blocks or bottlenecks with the
                        stride on the 3x3 conv, downsample.{0,1} = 1x1 conv +
                        BN where the shortcut changes shape
  seresnet50            timm's SE-ResNet-50: the same with an SE gate after
                        bn3 of every bottleneck (se.fc1 / se.fc2 are 1x1
                        convs with bias, ReLU between, sigmoid after), hidden
                        width C/16 rounded to a multiple of 8, at least 8

The classes below are written from those published definitions so that
the stem and stage widths can be reduced (torchvision and timm fix the
stem at 64 channels). `--check-library` shows they are the libraries'
architectures: at full width it loads the same weights into
torchvision.models.resnet18/50 or timm's seresnet50 (strict names and
shapes) and compares the outputs.

Widths follow mtaffect's rule for `width_mult`: round(base * width_mult),
at least 8, for the stem and the four stages.

A fixture holds the state dict under its own names and layouts (OIHW
convolutions, num_batches_tracked), `input.images_nhwc` (the batch in
mtaffect's NHWC layout, values in [-1, 1]) and `output.features` (layer4's
eval-mode output, NHWC). The importer reports the classifier and the
`input.`/`output.` tensors as unused.

Usage: python3 scripts/torch_resnet.py ARCH OUT [--width 0.0625] [--size 48]
       [--batch 2] [--seed 0] [--check-library]
--check-library needs torchvision (resnets) or timm (seresnet50).
"""
import argparse
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_iresnet import randomise  # noqa: E402
from torch_train import write_safetensors  # noqa: E402

ARCHS = {
    "resnet18": ("basic", (2, 2, 2, 2), False),
    "resnet50": ("bottleneck", (3, 4, 6, 3), False),
    "seresnet50": ("bottleneck", (3, 4, 6, 3), True),
}


def widths(width_mult):
    """mtaffect's stem and stage widths for `width_mult`: round(base * width_mult), at least 8."""
    return [max(8, round(b * width_mult)) for b in (64, 64, 128, 256, 512)]


def conv(c_in, c_out, k, stride=1):
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False)


class SE(nn.Module):
    def __init__(self, c):
        super().__init__()
        hidden = max(8, int(c / 16 + 4) // 8 * 8)
        self.fc1 = nn.Conv2d(c, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, c, 1)

    def forward(self, x):
        g = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(g))))


class Block(nn.Module):
    """Basic block (3x3-3x3) or bottleneck (1x1-3x3-1x1, x4), optional SE, shortcut, ReLU."""

    def __init__(self, kind, c_in, width, stride, se):
        super().__init__()
        out = width * (4 if kind == "bottleneck" else 1)
        if kind == "basic":
            self.convs = [("conv1", conv(c_in, width, 3, stride)), ("conv2", conv(width, width, 3))]
        else:
            self.convs = [
                ("conv1", conv(c_in, width, 1)),
                ("conv2", conv(width, width, 3, stride)),
                ("conv3", conv(width, out, 1)),
            ]
        for i, (name, c) in enumerate(self.convs):
            setattr(self, name, c)
            setattr(self, f"bn{i + 1}", nn.BatchNorm2d(c.out_channels))
        self.se = SE(out) if se else None
        self.downsample = None
        if stride != 1 or c_in != out:
            self.downsample = nn.Sequential(conv(c_in, out, 1, stride), nn.BatchNorm2d(out))

    def forward(self, x):
        h = x
        for i, (name, _) in enumerate(self.convs):
            h = getattr(self, f"bn{i + 1}")(getattr(self, name)(h))
            if i + 1 < len(self.convs):
                h = torch.relu(h)
        if self.se is not None:
            h = self.se(h)
        return torch.relu(h + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, arch, width_mult):
        super().__init__()
        kind, layers, se = ARCHS[arch]
        w = widths(width_mult)
        self.conv1 = conv(3, w[0], 7, 2)
        self.bn1 = nn.BatchNorm2d(w[0])
        c_in = w[0]
        for stage, (n, width) in enumerate(zip(layers, w[1:])):
            blocks = []
            for i in range(n):
                blocks.append(Block(kind, c_in, width, 2 if i == 0 and stage > 0 else 1, se))
                c_in = width * (4 if kind == "bottleneck" else 1)
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(c_in, 8)  # a small classifier keeps the fixture small; the import leaves it unused

    def forward_features(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def library_features(arch, state, x):
    """The same weights through torchvision's or timm's own model (full width only)."""
    if arch == "seresnet50":
        import timm

        lib = timm.create_model("seresnet50", pretrained=False, num_classes=8)
        feats = lib.forward_features
    else:
        import torchvision

        lib = getattr(torchvision.models, arch)(weights=None, num_classes=8)

        def feats(x):
            x = lib.maxpool(lib.relu(lib.bn1(lib.conv1(x))))
            return lib.layer4(lib.layer3(lib.layer2(lib.layer1(x))))

    lib.load_state_dict(state, strict=True)
    lib.eval()
    with torch.no_grad():
        return feats(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("arch", choices=sorted(ARCHS))
    ap.add_argument("out")
    ap.add_argument("--width", type=float, default=0.0625)
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check-library", action="store_true")
    a = ap.parse_args()
    gen = torch.Generator().manual_seed(a.seed)
    net = ResNet(a.arch, a.width)
    randomise(net, gen)
    net.eval()
    x = torch.rand(a.batch, 3, a.size, a.size, generator=gen) * 2 - 1
    with torch.no_grad():
        y = net.forward_features(x)
    if a.check_library:
        if a.width != 1.0:
            sys.exit("--check-library compares full-width models (--width 1)")
        lib = library_features(a.arch, net.state_dict(), x)
        print(f"library model, same weights: max |difference| {float((lib - y).abs().max()):.3e}")
    tensors = dict(net.state_dict())
    tensors["input.images_nhwc"] = x.permute(0, 2, 3, 1).contiguous()
    tensors["output.features"] = y.permute(0, 2, 3, 1).contiguous()
    meta = {"arch": a.arch, "width_mult": repr(a.width), "image_size": str(a.size), "torch": torch.__version__}
    write_safetensors(a.out, tensors, meta)
    params = sum(p.numel() for p in net.parameters())
    print(f"{a.out}: {a.arch} widths {widths(a.width)}, {params} parameters, features {list(y.shape)}")


if __name__ == "__main__":
    main()

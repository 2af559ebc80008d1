"""torchvision's DenseNet (its own `torchvision.models.densenet.DenseNet`,
so the fixture follows the published definition, not a copy of it) with
random weights and random batch-norm statistics, and the output-parity
fixture the Rust tests reproduce (tests/densenet_import.rs).

Needs torchvision (`pip install torchvision`). Architecture, as mtaffect's
src/model/backbone/densenet.rs builds it:
  conv0 7x7/2 -> norm0 -> relu0 -> pool0 (max 3/2 pad 1)
  dense blocks: each layer reads the concat of all earlier maps of its block,
    norm1 -> relu -> conv1 1x1 (bn_size * growth) -> norm2 -> relu -> conv2 3x3 (growth)
  transitions between blocks: norm -> relu -> conv 1x1 (channels // 2) -> avgpool 2/2
  norm5, then the ReLU of DenseNet.forward; the classifier is not part of the output.

The fixture (default: tests/fixtures/densenet_b2222_k8_40x72.safetensors, a
reduced DenseNet: blocks (2, 2, 2, 2), growth 8, 16 stem channels, bn_size
2, on two 40x72 images, non-square so a swapped H and W shows) holds the
state dict under torchvision's names and layouts (OIHW convolutions,
num_batches_tracked as int64, a 4-way classifier), plus `input.images_nhwc`
(the batch in mtaffect's NHWC layout) and `output.features` (the eval-mode
feature map after norm5 and ReLU, permuted to NHWC). `--depth 121` builds
torchvision's densenet121 instead (all of its sizes; the full-size check).

Usage: python3 scripts/torch_densenet.py [OUT] [--depth 121 | --blocks 2,2,2,2]
       [--growth 8] [--init 16] [--bn-size 2] [--height 40] [--width 72]
       [--batch 2] [--seed 0]
"""
import argparse
import os
import sys

import torch
from torchvision.models.densenet import DenseNet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_iresnet import randomise  # noqa: E402
from torch_train import write_safetensors  # noqa: E402

# torchvision's densenet121/169/201 (growth 32, 64 stem channels, bn_size 4).
LAYOUTS = {121: (6, 12, 24, 16), 169: (6, 12, 32, 32), 201: (6, 12, 48, 32)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", default="tests/fixtures/densenet_b2222_k8_40x72.safetensors")
    ap.add_argument("--depth", type=int, choices=sorted(LAYOUTS), help="torchvision's full-size model")
    ap.add_argument("--blocks", default="2,2,2,2")
    ap.add_argument("--growth", type=int, default=8)
    ap.add_argument("--init", type=int, default=16)
    ap.add_argument("--bn-size", type=int, default=2)
    ap.add_argument("--height", type=int, default=40)
    ap.add_argument("--width", type=int, default=72)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.depth:
        blocks, growth, init, bn_size, classes = LAYOUTS[a.depth], 32, 64, 4, 1000
    else:
        blocks = tuple(int(b) for b in a.blocks.split(","))
        # A 4-way classifier keeps the fixture small; the importer lists it as unused.
        growth, init, bn_size, classes = a.growth, a.init, a.bn_size, 4
    gen = torch.Generator().manual_seed(a.seed)
    net = DenseNet(
        growth_rate=growth, block_config=blocks, num_init_features=init, bn_size=bn_size, num_classes=classes
    )
    randomise(net, gen)
    net.eval()
    x = torch.randn(a.batch, 3, a.height, a.width, generator=gen)
    with torch.no_grad():
        # DenseNet.forward's first steps: the features, then its ReLU.
        y = torch.relu(net.features(x))
    tensors = dict(net.state_dict())
    tensors["input.images_nhwc"] = x.permute(0, 2, 3, 1).contiguous()
    tensors["output.features"] = y.permute(0, 2, 3, 1).contiguous()
    meta = {
        "block_config": ",".join(map(str, blocks)),
        "growth_rate": str(growth),
        "init_features": str(init),
        "bn_size": str(bn_size),
        "torch": torch.__version__,
    }
    write_safetensors(a.out, tensors, meta)
    params = sum(p.numel() for p in net.features.parameters())
    print(
        f"{a.out}: DenseNet blocks {blocks} growth {growth} init {init} bn_size {bn_size}, "
        f"{params} feature parameters, features NHWC {list(tensors['output.features'].shape)}, "
        f"|y| max {y.abs().max():.3g} mean {y.abs().mean():.3g}"
    )


if __name__ == "__main__":
    main()

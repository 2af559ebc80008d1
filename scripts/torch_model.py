"""The mtaffect SE-ResNet multi-task network in PyTorch, loading mtaffect's
safetensors checkpoints, to show both frameworks compute the same outputs.

Checkpoint layout (see src/train/checkpoint.rs): parameters under their
registry names (`stem.conv.weight`, `layer1.0.conv1.weight`,
`layer1.0.se.fc1.weight`, `neck.avg_branch.weight`, `head.va.weight`, ...),
BN running statistics under `buffers.<layer>.running_mean|running_var`,
optimizer state under `optim.*`, the run config (TOML) in the metadata.
Conv weights are [K, R, S, C] (out, kh, kw, in) and become OIHW by
permute(0, 3, 1, 2); activations are NHWC and become NCHW by permute(0, 3, 1, 2).

Usage:
  cargo run --release --example dump_outputs -- CKPT dump.safetensors 4
  python3 scripts/torch_model.py CKPT dump.safetensors
"""
import json
import struct
import sys
import tomllib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DTYPES = {"F32": np.float32, "F64": np.float64}


def read_safetensors(path):
    """(tensors, metadata) from a safetensors file, without the safetensors package."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, h in header.items():
        a, b = h["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype=DTYPES[h["dtype"]]).reshape(h["shape"]).copy())
    return out, meta


def width(c, mult):
    return max(int(round(c * mult)), 8)


class SE(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        hidden = max(c // max(r, 1), 1)
        self.fc1, self.fc2 = nn.Linear(c, hidden), nn.Linear(hidden, c)

    def forward(self, x):
        g = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        return x * g[:, :, None, None]


def downsample(c_in, c_out, stride):
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


class Basic(nn.Module):
    expansion = 1

    def __init__(self, c_in, w, stride, r):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, w, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.conv2 = nn.Conv2d(w, w, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(w)
        self.se = SE(w, r)
        self.downsample = downsample(c_in, w, stride)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.se(self.bn2(self.conv2(h)))
        s = x if self.downsample is None else self.downsample(x)
        return F.relu(h + s)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in, w, stride, r):
        super().__init__()
        out = w * 4
        self.conv1 = nn.Conv2d(c_in, w, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.conv2 = nn.Conv2d(w, w, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(w)
        self.conv3 = nn.Conv2d(w, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.se = SE(out, r)
        self.downsample = downsample(c_in, out, stride)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.se(self.bn3(self.conv3(h)))
        s = x if self.downsample is None else self.downsample(x)
        return F.relu(h + s)


LAYOUT = {10: ([1, 1, 1, 1], Basic), 18: ([2, 2, 2, 2], Basic), 34: ([3, 4, 6, 3], Basic), 50: ([3, 4, 6, 3], Bottleneck)}


class MtlNet(nn.Module):
    def __init__(self, m):
        super().__init__()
        # [model.backbone] (kind "se_resnet"); configs written before it hold the keys flat in [model].
        bb = m.get("backbone", m)
        counts, block = LAYOUT[bb["depth"]]
        mult, r = bb["width_mult"], bb["se_reduction"]
        self.imagenet_stem = bb["stem"] == "imagenet"
        c = width(64, mult)
        self.stem = nn.Module()
        self.stem.conv = nn.Conv2d(3, c, 7, 2, 3, bias=False) if self.imagenet_stem else nn.Conv2d(3, c, 3, 1, 1, bias=False)
        self.stem.bn = nn.BatchNorm2d(c)
        for stage, (n, base) in enumerate(zip(counts, [64, 128, 256, 512])):
            blocks = []
            for i in range(n):
                stride = 2 if i == 0 and stage > 0 else 1
                blocks.append(block(c, width(base, mult), stride, r))
                c = width(base, mult) * block.expansion
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.mtanet = m["neck"] == "mtanet"
        # Ours: dropout on the feature map before each MTANet branch (two
        # masks), or on the pooled vector for a plain pool.
        self.dropout = m.get("dropout", 0.0)
        if self.mtanet:
            self.neck = nn.Module()
            self.neck.avg_branch = nn.Conv2d(c, c, 1)
            self.neck.max_branch = nn.Conv2d(c, c, 1)
            c *= 2
        self.head = nn.Module()
        self.head.va = nn.Linear(c, 2)
        self.head.au = nn.Linear(c, m["n_aus"])
        self.head.expr = nn.Linear(c, m["n_expr"])

    def forward(self, x):
        h = F.relu(self.stem.bn(self.stem.conv(x)))
        if self.imagenet_stem:
            h = F.max_pool2d(h, 3, 2, 1)
        for i in range(1, 5):
            h = getattr(self, f"layer{i}")(h)
        drop = lambda t: F.dropout(t, self.dropout, self.training)  # noqa: E731
        if self.mtanet:
            a = F.leaky_relu(self.neck.avg_branch(drop(h)), 0.01).mean((2, 3))
            m = F.leaky_relu(self.neck.max_branch(drop(h)), 0.01).amax((2, 3))
            f = torch.cat([a, m], 1)
        else:
            f = drop(h.mean((2, 3)))
        return torch.tanh(self.head.va(f)), self.head.au(f), self.head.expr(f)


def load_mtaffect(path):
    tensors, meta = read_safetensors(path)
    cfg = tomllib.loads(meta["config"])
    net = MtlNet(cfg["model"])
    state = {}
    for name, t in tensors.items():
        if name.startswith("optim.") or name.startswith("buffers.loss."):
            continue
        if name.startswith("buffers."):
            name = name[len("buffers."):]
        if t.ndim == 4:  # [K, R, S, C] -> OIHW
            t = t.permute(0, 3, 1, 2).contiguous()
        state[name] = t
    # Loss weighting parameters (uncertainty) are not part of the network.
    state = {k: v for k, v in state.items() if not k.startswith("loss.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    assert not missing and not unexpected, (missing, unexpected)
    return net.eval(), cfg


def main():
    ckpt, dump = sys.argv[1], sys.argv[2]
    net, _ = load_mtaffect(ckpt)
    d, _ = read_safetensors(dump)
    x = d["input_nhwc"].permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        va, au, expr = net(x)
    worst = 0.0
    for name, ours, theirs in [("va", d["va"], va), ("au", d["au"], au), ("expr", d["expr"], expr)]:
        err = (ours - theirs).abs().max().item()
        scale = theirs.abs().max().item()
        worst = max(worst, err / max(scale, 1e-6))
        print(f"{name:5} max |mtaffect - torch| = {err:.3e} (max |torch| = {scale:.3e})")
    ok = worst < 1e-4
    print("MATCH" if ok else "MISMATCH", f"(worst relative {worst:.2e}, tolerance 1e-4)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

"""Converts a PyTorch checkpoint (.pth / .pt: a pickled state dict, or a
dict holding one under "state_dict" or "model") to safetensors for
`mtaffect import`. Floating-point tensors are written as float32 (half
precision models included); integer tensors such as BatchNorm's
num_batches_tracked as int64. A "module." prefix (DataParallel) is dropped.

Usage: python3 scripts/pth_to_safetensors.py model.pth model.safetensors
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_train import write_safetensors  # noqa: E402


def state_dict(obj):
    """The tensors of a loaded checkpoint, by name."""
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        sys.exit(f"not a state dict: {type(obj).__name__} (save model.state_dict(), not the model)")
    out = {}
    for name, t in obj.items():
        if not torch.is_tensor(t):
            continue
        name = name[len("module."):] if name.startswith("module.") else name
        out[name] = t.float() if t.is_floating_point() else t.long()
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    # weights_only: a state dict needs no code from the file.
    tensors = state_dict(torch.load(src, map_location="cpu", weights_only=True))
    write_safetensors(dst, tensors, {"source": os.path.basename(src)})
    print(f"{dst}: {len(tensors)} tensors from {src}")


if __name__ == "__main__":
    main()

"""mtaffect's training objective and update rule in PyTorch, shared by
scripts/torch_reference.py (the golden fixture) and scripts/torch_parity_run.py.

Each piece follows the Rust definition it names, so a difference between the
two frameworks is a bug, not a convention:
- ccc_loss: src/ops/loss/ccc.rs. Per output column, population statistics over
  the rows whose target is not -5; a column with fewer than 2 valid rows or a
  zero denominator adds 0; the sum of (1 - CCC) is divided by ALL columns.
- bce_loss: src/ops/loss/bce.rs. Mean over the elements whose target is not -1;
  0 when none is valid.
- ce_loss: src/ops/loss/cross_entropy.rs. Mean over rows whose class is not -1
  (PyTorch's ignore_index); 0 when none is valid (PyTorch alone gives NaN).
- mtl_loss: src/train/mtl_loss.rs with fixed weights: w_va·L_va + w_au·L_au + w_expr·L_expr.
- lr_at: src/optim/schedule.rs (linear warm-up from 0, then the decay).
- make_optimizer: src/optim/{adam,sgd}.rs, which follow torch.optim's formulas
  (AdamW when `decoupled`, Adam with an L2 term otherwise; SGD with PyTorch's
  momentum, dampening and Nesterov).
- train_step: Trainer::step in src/train/trainer.rs (loss, backward, global
  gradient-norm clip, update at the schedule's rate); clip_and_update is its
  part after backward, which every trainer shares (optimizer_step).
"""
import json
import math
import struct

import torch
import torch.nn.functional as F

INVALID_VA = -5.0
IGNORE = -1


# The losses are written with masks rather than boolean indexing or Python
# branches, so they never wait for the device and torch.compile traces them
# whole (scripts/torch_bench.py times them).


def ccc_loss(pred, target):
    m = (target != INVALID_VA).to(pred.dtype)
    n = m.sum(0)
    n1 = n.clamp(min=1.0)
    mp, mt = (m * pred).sum(0) / n1, (m * target).sum(0) / n1
    dp, dt = m * (pred - mp), m * (target - mt)
    vp, vt, cov = (dp * dp).sum(0) / n1, (dt * dt).sum(0) / n1, (dp * dt).sum(0) / n1
    den = vp + vt + (mp - mt) ** 2
    defined = (n >= 2) & (den > 0)
    ccc = 2.0 * cov / torch.where(defined, den, torch.ones_like(den))
    return torch.where(defined, 1.0 - ccc, torch.zeros_like(ccc)).sum() / pred.shape[1]


def bce_loss(logits, target):
    m = (target != IGNORE).to(logits.dtype)
    per = F.binary_cross_entropy_with_logits(logits, target.clamp(min=0.0), reduction="none")
    return (per * m).sum() / m.sum().clamp(min=1.0)


def ce_loss(logits, classes, label_smoothing=0.0):
    n = (classes != IGNORE).sum().clamp(min=1)
    total = F.cross_entropy(logits, classes, ignore_index=IGNORE, label_smoothing=label_smoothing, reduction="sum")
    return total / n


def mtl_loss(out, va, au, expr, loss_cfg):
    """(total, (l_va, l_au, l_expr)) for the heads (va, au, expr) of MtlNet."""
    weighting = loss_cfg.get("weighting", "fixed")
    if weighting != "fixed":
        raise SystemExit(f"loss.weighting = {weighting!r}: only 'fixed' is mirrored in PyTorch")
    p_va, p_au, p_expr = out
    terms = (
        ccc_loss(p_va, va),
        bce_loss(p_au, au),
        ce_loss(p_expr, expr, loss_cfg.get("label_smoothing", 0.0)),
    )
    w = (loss_cfg.get("w_va", 1.0), loss_cfg.get("w_au", 1.0), loss_cfg.get("w_expr", 1.0))
    total = w[0] * terms[0] + w[1] * terms[1] + w[2] * terms[2]
    return total, terms


def lr_at(sched, step):
    base, warm = sched["base_lr"], sched.get("warmup_steps", 0)
    if step < warm:
        return base * (step + 1) / warm
    t = step - warm
    decay = sched.get("decay", {"kind": "constant"})
    kind = decay["kind"]
    frac = min(t / decay["total_steps"], 1.0) if "total_steps" in decay else 0.0
    if kind == "constant":
        return base
    if kind == "step":
        return base * decay["gamma"] ** (t // decay["step_size"])
    if kind == "cosine":
        lo = decay["min_lr"]
        return lo + (base - lo) * 0.5 * (1.0 + math.cos(math.pi * frac))
    if kind == "poly":
        return base * (1.0 - frac) ** decay["power"]
    if kind == "linear":
        return base * (1.0 - frac)
    raise SystemExit(f"schedule.decay.kind = {kind!r} is not mirrored here")


def make_optimizer(params, optim_cfg):
    c = dict(optim_cfg)
    kind = c.pop("kind")
    if kind == "adam":
        betas = (c.get("beta1", 0.9), c.get("beta2", 0.999))
        cls = torch.optim.AdamW if c.get("decoupled", False) else torch.optim.Adam
        return cls(params, lr=0.0, betas=betas, eps=c.get("eps", 1e-8), weight_decay=c.get("weight_decay", 0.0), foreach=False)
    if kind == "sgd":
        return torch.optim.SGD(
            params,
            lr=0.0,
            momentum=c.get("momentum", 0.9),
            dampening=c.get("dampening", 0.0),
            nesterov=c.get("nesterov", False),
            weight_decay=c.get("weight_decay", 0.0),
            foreach=False,
        )
    raise SystemExit(f"optim.kind = {kind!r} is not mirrored here")


def train_step(net, opt, cfg, step, x, va, au, expr):
    """One Trainer::step: returns (loss, l_va, l_au, l_expr, grad_norm, lr)."""
    net.train()
    opt.zero_grad(set_to_none=True)
    total, terms = mtl_loss(net(x), va, au, expr, cfg.get("loss", {}))
    total.backward()
    norm, lr = clip_and_update(net, opt, cfg, step)
    return (total.item(), *(t.item() for t in terms), norm, lr)


def clip_and_update(net, opt, cfg, step):
    """The update after backward (src/train/trainer.rs optimizer_step): global
    gradient-norm clip, then the optimizer at the schedule's rate; returns
    (grad norm before clipping, lr)."""
    params = [p for p in net.parameters() if p.grad is not None]
    norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params)).item()
    clip = cfg.get("train", {}).get("grad_clip", 5.0)
    # Ours scales only when the norm exceeds the limit, by max / (norm + 1e-6).
    if clip > 0.0 and norm > clip:
        for p in params:
            p.grad.mul_(clip / (norm + 1e-6))
    lr = lr_at(cfg["schedule"], step)
    for g in opt.param_groups:
        g["lr"] = lr
    opt.step()
    return norm, lr


ST_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64"}


def write_safetensors(path, tensors, metadata):
    """Writes {name: tensor} (f32/f64, or int64 as a state dict's counters) as safetensors, tensors in name order."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        b = t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # the data starts 8-aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def to_ours(t):
    """A PyTorch parameter or gradient in our layout: OIHW -> [K, R, S, C]."""
    return t.permute(0, 2, 3, 1).contiguous() if t.ndim == 4 else t


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML form for {v!r}")


def to_toml(cfg):
    """A two-level config dict as TOML (sections of scalars and inline tables)."""
    out = []
    for section, table in cfg.items():
        out.append(f"[{section}]")
        out.extend(f"{k} = {toml_value(v)}" for k, v in table.items())
        out.append("")
    return "\n".join(out)

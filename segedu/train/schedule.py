"""Learning-rate schedules and parameter groups, as the papers train (chapter 7).

Poly decay (ParseNet, then DeepLab Sec. 4 and PSPNet Sec. 5.1): at iteration ``it`` of ``T``,

    lr(it) = (base_lr - min_lr) * (1 - it / T) ** power + min_lr,      power = 0.9,

optionally after a linear warm-up over the first ``warmup_iters`` iterations (common for large
batches; not in those papers). Heads train at 10x the backbone's rate when the backbone is
pretrained (DeepLab's reference and PSPNet's "10x for the new layers").

PyTorch's ``PolynomialLR`` computes the same decay but defaults to ``total_iters=5,
power=1.0``: left at the defaults it decays linearly for five steps and then stays at 0 — the
"poly scheduler that never decays" that users report (as the lr is 0 after step 5, training
silently stops). :func:`poly_lr` sets both; :func:`poly_schedule` is the closed form.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["poly_factor", "poly_schedule", "param_groups"]


def poly_factor(it: int, total_iters: int, power: float = 0.9, *, warmup_iters: int = 0,
                min_ratio: float = 0.0) -> float:
    """The multiplier of ``base_lr`` at iteration ``it`` (0-based), closed form.

    Warm-up ramps linearly from ``1 / warmup_iters`` to 1; then poly decay from 1 at
    ``it = warmup_iters`` to ``min_ratio`` at ``it = total_iters`` (clamped after it).
    """
    if total_iters < 1:
        raise ValueError(f"total_iters must be at least 1, got {total_iters}.")
    if not 0 <= warmup_iters < total_iters:
        raise ValueError(f"warmup_iters must be in [0, total_iters), got {warmup_iters}.")
    if it < warmup_iters:
        return (it + 1) / warmup_iters
    progress = min(1.0, (it - warmup_iters) / (total_iters - warmup_iters))
    return (1 - min_ratio) * (1 - progress) ** power + min_ratio


class _PolyFactor:
    """Picklable per-group factor for ``LambdaLR`` (its state_dict stores ``__dict__``)."""

    def __init__(self, total_iters: int, power: float, warmup_iters: int, min_ratio: float):
        self.total_iters, self.power = total_iters, power
        self.warmup_iters, self.min_ratio = warmup_iters, min_ratio

    def __call__(self, it: int) -> float:
        return poly_factor(it, self.total_iters, self.power, warmup_iters=self.warmup_iters,
                           min_ratio=self.min_ratio)


def poly_schedule(optimizer: torch.optim.Optimizer, total_iters: int, power: float = 0.9, *,
                  warmup_iters: int = 0, min_lr: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Poly decay with optional warm-up and floor ``min_lr`` (absolute; a head group at 10x
    decays to ``10 * min_lr``). Call ``.step()`` once per iteration, after ``optimizer.step()``.
    """
    factors = []
    for group in optimizer.param_groups:
        base = group.get("initial_lr", group["lr"])
        ratio = min_lr / base * group.get("lr_mult", 1.0) if base else 0.0
        factors.append(_PolyFactor(total_iters, power, warmup_iters, min(ratio, 1.0)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)


def param_groups(model: nn.Module, lr: float, head_lr_mult: float = 10.0,
                 weight_decay: float = 1e-4) -> list[dict]:
    """Two optimizer groups: ``model.backbone`` at ``lr`` and everything else (heads) at
    ``head_lr_mult * lr``; one group if the model has no ``backbone`` attribute (FCN-8s names its
    layers after the Caffe model; SegNet, U-Net) or ``head_lr_mult == 1``. BatchNorm and bias
    parameters get no weight decay (they are not weights that overfit)."""
    backbone = getattr(model, "backbone", None)
    backbone_ids = {id(p) for p in backbone.parameters()} if isinstance(backbone, nn.Module) \
        else set()
    groups: dict[tuple[bool, bool], list] = {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        is_head = id(p) not in backbone_ids and bool(backbone_ids) and head_lr_mult != 1
        groups.setdefault((is_head, p.ndim <= 1), []).append(p)
    return [{"params": params, "lr": lr * (head_lr_mult if head else 1.0),
             "lr_mult": head_lr_mult if head else 1.0,
             "weight_decay": 0.0 if no_decay else weight_decay, "name":
             ("head" if head else "backbone") + ("_no_decay" if no_decay else "")}
            for (head, no_decay), params in sorted(groups.items())]

"""The small, honest training loop chapters 1-6 use: cross-entropy with ignore index, poly LR,
evaluation. Chapter 7's :class:`~segedu.train.trainer.Trainer` is the full version (losses,
checkpoints with exact resume, AMP, many GPUs); this one stays as it is, so the earlier
notebooks' numbers do not move.

The poly schedule used by FCN, DeepLab and PSPNet is ``lr = base_lr * (1 - it/max_it) ** 0.9``.
PyTorch's ``PolynomialLR`` implements it, but its defaults (``total_iters=5, power=1.0``)
silently stop decaying after five steps — :func:`poly_lr` sets both.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..core.metrics import ConfusionMatrix
from ..core.validation import check_mask

__all__ = ["poly_lr", "segmentation_loss", "train_one_epoch", "evaluate", "fit", "predict",
           "History"]


def poly_lr(optimizer: torch.optim.Optimizer, total_iters: int,
            power: float = 0.9) -> torch.optim.lr_scheduler.PolynomialLR:
    """Poly learning-rate decay over ``total_iters`` steps (call ``.step()`` every iteration)."""
    if total_iters < 1:
        raise ValueError(f"total_iters must be at least 1, got {total_iters}.")
    return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=total_iters, power=power)


def segmentation_loss(
    outputs: dict[str, torch.Tensor],
    target: torch.Tensor,
    *,
    aux_weight: float = 0.4,
    ignore_index: int = 255,
    pixel_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pixel-wise cross-entropy on ``outputs["out"]`` plus ``aux_weight`` times that on ``"aux"``.

    Pixels labelled ``ignore_index`` contribute nothing. The target is checked first, so a
    mask value 7 with 5 classes is a clear ``ValueError`` rather than a CUDA assert.
    ``pixel_weight`` (N, H, W), e.g. U-Net's weight map (chapter 3), multiplies each pixel's
    loss on ``"out"``: the loss is ``sum(w * ce) / (number of labelled pixels)``.
    """
    logits = outputs["out"]
    check_mask(target, logits.shape[1], ignore_index)
    if pixel_weight is None:
        loss = F.cross_entropy(logits, target, ignore_index=ignore_index)
    else:
        if pixel_weight.shape != target.shape:
            raise ValueError(f"pixel_weight must have the target's shape {tuple(target.shape)}"
                             f", got {tuple(pixel_weight.shape)}.")
        per_pixel = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")
        labelled = (target != ignore_index).sum().clamp(min=1)
        loss = (per_pixel * pixel_weight).sum() / labelled
    if "aux" in outputs and aux_weight:
        loss = loss + aux_weight * F.cross_entropy(outputs["aux"], target,
                                                   ignore_index=ignore_index)
    return loss


def _batches(loader: Iterable, progress: bool, desc: str) -> Iterable:
    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True) if progress else loader


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    *,
    device: torch.device | str = "cpu",
    aux_weight: float = 0.4,
    progress: bool = False,
    desc: str = "train",
) -> float:
    """One pass over ``loader``; the scheduler steps every iteration. Returns the mean loss.

    Batches are ``(images, targets)`` or ``(images, targets, pixel_weights)``; the weights go
    to :func:`segmentation_loss` (U-Net's weight map, e.g. ``TouchingCells(return_weights=True)``).
    """
    model.train()
    total, count = 0.0, 0
    for images, targets, *weights in _batches(loader, progress, desc):
        images, targets = images.to(device), targets.to(device)
        pixel_weight = weights[0].to(device) if weights else None
        loss = segmentation_loss(model(images), targets, aux_weight=aux_weight,
                                 pixel_weight=pixel_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.item() * images.shape[0]
        count += images.shape[0]
    return total / max(count, 1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    num_classes: int,
    *,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict:
    """Confusion-matrix metrics (pixel accuracy, per-class IoU, mIoU, ...) over ``loader``."""
    model.eval()
    cm = ConfusionMatrix(num_classes)
    for images, targets, *_ in _batches(loader, progress, "eval"):
        cm.update(model(images.to(device))["out"], targets.to(device))
    return cm.compute()


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor,
            device: torch.device | str | None = None) -> torch.Tensor:
    """Class labels (N, H, W) for a batch of images, with the model in eval mode."""
    model.eval()
    if device is None:
        device = next(model.parameters()).device
    return model(images.to(device))["out"].argmax(1).cpu()


@dataclass
class History:
    """Per-epoch records of a :func:`fit` or :class:`~segedu.train.Trainer` run; the Trainer
    also keeps the loss of every iteration (``iterations``), the curve exact resume restores."""

    epochs: list[dict] = field(default_factory=list)
    iterations: list[float] = field(default_factory=list)

    @property
    def final(self) -> dict:
        return self.epochs[-1] if self.epochs else {}

    def to_csv(self, path: str | Path) -> Path:
        """One row per epoch; a list (per-class IoU) becomes one column per entry."""
        rows = []
        for record in self.epochs:
            row = {}
            for key, value in record.items():
                if isinstance(value, (list, tuple)):
                    row.update({f"{key}_{i}": v for i, v in enumerate(value)})
                else:
                    row[key] = value
            rows.append(row)
        columns = list(dict.fromkeys(k for row in rows for k in row))
        path = Path(path)
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(rows)
        return path

    def plot(self, path: str | Path | None = None):
        """Loss per iteration and validation mIoU per epoch; saved to ``path`` if given.
        Uses ``matplotlib.figure.Figure`` (no pyplot), so it works in worker processes."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 3.2))
        ax_loss, ax_miou = fig.subplots(1, 2)
        ax_loss.plot(self.iterations, lw=0.8)
        ax_loss.set(xlabel="iteration", ylabel="training loss", title="loss")
        epochs = [r for r in self.epochs if "miou" in r]
        ax_miou.plot([r["epoch"] for r in epochs], [r["miou"] for r in epochs], "o-")
        ax_miou.set(xlabel="epoch", ylabel="val mIoU", title="validation")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
        return fig


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader | None = None,
    *,
    num_classes: int,
    epochs: int = 5,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    optimizer: str = "adam",
    momentum: float = 0.9,
    aux_weight: float = 0.4,
    device: torch.device | str = "cpu",
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> History:
    """Train ``model`` for ``epochs`` with poly LR decay; evaluate after every epoch.

    ``optimizer`` is ``"adam"`` (AdamW — forgiving, used by the CPU profile) or ``"sgd"``
    (momentum, the papers' choice). Returns a :class:`History`; ``log`` gets one line per epoch.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}.")
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}.")
    scheduler = poly_lr(opt, total_iters=epochs * len(train_loader))
    model.to(device)
    history = History()
    bar = tqdm(range(1, epochs + 1), desc="epochs", dynamic_ncols=True) if progress else None
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        loss = train_one_epoch(model, train_loader, opt, scheduler, device=device,
                               aux_weight=aux_weight, progress=progress,
                               desc=f"epoch {epoch}/{epochs}")
        record = {"epoch": epoch, "loss": loss, "seconds": time.perf_counter() - start}
        if val_loader is not None:
            metrics = evaluate(model, val_loader, num_classes, device=device)
            record.update(miou=metrics["miou"], pixel_acc=metrics["pixel_acc"])
        history.epochs.append(record)
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: round(v, 3) for k, v in record.items()
                             if k in ("loss", "miou")})
        if log is not None:
            extra = (f"  val mIoU {record['miou']:.3f}  pixel acc {record['pixel_acc']:.3f}"
                     if "miou" in record else "")
            log(f"epoch {epoch}/{epochs}  loss {loss:.3f}{extra}")
    if bar is not None:
        bar.close()
    return history

"""Chapter 7's measurements: each training trick against its absence, with equal budgets.

Every comparison here trains the same network on the same images for the same number of
iterations with the same optimizer (AdamW, poly decay; the CPU profile's recipe) and changes
one thing; it is repeated over seeds and reported as mean ± sd, next to the **colour-only
baseline**: :class:`PixelClassifier`, a 1x1 convolution that labels each pixel from its colour
alone, trained under the same budget. A trick is worth something only if the network beats that
baseline and the difference is larger than the spread over seeds. The per-pixel baselines
live here too: :class:`PixelClassifier` (colour only) and :class:`WindowedPixelClassifier` (colour
statistics in windows around the pixel, notebook 00's windowed MLP); the general harness that
trains any list of models on a diagnostic task is :mod:`segedu.tools.experiment`.

The four experiments (:data:`EXPERIMENTS`), each on the task built to show its effect:

* ``augmentation``: random scale, crop, flip and colour jitter vs none, on **32** images of
  SyntheticShapes (augmentation matters when images are few);
* ``losses``: cross-entropy vs Dice vs Focal vs their sum on :class:`~segedu.data.SmallObjects`
  (a rare "speck" class, ~1% of pixels): per-class IoU, since mIoU hides what happens to specks;
* ``lr``: poly decay vs a constant learning rate, SyntheticShapes;
* ``aux``: DeepLabV3-MobileNetV3 with its auxiliary head's loss (weight 0.4) vs without (weight
  0; the head is still there, so both have the same parameters), SyntheticShapes.

``benchmarks/training.py`` runs them and stores the results as JSON; notebook 07 loads them.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..core.utils import set_seed
from ..data import (
    IMBALANCE_CLASSES,
    SHAPE_CLASSES,
    SmallObjects,
    SyntheticShapes,
    eval_transforms,
    train_transforms,
)
from ..deeplab import deeplabv3_mobilenet_v3_large
from ..unet import unet
from .trainer import Trainer

__all__ = ["PixelClassifier", "WindowedPixelClassifier", "window_features", "box_mean", "Arm",
           "Experiment", "EXPERIMENTS", "make_experiments", "run_arm", "run_experiment",
           "summarize", "format_table", "mean_sd"]


def box_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over the ``k`` x ``k`` window around each pixel of (N, C, H, W) ``x`` (separable;
    windows are cut at the border, so a border pixel averages only what is inside the image)."""
    x = F.avg_pool2d(x, (1, k), 1, (0, k // 2), count_include_pad=False)
    return F.avg_pool2d(x, (k, 1), 1, (k // 2, 0), count_include_pad=False)


def window_features(images: torch.Tensor, windows: Sequence[int] = ()) -> torch.Tensor:
    """(N, C, H, W) -> (N, C * (1 + 2 * len(windows)), H, W): each pixel's colour, plus for
    every window size ``k`` the mean colour and its standard deviation (texture) in the
    ``k`` x ``k`` window around it. Notebook 00 builds its windowed baseline from these."""
    for k in windows:
        if k < 1 or k % 2 == 0:
            raise ValueError(f"window sizes must be odd and positive (a window centred on the "
                             f"pixel), got {k} in {tuple(windows)}.")
    feats = [images]
    for k in windows:
        mean = box_mean(images, k)
        feats += [mean, (box_mean(images**2, k) - mean**2).clamp_min(0).sqrt()]
    return torch.cat(feats, dim=1)


class WindowedPixelClassifier(nn.Module):
    """The per-pixel baselines: each pixel is labelled from its own colour and, for each window
    size in ``windows``, the mean and spread of the colours in that window around it
    (:func:`window_features`), through a small MLP shared by all pixels (1x1 convolutions:
    ``features -> hidden -> num_classes``; ``hidden=0`` makes it linear). With ``standardize``
    the features go through a BatchNorm without learnt scale first (running mean and variance
    of the training pixels, as notebook 00 standardises with the training set's).

    No learnt filter looks at a neighbour: the classifier knows *what colours* are around a
    pixel, never *where* they are, so it cannot see an outline's shape. A network that does
    better than this on a shape task does so by seeing shapes.
    """

    def __init__(self, num_classes: int, windows: Sequence[int] = (5, 15, 31),
                 hidden: int = 32, in_channels: int = 3, standardize: bool = True) -> None:
        super().__init__()
        self.windows = tuple(int(k) for k in windows)
        window_features(torch.zeros(1, in_channels, 1, 1), self.windows)  # checks the sizes
        features = in_channels * (1 + 2 * len(self.windows))
        self.standardize = (nn.BatchNorm2d(features, affine=False) if standardize
                            else nn.Identity())
        if hidden:
            self.classifier = nn.Sequential(nn.Conv2d(features, hidden, 1), nn.ReLU(inplace=True),
                                            nn.Conv2d(hidden, num_classes, 1))
        else:
            self.classifier = nn.Conv2d(features, num_classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.classifier(self.standardize(window_features(x, self.windows)))}


class PixelClassifier(WindowedPixelClassifier):
    """The colour-only baseline: each pixel is labelled from its own colour (3 numbers) and
    nothing around it. By default a plain 1x1 convolution (chapter 7's tables were made with
    it); ``hidden=32, standardize=True`` is notebook 00's colour-only MLP (3 -> 32 -> C on
    standardised colours), which can carve the colour space into any regions."""

    def __init__(self, num_classes: int, in_channels: int = 3, hidden: int = 0,
                 standardize: bool = False) -> None:
        super().__init__(num_classes, windows=(), hidden=hidden, in_channels=in_channels,
                         standardize=standardize)


@dataclass
class Arm:
    """One configuration of an experiment: how to build the model, the training set, and the
    Trainer options that differ from the experiment's."""

    name: str
    model: Callable[[int], nn.Module]
    train_set: Callable[[], Dataset]
    options: dict = field(default_factory=dict)


@dataclass
class Experiment:
    name: str
    question: str
    classes: tuple[str, ...]
    arms: list[Arm]
    val_set: Callable[[], Dataset]
    epochs: int
    batch_size: int = 8


def _unet(num_classes: int) -> nn.Module:
    return unet(num_classes, width=0.125, batch_norm=True)


def _mobilenet(aux: bool) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        return deeplabv3_mobilenet_v3_large(num_classes, width=0.125, aux=aux)
    return build


def make_experiments(size: int = 48, scale: float = 1.0) -> dict[str, Experiment]:
    """The four experiments at image side ``size``: 120 iterations of batch 8 per run (32 images
    x 30 epochs, or 480 images x 2 epochs); ``scale`` < 1 shrinks images and epochs (the CI
    profile runs them at a fraction to prove they run; no conclusion from that)."""
    n = max(16, int(480 * scale))
    epochs = max(1, round(2 * scale))
    few, few_epochs = max(8, int(32 * scale)), max(1, round(30 * scale))
    val = max(8, int(64 * scale))
    plain = eval_transforms(None)
    augment = train_transforms(size, scale=(0.75, 1.25))

    def shapes(length, transforms):
        return lambda: SyntheticShapes("train", size=size, length=length, transforms=transforms)

    def shapes_val():
        return SyntheticShapes("val", size=size, length=val, transforms=plain)

    def specks(transforms):
        return lambda: SmallObjects("train", size=size, length=n, transforms=transforms)

    def specks_val():
        return SmallObjects("val", size=size, length=val, transforms=plain)

    return {
        "augmentation": Experiment(
            "augmentation", f"Does augmentation help when there are only {few} images?",
            SHAPE_CLASSES,
            [Arm("colour-only", PixelClassifier, shapes(few, plain)),
             Arm("U-Net, no augmentation", _unet, shapes(few, plain)),
             Arm("U-Net, augmented", _unet, shapes(few, augment))],
            shapes_val, few_epochs),
        "losses": Experiment(
            "losses", "Which loss finds the rare class (specks, ~1% of pixels)?",
            IMBALANCE_CLASSES,
            [Arm("colour-only (CE)", PixelClassifier, specks(plain)),
             Arm("U-Net, CE", _unet, specks(plain), {"loss": "ce"}),
             Arm("U-Net, Dice", _unet, specks(plain), {"loss": "dice"}),
             Arm("U-Net, Focal (γ=2)", _unet, specks(plain), {"loss": "focal"}),
             Arm("U-Net, CE+Dice+Focal", _unet, specks(plain), {"loss": "ce+dice+focal"})],
            specks_val, epochs),
        "lr": Experiment(
            "lr", "Poly decay or a constant learning rate?", SHAPE_CLASSES,
            [Arm("colour-only", PixelClassifier, shapes(n, plain)),
             Arm("U-Net, constant LR", _unet, shapes(n, plain), {"power": 0.0}),
             Arm("U-Net, poly LR (0.9)", _unet, shapes(n, plain), {"power": 0.9})],
            shapes_val, epochs),
        "aux": Experiment(
            "aux", "Does the auxiliary loss help DeepLabV3-MobileNetV3?", SHAPE_CLASSES,
            [Arm("colour-only", PixelClassifier, shapes(n, plain)),
             Arm("DeepLabV3-MNv3, no aux loss", _mobilenet(True), shapes(n, plain),
                 {"aux_weight": 0.0}),
             Arm("DeepLabV3-MNv3, aux loss 0.4", _mobilenet(True), shapes(n, plain),
                 {"aux_weight": 0.4})],
            shapes_val, epochs),
    }


#: The experiments' names, in the order the notebook shows them.
EXPERIMENTS = ("augmentation", "losses", "lr", "aux")


def run_arm(experiment: Experiment, arm: Arm, seed: int, *, lr: float = 3e-3) -> dict:
    """Train one arm with one seed under the experiment's budget; per-class IoU and curves."""
    train_set = arm.train_set()
    set_seed(seed)
    model = arm.model(len(experiment.classes))
    options = {"optimizer": "adamw", "lr": lr, "weight_decay": 1e-4, **arm.options}
    trainer = Trainer(model, train_set, experiment.val_set(), num_classes=len(experiment.classes),
                      epochs=experiment.epochs, batch_size=experiment.batch_size, seed=seed,
                      eval_every=0, progress=False, **options)
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    metrics = trainer.evaluate()
    return {"arm": arm.name, "seed": seed, "miou": metrics["miou"], "iou": metrics["iou"],
            "pixel_acc": metrics["pixel_acc"], "losses": trainer.history.iterations,
            "iterations": trainer.step, "seconds": seconds}


def run_experiment(experiment: Experiment, seeds: Sequence[int] = (0, 1, 2),
                   log: Callable[[str], None] | None = print) -> list[dict]:
    runs = []
    for arm in experiment.arms:
        for seed in seeds:
            runs.append(run_arm(experiment, arm, seed))
            if log:
                log(f"{experiment.name:>12}  {arm.name:<30} seed {seed}  "
                    f"mIoU {runs[-1]['miou']:.3f}  ({runs[-1]['seconds']:.1f} s)")
    return runs


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation, skipping nan (sd 0 for one value; nan for none)."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(runs: Sequence[dict]) -> dict[str, dict]:
    """Per arm: mean and sd over seeds of mIoU and of each class's IoU."""
    arms: dict[str, list[dict]] = {}
    for run in runs:
        arms.setdefault(run["arm"], []).append(run)
    out = {}
    for name, group in arms.items():
        num_classes = len(group[0]["iou"])
        out[name] = {"seeds": len(group), "miou": mean_sd([r["miou"] for r in group]),
                     "iou": [mean_sd([r["iou"][c] for r in group]) for c in range(num_classes)]}
    return out


def format_table(runs: Sequence[dict], classes: Sequence[str]) -> str:
    """A text table: one row per arm, mIoU and per-class IoU as mean ± sd (in %)."""
    summary = summarize(runs)
    width = max(len(name) for name in summary)
    head = f"{'':<{width}}  {'mIoU':>11}" + "".join(f"  {c[:11]:>11}" for c in classes)
    lines = [head, "-" * len(head)]
    for name, s in summary.items():
        cells = [s["miou"], *s["iou"]]
        lines.append(f"{name:<{width}}" + "".join(
            f"  {100 * m:5.1f} ±{100 * sd:4.1f}" for m, sd in cells))
    seeds = {s["seeds"] for s in summary.values()}
    lines.append(f"(mean ± sd over {', '.join(map(str, sorted(seeds)))} seeds, IoU in %)")
    return "\n".join(lines)

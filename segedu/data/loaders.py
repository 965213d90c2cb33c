"""The (train, val) loaders every notebook starts from."""

from __future__ import annotations

import colorsys
import tarfile
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torchvision
from PIL import Image as PILImage
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..core.validation import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, check_mask
from .real import DATASET_NAMES, load_dataset
from .synthetic import SyntheticShapes
from .transforms import eval_transforms, train_transforms

__all__ = [
    "make_loaders",
]


def make_loaders(
    dataset_name: str = "synthetic",
    size: int = 64,
    batch_size: int = 16,
    train_length: int | None = None,
    val_length: int | None = None,
    root: str | Path = "data",
    download: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    augment: bool = True,
) -> tuple[DataLoader, DataLoader, tuple[str, ...]]:
    """The (train, val) loaders every notebook starts from, and the class names.

    Images come out normalised, (N, 3, size, size) float32; masks (N, size, size) long.
    The training set is augmented with :func:`train_transforms` (crop = ``size``; scale
    jitter 0.5-2 for real data, 0.75-1.25 for the synthetic set, which varies object scale by
    itself) unless ``augment=False``; the validation set is only resized (real data) and
    normalised.

    A real data set that is unavailable falls back to :class:`SyntheticShapes` (one printed
    line) — the returned ``classes`` tell which one you got. ``train_length`` / ``val_length``
    set the synthetic set's length, or keep the first n images of a real one.

    The train loader shuffles with a ``torch.Generator`` seeded with ``seed`` and drops the
    last incomplete batch (a batch of one breaks BatchNorm after global pooling); the val
    loader keeps the order. The synthetic *content* does not depend on ``seed``. For
    repeatable augmentations as well, call ``segedu.core.utils.set_seed`` first.
    """
    if dataset_name not in DATASET_NAMES:
        raise ValueError(
            f"unknown dataset {dataset_name!r}; valid names are {', '.join(DATASET_NAMES)}."
        )
    real = dataset_name != "synthetic"
    # SyntheticShapes already draws objects at many scales; a milder scale jitter keeps
    # a CPU minute of training for learning shapes rather than coping with 2x zooms.
    scale = (0.5, 2.0) if real else (0.75, 1.25)
    train_tf = train_transforms(size, scale) if augment else eval_transforms(size if real else None)
    train_set = load_dataset(
        dataset_name, "train", root, size, download, transforms=train_tf, length=train_length
    )
    # Keep both splits from the same source: if train fell back, val is synthetic too.
    fell_back = real and isinstance(train_set, SyntheticShapes)
    val_name = "synthetic" if fell_back else dataset_name
    val_set = load_dataset(
        val_name, "val", root, size, download, fallback=False,
        transforms=eval_transforms(size if real and not fell_back else None), length=val_length,
    )  # fmt: skip
    classes = tuple(train_set.classes)
    if real and not fell_back:
        if train_length is not None:
            train_set = Subset(train_set, range(min(train_length, len(train_set))))
        if val_length is not None:
            val_set = Subset(val_set, range(min(val_length, len(val_set))))

    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(
        train_set,
        batch_size=batch_size,
        shuffle=True,
        generator=generator,
        drop_last=len(train_set) >= batch_size,
        num_workers=num_workers,
    )
    val_loader = DataLoader(val_set, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    return train_loader, val_loader, classes

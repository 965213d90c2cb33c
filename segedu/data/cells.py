"""Touching cells: the problem U-Net's loss weight map was made for (chapter 3)."""

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
from .synthetic import SyntheticSet, pixel_grid, upsample_matrix

__all__ = [
    "CELL_CLASSES",
    "TouchingCells",
]


#: The classes of :class:`TouchingCells`, as in the U-Net paper's cell segmentation tasks.
CELL_CLASSES = ("background", "cell")


class TouchingCells(SyntheticSet):
    """Grey "microscopy" images of cells that touch each other, with instance ids.

    The problem U-Net's loss weight map was made for (Ronneberger et al., 2015, Sec. 3):
    cells of one class lie against each other, and a segmentation that labels every cell
    pixel correctly can still merge two cells into one blob. As in the paper's data, the
    labels keep touching cells apart by a thin line of *background* between them, and the
    weight map (chapter 3's :func:`segedu.unet.weight_map`) makes the network pay for those few
    pixels. The data set only knows the instances; pass the weight map as ``weight_map=`` to
    get it with every sample (the data layer does not import a chapter).

    Each sample is deterministic (one random generator per index, seeded with
    ``[seed, split, index]``, like :class:`SyntheticShapes`):

    * 3..``max_cells`` cells with radii from ``size/10`` to ``size/6`` and wobbly, elliptic
      outlines; most are placed against an earlier cell so that they overlap, and a pixel
      claimed by several belongs to the one it is relatively closest to (cells press against
      each other, as packed cells do);
    * **labels**: pixels with an 8-neighbour in *another* cell become background, a gap of
      about 2 pixels between touching cells; cells smaller than 12 pixels are dropped;
    * **image** (one channel, float32 in [0, 1]): a dim, uneven background; cells brighter,
      each with its own brightness and texture and a darker rim; where two cells meet, a dark
      membrane line whose contrast varies from image to image (sometimes faint); blur,
      Gaussian noise, 8-bit quantisation.

    Args:
        split: ``"train"`` or ``"val"``.
        size: height and width in pixels (at least 32).
        length: number of samples; default 512 for train, 128 for val.
        seed: selects a different (but again deterministic) data set.
        transforms: called as ``transforms(image, mask)`` (``(image, mask, weights)`` with
            ``weight_map``; the weights are then a float ``tv_tensors.Mask``).
        max_cells: at most this many cells per image (at least 3).
        weight_map: a function from (H, W) instance ids to an (H, W) float32 loss weight map,
            e.g. :func:`segedu.unet.weight_map` or ``functools.partial(weight_map, w0=8)``;
            when given, every sample also returns its weight map.
        cache: keep generated samples in memory.

    Returns (from ``dataset[i]``):
        ``(image, mask)``: ``tv_tensors.Image`` (1, H, W) float32 and ``tv_tensors.Mask``
        (H, W) long (0 background, 1 cell); with ``weight_map`` also the (H, W) float32
        weight map. :meth:`instances` gives the instance ids (0 background, 1..K cells).
    """

    classes = CELL_CLASSES

    def __init__(
        self,
        split: str = "train",
        size: int = 64,
        length: int | None = None,
        seed: int = 0,
        transforms: Callable | None = None,
        max_cells: int = 8,
        weight_map: Callable[[torch.Tensor], torch.Tensor] | None = None,
        cache: bool = True,
    ) -> None:
        super().__init__(split, size, length, seed, transforms, cache, min_size=32)
        if max_cells < 3:
            raise ValueError(f"max_cells must be at least 3, got {max_cells}.")
        self.max_cells = int(max_cells)
        if weight_map is not None and not callable(weight_map):
            raise ValueError("weight_map must be a function from instance ids to a weight map "
                             f"(e.g. segedu.unet.weight_map), got {type(weight_map).__name__}.")
        self.weight_map = weight_map
        self._weights: dict[int, torch.Tensor] = {}

    def __getitem__(self, index: int) -> tuple:
        image_u8, ids = self._sample(index)
        image = tv_tensors.Image(torch.from_numpy(image_u8.astype(np.float32) / np.float32(255)))
        mask = tv_tensors.Mask(torch.from_numpy((ids > 0).astype(np.int64)))
        if self.weight_map is None:
            return (image, mask) if self.transforms is None else self.transforms(image, mask)
        weights = self.weights(index)
        if self.transforms is not None:
            return self.transforms(image, mask, tv_tensors.Mask(weights))
        return image, mask, weights

    def instances(self, index: int) -> torch.Tensor:
        """(H, W) long instance ids of sample ``index``: 0 background, 1..K the cells."""
        return torch.from_numpy(self._sample(index)[1].astype(np.int64))

    def weights(self, index: int) -> torch.Tensor:
        """(H, W) float32 loss weight map of sample ``index``, computed by ``weight_map``."""
        if self.weight_map is None:
            raise ValueError("this TouchingCells was built without weight_map=; pass one, e.g. "
                             "TouchingCells(..., weight_map=segedu.unet.weight_map).")
        index = self._check_index(index)
        if index not in self._weights:
            w = self.weight_map(self.instances(index))
            if not self.cache:
                return w
            self._weights[index] = w
        return self._weights[index]

    # -- generation ----------------------------------------------------------------------------

    def _sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        index = self._check_index(index)
        if index in self._cache:
            return self._cache[index]
        sample = self._render(self._rng(index))
        if self.cache:
            self._cache[index] = sample
        return sample

    def _layout(self, rng: np.random.Generator) -> list[tuple[float, float, float]]:
        """Centres and radii: most cells are pushed against an earlier one, overlapping."""
        size = self.size
        cells: list[tuple[float, float, float]] = []
        for _ in range(int(rng.integers(3, self.max_cells + 1))):
            radius = float(rng.uniform(size / 10, size / 6))
            for _attempt in range(10):
                if cells and rng.random() < 0.85:
                    cx0, cy0, r0 = cells[int(rng.integers(len(cells)))]
                    angle = rng.uniform(0, 2 * np.pi)
                    dist = (r0 + radius) * rng.uniform(0.7, 0.95)
                    cx, cy = cx0 + dist * np.cos(angle), cy0 + dist * np.sin(angle)
                else:
                    cx, cy = rng.uniform(radius, size - 1 - radius, size=2)
                if radius * 0.5 <= cx <= size - 1 - radius * 0.5 and \
                        radius * 0.5 <= cy <= size - 1 - radius * 0.5:
                    break
            cells.append((float(cx), float(cy), radius))
        return cells

    def _render(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw one sample: the image (1, S, S) uint8 and the instance ids (S, S) uint8."""
        from scipy import ndimage

        size = self.size
        cells = self._layout(rng)
        xs, ys = pixel_grid(size)
        # rho[k] = distance to cell k's centre relative to its (wobbly) radius: < 1 inside
        rho = np.empty((len(cells), size, size), dtype=np.float32)
        for k, (cx, cy, radius) in enumerate(cells):
            theta = np.arctan2(ys - cy, xs - cx)
            a2, a3 = rng.uniform(0, 0.2), rng.uniform(0, 0.08)
            p2, p3 = rng.uniform(0, 2 * np.pi, size=2)
            outline = radius * (1 + a2 * np.cos(2 * (theta - p2)) + a3 * np.cos(3 * (theta - p3)))
            rho[k] = np.hypot(xs - cx, ys - cy) / outline
        order = np.argsort(rho, axis=0)
        nearest = np.take_along_axis(rho, order[:1], 0)[0]
        second = np.take_along_axis(rho, order[1:2], 0)[0]
        ids = np.where(nearest < 1, order[0] + 1, 0).astype(np.int64)

        # Labels: background between touching cells (pixels next to another cell's pixel).
        grown = ndimage.grey_dilation(ids, size=3)
        shrunk = ndimage.grey_erosion(np.where(ids > 0, ids, ids.max() + 1), size=3)
        touching = (ids > 0) & ((grown != ids) | ((shrunk != ids) & (shrunk <= ids.max())))
        labels = np.where(touching, 0, ids)
        sizes = np.bincount(labels.ravel(), minlength=len(cells) + 1)
        keep = np.flatnonzero(sizes >= 12)
        keep = keep[keep > 0]
        relabel = np.zeros(len(cells) + 1, dtype=np.uint8)
        relabel[keep] = np.arange(1, len(keep) + 1)
        labels = relabel[labels]

        # Image: background, bright cells with a dark rim, a membrane where cells meet.
        up = upsample_matrix(size, 4)
        image = rng.uniform(0.12, 0.28) + up @ rng.uniform(-0.05, 0.05, (4, 4)) @ up.T
        coverage = np.clip((1 - nearest) * size / 10 + 0.5, 0, 1)  # soft edge, ~1 pixel
        brightness = rng.uniform(0.5, 0.85, size=len(cells) + 1)[order[0] + 1]
        texture = up @ rng.uniform(-0.06, 0.06, (4, 4)) @ up.T
        rim = 1 - rng.uniform(0.15, 0.4) * np.clip((nearest - 0.75) / 0.25, 0, 1)
        cell_value = (brightness + texture) * rim
        image = image * (1 - coverage) + cell_value * coverage
        membrane = rng.uniform(0.15, 0.6)  # how dark the line between two cells is
        meet = np.exp(-(((second - nearest) * size / 10) ** 2) * 2) * (second < 1.1)
        image = image * (1 - membrane * meet)
        image = ndimage.gaussian_filter(image, sigma=0.7)
        image = image + rng.standard_normal(image.shape) * rng.uniform(0.02, 0.05)
        image_u8 = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)[None]
        return image_u8, labels.astype(np.uint8)

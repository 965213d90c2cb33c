"""The offline synthetic data set, and what every offline set shares (chapter 0).

:class:`SyntheticShapes` is a stand-in for a real segmentation data set that needs no download:
every CPU notebook, the test suite and ``segedu demo`` use it. :class:`SyntheticSet` is the base
of all the offline sets (:mod:`~segedu.data.cells`, :mod:`~segedu.data.context`): a train/val
split, a length, one deterministic random generator per sample, an optional cache.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ..core.validation import IGNORE_INDEX
from .transforms import Transforms

__all__ = [
    "SHAPE_CLASSES",
    "Shape",
    "SyntheticSet",
    "SyntheticShapes",
    "pixel_grid",
    "upsample_matrix",
    "hsv",
    "signed_distance",
    "draw_object",
    "finish_sample",
]


#: The classes of :class:`SyntheticShapes`.
SHAPE_CLASSES = ("background", "circle", "square", "triangle", "ring")


class Shape(NamedTuple):
    """One object drawn into a :class:`SyntheticShapes` sample (see ``SyntheticShapes.layout``)."""

    label: int  # class index into SHAPE_CLASSES (1..4)
    cx: float  # centre, in pixels (x = column, y = row)
    cy: float
    radius: float  # circle, square, triangle: the area of a circle this big; ring: outer radius
    angle: float  # rotation in radians (squares and triangles)
    rgb: tuple[float, float, float]  # base colour in [0, 1]


# Each shape class has a characteristic hue (degrees on the colour wheel), 90 degrees apart.
# A sample's hue is jittered by up to +-hue_jitter degrees (default 45), so neighbouring
# classes meet on the colour wheel; with the saturation, shading and noise a yellowish object
# can be a circle or a square: colour is a strong hint, the shape settles it.
_CLASS_HUES = {1: 20.0, 2: 110.0, 3: 200.0, 4: 290.0}  # circle, square, triangle, ring


@lru_cache(maxsize=8)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates: ``xs[i, j] = j`` (column), ``ys[i, j] = i`` (row)."""
    coords = np.arange(size, dtype=np.float32)
    return np.meshgrid(coords, coords, indexing="xy")


@lru_cache(maxsize=32)
def upsample_matrix(size: int, nodes: int) -> np.ndarray:
    """A (size, nodes) matrix that linearly interpolates ``nodes`` values onto ``size`` pixels."""
    t = np.linspace(0, nodes - 1, size, dtype=np.float32)
    left = np.minimum(t.astype(int), nodes - 2)
    frac = t - left
    matrix = np.zeros((size, nodes), dtype=np.float32)
    matrix[np.arange(size), left] = 1 - frac
    matrix[np.arange(size), left + 1] = frac
    return matrix


def hsv(h_degrees: float, s: float, v: float) -> np.ndarray:
    """An RGB colour (float32, [0, 1]) from a hue in degrees, a saturation and a value."""
    return np.array(colorsys.hsv_to_rgb((h_degrees % 360) / 360, s, v), dtype=np.float32)


def signed_distance(shape: Shape, kind: str, inner: float, size: int) -> np.ndarray:
    """Signed distance (in pixels) from every pixel centre to the shape's outline.

    Negative inside, positive outside. For squares and triangles this is the "max over the
    edges' half-planes" distance: exact inside and along the edges, a little short of the
    truth just outside a corner, which is all the 1-pixel boundary band needs.
    """
    xs, ys = pixel_grid(size)
    dx, dy = xs - shape.cx, ys - shape.cy
    if kind in ("circle", "ring"):
        dist = np.sqrt(dx * dx + dy * dy)
        outer = dist - shape.radius
        return outer if kind == "circle" else np.maximum(outer, inner - dist)
    cos, sin = np.cos(shape.angle), np.sin(shape.angle)
    if kind == "square":
        half_side = shape.radius * np.sqrt(np.pi) / 2  # same area as the circle
        u, v = dx * cos + dy * sin, -dx * sin + dy * cos
        return np.maximum(np.abs(u), np.abs(v)) - half_side
    # Equilateral triangle with the circle's area: circumradius R, inradius R / 2.
    circumradius = shape.radius * np.sqrt(4 * np.pi / (3 * np.sqrt(3)))
    dist = None
    for k in range(3):  # the three outward edge normals
        a = shape.angle + np.pi / 3 + k * 2 * np.pi / 3
        edge = dx * np.cos(a) + dy * np.sin(a)
        dist = edge if dist is None else np.maximum(dist, edge)
    return dist - circumradius / 2


def draw_object(image: np.ndarray, label: np.ndarray, boundary: np.ndarray, shape: Shape,
                dist: np.ndarray, paint: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paint one object over ``image`` (the painter's order) and mark it in ``label`` and
    ``boundary`` (both updated in place); returns the new image.

    ``dist`` is the object's :func:`signed_distance`; ``paint`` its colour, (3, 1, 1) or a
    (3, S, S) texture, given a random shading gradient. Anti-aliasing: a pixel whose centre
    lies within half a pixel of the outline is a mix of the object and what is behind it; the
    label follows the pixel centre, and the mixed pixels are the boundary band.
    """
    xs, ys = pixel_grid(label.shape[0])
    alpha = np.clip(0.5 - dist, 0.0, 1.0)
    gx, gy = rng.normal(size=2) * (rng.uniform(0.05, 0.15) / shape.radius)
    shading = 1 + gx * (xs - shape.cx) + gy * (ys - shape.cy)
    image = image * (1 - alpha) + paint * shading * alpha
    label[dist < 0] = shape.label  # the pixel centre is inside
    boundary[dist <= -0.5] = False  # this object hides older outlines
    boundary[np.abs(dist) < 0.5] = True  # ... and has its own mixed pixels
    return image


def finish_sample(image: np.ndarray, label: np.ndarray, boundary: np.ndarray,
                  rng: np.random.Generator, ignore_boundary: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mild Gaussian noise, the boundary band labelled 255 if asked, 8-bit quantisation."""
    image = image + rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(0.01, 0.03)
    if ignore_boundary:
        label[boundary] = IGNORE_INDEX
    return (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8), label


class SyntheticSet(Dataset):
    """What the offline data sets share: a train/val split, a length, and one deterministic
    random generator per sample (seeded with ``[seed, split, index]``), with an optional
    cache of the generated samples."""

    classes: tuple[str, ...] = ()
    _SPLITS = {"train": 0, "val": 1}
    _DEFAULT_LENGTH = {"train": 512, "val": 128}

    def __init__(self, split: str, size: int, length: int | None, seed: int,
                 transforms: Callable | None, cache: bool, *, min_size: int) -> None:
        if split not in self._SPLITS:
            raise ValueError(f"split must be one of {tuple(self._SPLITS)}, got {split!r}.")
        if int(size) < min_size:
            raise ValueError(f"size must be at least {min_size} pixels, got {size}.")
        if length is not None and length < 0:
            raise ValueError(f"length must be >= 0, got {length}.")
        self.split = split
        self.size = int(size)
        self.length = self._DEFAULT_LENGTH[split] if length is None else int(length)
        self.seed = int(seed)
        self.transforms = transforms
        self.cache = cache
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={self.split!r}, size={self.size}, "
                f"length={self.length}, seed={self.seed})")

    def _check_index(self, index: int) -> int:
        index = int(index)
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples.")
        return index

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """Sample ``index`` as ``(image, mask)``, rendered by the subclass's ``_render(index)``
        (uint8 image, uint8 labels) and cached."""
        index = self._check_index(index)
        return self._sample(index, lambda: self._render(index))

    def _sample(self, key, render) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """``render()``'s (uint8 image, uint8 labels), cached under ``key``, as tv_tensors after
        the joint ``transforms`` (a set with another layout, such as ContextShapes' two scenes
        per index, calls this with its own key)."""
        if key in self._cache:
            image_u8, mask_u8 = self._cache[key]
        else:
            image_u8, mask_u8 = render()
            if self.cache:
                self._cache[key] = (image_u8, mask_u8)
        # Convert in NumPy: torch would spin up its thread pool for this tiny op.
        image = tv_tensors.Image(torch.from_numpy(image_u8.astype(np.float32) / np.float32(255)))
        mask = tv_tensors.Mask(torch.from_numpy(mask_u8).long())
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        return image, mask

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self._SPLITS[self.split], index])


class SyntheticShapes(SyntheticSet):
    """Coloured circles, squares, triangles and rings on textured backgrounds.

    A stand-in for a real segmentation data set that needs no download, is generated in well
    under a millisecond per 64x64 sample, and is *deterministic*: sample ``i`` of a split is
    always the same image, whatever the access order, the number of DataLoader workers or
    which other samples were read (each sample has its own random generator, seeded with
    ``[seed, split, i]``). The train and val splits are disjoint random streams.

    What makes it a (small) segmentation problem rather than a colour lookup:

    * **background**: a smooth, low-frequency colour field plus stripes of random orientation
      and period (sometimes cross-hatched), never a flat colour;
    * **objects**: 1..``max_shapes`` per image, radii uniform from ``size/16`` to ``size/3``,
      rotated, overlapping (later shapes are drawn on top and the mask follows the painter's
      order), with a shading gradient;
    * **colour**: each class has a characteristic hue, jittered by up to ``hue_jitter``
      degrees. At the default 45 neighbouring classes only meet, so colour alone separates
      most object pixels (chapter 0 measures a per-pixel colour classifier at ~0.75 mIoU);
      shape, texture and context are what a network adds, at boundaries, holes and
      borderline hues. Raise ``hue_jitter`` for a set where shape matters more. A ring is a
      circle with a hole where the background shows through (labelled background);
    * **boundaries**: edges are anti-aliased; with ``ignore_boundary=True`` the 1-pixel band of
      mixed pixels around each visible outline is labelled 255 (ignore), as in PASCAL VOC;
    * mild Gaussian noise, and the image is quantised to 8 bits like a real photo.

    Args:
        split: ``"train"`` or ``"val"``.
        size: height and width in pixels (at least 16).
        length: number of samples; default 512 for train, 128 for val.
        seed: selects a different (but again deterministic) data set.
        transforms: called as ``transforms(image, mask)``, e.g. :func:`train_transforms`.
        max_shapes: at most this many objects per image (at least 1).
        ignore_boundary: label the 1-pixel band around each object 255.
        hue_jitter: how far (degrees) an object's hue may stray from its class hue. Class hues
            are 90 degrees apart: at 45 neighbouring classes meet, above 45 they overlap and
            the task gets harder (55: a small CNN needs about twice as many epochs).
        cache: keep generated samples (8-bit) in memory; they are deterministic, so an epoch
            after the first costs only the transforms.

    Returns (from ``dataset[i]``):
        ``(image, mask)``: ``tv_tensors.Image`` (3, H, W) float32 in [0, 1] and
        ``tv_tensors.Mask`` (H, W) long, after ``transforms`` if given.
    """

    classes = SHAPE_CLASSES
    _KINDS = SHAPE_CLASSES  # kind name of each label

    def __init__(
        self,
        split: str = "train",
        size: int = 64,
        length: int | None = None,
        seed: int = 0,
        transforms: Transforms | None = None,
        max_shapes: int = 4,
        ignore_boundary: bool = True,
        hue_jitter: float = 45.0,
        cache: bool = True,
    ) -> None:
        super().__init__(split, size, length, seed, transforms, cache, min_size=16)
        if max_shapes < 1:
            raise ValueError(f"max_shapes must be at least 1, got {max_shapes}.")
        self.max_shapes = int(max_shapes)
        self.ignore_boundary = ignore_boundary
        self.hue_jitter = float(hue_jitter)

    def layout(self, index: int) -> list[Shape]:
        """The objects drawn into sample ``index``, bottom to top (the painter's order)."""
        return self._sample_layout(self._rng(self._check_index(index)))

    # -- generation ----------------------------------------------------------------------------

    def _sample_layout(self, rng: np.random.Generator) -> list[Shape]:
        size = self.size
        r_min, r_max = max(size / 16, 2.0), size / 3
        shapes = []
        for _ in range(rng.integers(1, self.max_shapes + 1)):
            label = int(rng.integers(1, len(self.classes)))
            radius = float(rng.uniform(r_min, r_max))
            if self._KINDS[label] == "ring":  # the hole costs ~1/4 of the area; and keep
                radius = max(1.15 * radius, 2 * r_min)  # room for a visible hole and band
            margin = 0.85 * radius  # a little of an object may leave the image
            cx, cy = rng.uniform(margin, size - 1 - margin, size=2)
            angle = float(rng.uniform(0, 2 * np.pi))
            hue = _CLASS_HUES[label] + rng.uniform(-self.hue_jitter, self.hue_jitter)
            rgb = hsv(hue, rng.uniform(0.45, 0.95), rng.uniform(0.55, 1.0))
            shapes.append(Shape(label, float(cx), float(cy), radius, angle, tuple(rgb.tolist())))
        return shapes

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """A (3, S, S) textured background: smooth colour field + stripes."""
        size = self.size
        base = hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.55), rng.uniform(0.3, 0.85))
        nodes = int(rng.integers(3, 6))  # 2..4 "blobs" across the image
        grid = rng.uniform(-0.18, 0.18, size=(3, nodes, nodes)).astype(np.float32)
        up = upsample_matrix(size, nodes)
        image = base[:, None, None] + up @ grid @ up.T  # (3, S, S)
        xs, ys = pixel_grid(size)
        for _ in range(1 + int(rng.random() < 0.4)):  # stripes, sometimes cross-hatched
            theta = rng.uniform(0, np.pi)
            period = max(2.5, size * rng.uniform(1 / 20, 1 / 8))
            phase = rng.uniform(0, 2 * np.pi)
            wave = np.sin((xs * np.cos(theta) + ys * np.sin(theta)) * (2 * np.pi / period) + phase)
            image = image + rng.uniform(0.03, 0.10) * wave
        return image

    def _render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw sample ``index``: returns the image (3, S, S) uint8 and the mask (S, S) uint8."""
        rng = self._rng(index)
        size = self.size
        shapes = self._sample_layout(rng)  # drawn first: layout() replays the same draws
        image = self._background(rng)
        label = np.zeros((size, size), dtype=np.uint8)
        boundary = np.zeros((size, size), dtype=bool)
        for shape in shapes:
            kind = self._KINDS[shape.label]
            inner = shape.radius * rng.uniform(0.4, 0.6) if kind == "ring" else 0.0
            dist = signed_distance(shape, kind, inner, size)
            paint = np.asarray(shape.rgb, dtype=np.float32)[:, None, None]
            image = draw_object(image, label, boundary, shape, dist, paint, rng)
        return finish_sample(image, label, boundary, rng, self.ignore_boundary)

"""Datasets and joint image + mask transforms (chapter 0).

Everything a chapter needs to feed a segmentation network:

1. **Constants**: ImageNet normalisation, the ignore label 255, class names.
2. **SyntheticShapes**: an offline, deterministic data set of coloured shapes on textured
   backgrounds. Every CPU notebook, the test suite and ``segedu demo`` use it, so nothing
   needs a download.
3. **Real data sets** through torchvision (Oxford-IIIT Pet, PASCAL VOC 2012), converted to
   class-index masks, with a clear error when the files are not there and a fallback to the
   synthetic set (:func:`load_dataset`).
4. **Joint transforms** built from ``torchvision.transforms.v2``: the image and its mask are
   transformed *together* (same crop, same flip), the mask with nearest-neighbour
   interpolation and padded with the ignore label.
5. **Loaders**: :func:`make_loaders`, the standard (train, val) pair used by the notebooks.
6. **TouchingCells**: an offline, microscopy-like set of cells that touch, with instance ids and
   U-Net's loss weight map (chapter 3).
7. **ContextShapes**: the same object is a boat on water and a car on a road; only global
   context tells them apart (chapter 4).

Every data set here returns ``(image, mask)`` where ``image`` is a
:class:`torchvision.tv_tensors.Image` of shape (3, H, W), float32 in [0, 1], and ``mask`` is a
:class:`torchvision.tv_tensors.Mask` of shape (H, W), ``torch.long`` class indices in
``[0, num_classes)`` or 255 for "ignore this pixel" (object boundaries, unlabelled regions).
"""

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

from segedu.validation import check_mask

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IGNORE_INDEX",
    "VOC_CLASSES",
    "PET_CLASSES",
    "SHAPE_CLASSES",
    "DATASET_NAMES",
    "Shape",
    "SyntheticShapes",
    "DatasetUnavailableError",
    "OxfordPet",
    "VOCSegmentation",
    "mask_from_palette",
    "load_dataset",
    "train_transforms",
    "eval_transforms",
    "make_loaders",
    "CELL_CLASSES",
    "TouchingCells",
    "CONTEXT_CLASSES",
    "CONTEXT_SCENES",
    "ContextShapes",
]

Transforms = Callable[[tv_tensors.Image, tv_tensors.Mask], tuple]

# ----------------------------------------------------------------------------------------------
# 1. Constants
# ----------------------------------------------------------------------------------------------

#: Per-channel mean and std of ImageNet. Pretrained backbones expect inputs normalised with
#: these, so we use them everywhere (also for from-scratch models: one convention, no surprises).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Mask value meaning "no label here": losses and metrics skip these pixels. PASCAL VOC marks
#: object boundaries and ambiguous regions with 255, and so do we.
IGNORE_INDEX = 255

#: PASCAL VOC 2012: background plus 20 object classes, in the order of the mask indices.
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

#: Oxford-IIIT Pet used as a two-class problem: the pet's outline against everything else.
PET_CLASSES = ("background", "pet")

#: The classes of :class:`SyntheticShapes`.
SHAPE_CLASSES = ("background", "circle", "square", "triangle", "ring")

#: Names accepted by :func:`load_dataset` and :func:`make_loaders`.
DATASET_NAMES = ("synthetic", "oxford_pet", "voc")


# ----------------------------------------------------------------------------------------------
# 2. The synthetic data set
# ----------------------------------------------------------------------------------------------


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
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates: ``xs[i, j] = j`` (column), ``ys[i, j] = i`` (row)."""
    coords = np.arange(size, dtype=np.float32)
    return np.meshgrid(coords, coords, indexing="xy")


@lru_cache(maxsize=32)
def _upsample_matrix(size: int, nodes: int) -> np.ndarray:
    """A (size, nodes) matrix that linearly interpolates ``nodes`` values onto ``size`` pixels."""
    t = np.linspace(0, nodes - 1, size, dtype=np.float32)
    left = np.minimum(t.astype(int), nodes - 2)
    frac = t - left
    matrix = np.zeros((size, nodes), dtype=np.float32)
    matrix[np.arange(size), left] = 1 - frac
    matrix[np.arange(size), left + 1] = frac
    return matrix


def _hsv(h_degrees: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb((h_degrees % 360) / 360, s, v), dtype=np.float32)


def _signed_distance(shape: Shape, kind: str, inner: float, size: int) -> np.ndarray:
    """Signed distance (in pixels) from every pixel centre to the shape's outline.

    Negative inside, positive outside. For squares and triangles this is the "max over the
    edges' half-planes" distance: exact inside and along the edges, a little short of the
    truth just outside a corner, which is all the 1-pixel boundary band needs.
    """
    xs, ys = _pixel_grid(size)
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


class _SyntheticSet(Dataset):
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

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self._SPLITS[self.split], index])


class SyntheticShapes(_SyntheticSet):
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

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        index = self._check_index(index)
        if index in self._cache:
            image_u8, mask_u8 = self._cache[index]
        else:
            image_u8, mask_u8 = self._render(index)
            if self.cache:
                self._cache[index] = (image_u8, mask_u8)
        # Convert in NumPy: torch would spin up its thread pool for this tiny op.
        image = tv_tensors.Image(torch.from_numpy(image_u8.astype(np.float32) / np.float32(255)))
        mask = tv_tensors.Mask(torch.from_numpy(mask_u8).long())
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        return image, mask

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
            rgb = _hsv(hue, rng.uniform(0.45, 0.95), rng.uniform(0.55, 1.0))
            shapes.append(Shape(label, float(cx), float(cy), radius, angle, tuple(rgb.tolist())))
        return shapes

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """A (3, S, S) textured background: smooth colour field + stripes."""
        size = self.size
        base = _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.55), rng.uniform(0.3, 0.85))
        nodes = int(rng.integers(3, 6))  # 2..4 "blobs" across the image
        grid = rng.uniform(-0.18, 0.18, size=(3, nodes, nodes)).astype(np.float32)
        up = _upsample_matrix(size, nodes)
        image = base[:, None, None] + up @ grid @ up.T  # (3, S, S)
        xs, ys = _pixel_grid(size)
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
        xs, ys = _pixel_grid(size)
        for shape in shapes:
            kind = self._KINDS[shape.label]
            inner = shape.radius * rng.uniform(0.4, 0.6) if kind == "ring" else 0.0
            dist = _signed_distance(shape, kind, inner, size)
            # Anti-aliasing: a pixel whose centre lies within half a pixel of the outline is
            # a mix of object and whatever is behind it.
            alpha = np.clip(0.5 - dist, 0.0, 1.0)
            gx, gy = rng.normal(size=2) * (rng.uniform(0.05, 0.15) / shape.radius)
            shading = 1 + gx * (xs - shape.cx) + gy * (ys - shape.cy)
            colour = np.asarray(shape.rgb, dtype=np.float32)[:, None, None] * shading
            image = image * (1 - alpha) + colour * alpha
            label[dist < 0] = shape.label  # the pixel centre is inside
            boundary[dist <= -0.5] = False  # this object hides older outlines
            boundary[np.abs(dist) < 0.5] = True  # ... and has its own mixed pixels
        image = image + rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(0.01, 0.03)
        if self.ignore_boundary:
            label[boundary] = IGNORE_INDEX
        image_u8 = (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
        return image_u8, label


# ----------------------------------------------------------------------------------------------
# 3. Real data sets (torchvision), converted to class-index masks
# ----------------------------------------------------------------------------------------------


class DatasetUnavailableError(RuntimeError):
    """A real data set is not on disk and could not be downloaded.

    ``reason`` holds a one-line summary; ``str(error)`` the full explanation and what to do.
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message.splitlines()[0]


# What torchvision raises when files are missing or a download fails: "Dataset not found"
# (RuntimeError), a missing split file (FileNotFoundError), no network (URLError, an OSError),
# a truncated archive (tarfile.TarError, EOFError).
_MISSING_OR_DOWNLOAD_ERRORS = (RuntimeError, OSError, tarfile.TarError, EOFError)


def _unavailable(name: str, folder: Path, download: bool, error: Exception, size: str):
    what = "could not be downloaded" if download else "was not found (download=False)"
    reason = f"{name} {what} in {folder}"
    message = (
        f"{reason}.\n"
        f"  torchvision said: {type(error).__name__}: {error}\n"
        "  What to do:\n"
        f"  - with internet access (e.g. on Colab), pass download=True ({size}), or\n"
        f"  - put the extracted files in {folder}, or\n"
        "  - use the offline synthetic set: load_dataset('synthetic', split) / SyntheticShapes()."
    )
    return DatasetUnavailableError(message, reason=reason)


def _to_image(pil_image: PILImage.Image) -> tv_tensors.Image:
    """PIL RGB image -> tv_tensors.Image (3, H, W) float32 in [0, 1], like SyntheticShapes."""
    return tv_tensors.Image(v2.functional.pil_to_tensor(pil_image).float().div_(255))


class _TorchvisionSegmentation(Dataset):
    """What the real data sets share: a wrapped torchvision data set, a clear error when its
    files are missing, ``num_classes``, ``len`` and the joint transforms."""

    classes: tuple[str, ...] = ()

    def _open(self, make: Callable[[], Dataset], name: str, folder: Path, download: bool,
              size: str) -> None:
        try:
            self._dataset = make()
        except _MISSING_OR_DOWNLOAD_ERRORS as error:
            raise _unavailable(name, folder, download, error, size) from error

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self._dataset)

    def _finish(self, image: tv_tensors.Image, mask: tv_tensors.Mask) -> tuple:
        return (image, mask) if self.transforms is None else self.transforms(image, mask)


class OxfordPet(_TorchvisionSegmentation):
    """Oxford-IIIT Pet as binary segmentation: pet vs. background (Parkhi et al., 2012).

    Wraps ``torchvision.datasets.OxfordIIITPet(target_types="segmentation")``, whose target is
    a *trimap*: 1 = pet, 2 = background, 3 = border / not classified. We map it to class
    indices: 1 -> 1 (pet), 2 -> 0 (background), 3 -> 255 (ignore), so ``classes = PET_CLASSES``.

    Args:
        root: folder that holds (or will hold) ``oxford-iiit-pet/``.
        split: ``"trainval"`` (3680 images) or ``"test"`` (3669 images).
        download: fetch the ~800 MB archives if they are not there.
        transforms: called as ``transforms(image, mask)``.

    Raises:
        DatasetUnavailableError: the files are missing and could not be downloaded.
    """

    classes = PET_CLASSES
    # trimap value -> class index; every other value is an error
    _TRIMAP_TO_CLASS = {1: 1, 2: 0, 3: IGNORE_INDEX}

    def __init__(
        self,
        root: str | Path = "data",
        split: str = "trainval",
        download: bool = False,
        transforms: Transforms | None = None,
    ) -> None:
        if split not in ("trainval", "test"):
            raise ValueError(f"Oxford-IIIT Pet split must be 'trainval' or 'test', got {split!r}.")
        self.root, self.split, self.transforms = Path(root), split, transforms
        self._open(
            lambda: torchvision.datasets.OxfordIIITPet(
                str(root), split=split, target_types="segmentation", download=download),
            "Oxford-IIIT Pet", self.root / "oxford-iiit-pet", download, "~800 MB")
        self._lut = np.full(256, -1, dtype=np.int64)
        for value, index in self._TRIMAP_TO_CLASS.items():
            self._lut[value] = index

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        pil_image, trimap = self._dataset[index]
        values = self._lut[np.asarray(trimap, dtype=np.uint8)]
        if (values < 0).any():
            bad = sorted(set(np.asarray(trimap)[values < 0].tolist()))[:8]
            raise ValueError(
                f"trimap of sample {index} has values {bad}; expected only 1 (pet), "
                "2 (background), 3 (border). Is this really an Oxford-IIIT Pet trimap?"
            )
        return self._finish(_to_image(pil_image), tv_tensors.Mask(torch.from_numpy(values)))


class VOCSegmentation(_TorchvisionSegmentation):
    """PASCAL VOC segmentation (Everingham et al., 2010): 20 object classes + background.

    Wraps ``torchvision.datasets.VOCSegmentation``. The masks are palette ('P' mode) PNGs:
    the pixel values already *are* the class indices (0..20) and 255 marks the boundary band
    and difficult regions; the palette only decides how they look in an image viewer. So we
    read the indices directly (never ``.convert("RGB")`` a mask!).

    Args:
        root: folder that holds (or will hold) ``VOCdevkit/VOC2012/``.
        image_set: ``"train"`` (1464 images), ``"val"`` (1449) or ``"trainval"``.
        year: ``"2012"`` (the segmentation benchmark); torchvision also knows 2007-2011.
        download: fetch the ~2 GB archive if it is not there.
        transforms: called as ``transforms(image, mask)``.

    Raises:
        DatasetUnavailableError: the files are missing and could not be downloaded.
    """

    classes = VOC_CLASSES

    def __init__(
        self,
        root: str | Path = "data",
        image_set: str = "train",
        year: str = "2012",
        download: bool = False,
        transforms: Transforms | None = None,
    ) -> None:
        if image_set not in ("train", "val", "trainval"):
            raise ValueError(
                f"VOC image_set must be 'train', 'val' or 'trainval', got {image_set!r}."
            )
        self.root, self.image_set, self.transforms = Path(root), image_set, transforms
        self._open(
            lambda: torchvision.datasets.VOCSegmentation(
                str(root), year=year, image_set=image_set, download=download),
            f"PASCAL VOC {year}", self.root / "VOCdevkit" / f"VOC{year}", download, "~2 GB")

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        pil_image, pil_mask = self._dataset[index]
        if pil_mask.mode not in ("P", "L"):
            raise ValueError(
                f"VOC mask {index} has PIL mode {pil_mask.mode!r}; expected 'P' (palette "
                "indices). An RGB mask must be converted first: see mask_from_palette()."
            )
        mask = tv_tensors.Mask(torch.from_numpy(np.asarray(pil_mask, dtype=np.int64).copy()))
        check_mask(mask, self.num_classes, IGNORE_INDEX, name=f"VOC mask {index}")
        return self._finish(_to_image(pil_image), mask)


def mask_from_palette(
    rgb: np.ndarray,
    palette: np.ndarray | Sequence[Sequence[int]],
    ignore_color: tuple[int, int, int] | None = (224, 224, 192),
) -> np.ndarray:
    """Turn a mask saved as colours back into class indices.

    A common mistake is to save (or load with ``.convert("RGB")``) a segmentation mask as an
    RGB picture: the network then needs indices, not colours. Pixel colour ``palette[k]``
    becomes class ``k``.

    Args:
        rgb: (H, W, 3) uint8 array (a PIL RGB image works too).
        palette: (K, 3) colours, row k = colour of class k, e.g. ``segedu.viz.VOC_PALETTE``.
            If a colour appears twice, the first row wins.
        ignore_color: a colour that means "ignore" and becomes 255 (VOC draws its boundary
            band in (224, 224, 192)); ``None`` to treat it like any other colour.

    Returns:
        (H, W) int64 class indices.

    Raises:
        ValueError: wrong shape, or colours that are neither in the palette nor
            ``ignore_color`` (listed with their pixel counts).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb must have shape (H, W, 3), got {rgb.shape}.")
    if rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8 (0..255 colours), got dtype {rgb.dtype}.")
    palette = np.asarray(palette)
    if palette.ndim != 2 or palette.shape[1] != 3:
        raise ValueError(f"palette must have shape (K, 3), got {palette.shape}.")

    def encode(colours: np.ndarray) -> np.ndarray:  # (..., 3) -> one int per colour
        colours = colours.astype(np.int64)
        return (colours[..., 0] << 16) | (colours[..., 1] << 8) | colours[..., 2]

    code_to_class: dict[int, int] = {}
    if ignore_color is not None:
        code_to_class[int(encode(np.asarray(ignore_color)))] = IGNORE_INDEX
    for k, code in enumerate(encode(palette).tolist()):
        code_to_class.setdefault(code, k)
    codes, inverse = np.unique(encode(rgb), return_inverse=True)
    unknown = [c for c in codes.tolist() if c not in code_to_class]
    if unknown:
        pixels = np.bincount(inverse.ravel())
        counts = {c: int(n) for c, n in zip(codes.tolist(), pixels, strict=True)}
        shown = ", ".join(
            f"({c >> 16}, {(c >> 8) & 255}, {c & 255}): {counts[c]} px" for c in unknown[:8]
        )
        more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
        raise ValueError(
            f"{len(unknown)} colour(s) in the mask are not in the {len(palette)}-colour palette: "
            f"{shown}{more}. Was the mask resized with bilinear interpolation (it blends "
            "colours; use nearest), saved as JPEG, or is this the wrong palette?"
        )
    lookup = np.array([code_to_class[c] for c in codes.tolist()], dtype=np.int64)
    return lookup[inverse].reshape(rgb.shape[:2])


def _split_for(name: str, split: str) -> str:
    """Map the generic split names 'train' / 'val' onto each data set's own names."""
    native = {
        "synthetic": {"train": "train", "val": "val", "trainval": "train", "test": "val"},
        "oxford_pet": {"train": "trainval", "val": "test", "trainval": "trainval", "test": "test"},
        "voc": {"train": "train", "val": "val", "trainval": "trainval"},
    }[name]
    if split not in native:
        raise ValueError(f"split for {name!r} must be one of {tuple(native)}, got {split!r}.")
    return native[split]


def load_dataset(
    name: str,
    split: str = "train",
    root: str | Path = "data",
    size: int = 64,
    download: bool = False,
    fallback: bool = True,
    transforms: Transforms | None = None,
    length: int | None = None,
) -> Dataset:
    """Load a data set by name, falling back to :class:`SyntheticShapes` if it is unavailable.

    Args:
        name: ``"synthetic"``, ``"oxford_pet"`` or ``"voc"``.
        split: ``"train"`` or ``"val"`` work for all three (Oxford-IIIT Pet: trainval / test);
            each data set's own split names work too.
        root: where real data sets live (or are downloaded to).
        size: image size of the synthetic set (also when falling back); real images keep their
            own size until ``transforms`` resize them.
        download: try to download a real data set that is not on disk.
        fallback: if the real data set is unavailable, print one line saying so and return
            the synthetic set of the same split; ``False`` raises instead.
        transforms: called as ``transforms(image, mask)``.
        length: number of synthetic samples (default: 512 train, 128 val); real sets ignore it.

    Raises:
        ValueError: unknown ``name`` or ``split``.
        DatasetUnavailableError: the real data set is unavailable and ``fallback=False``.
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; valid names are {', '.join(DATASET_NAMES)}.")
    native = _split_for(name, split)
    try:
        if name == "oxford_pet":
            return OxfordPet(root, native, download=download, transforms=transforms)
        if name == "voc":
            return VOCSegmentation(root, native, download=download, transforms=transforms)
    except DatasetUnavailableError as error:
        if not fallback:
            raise
        synthetic_split = _split_for("synthetic", split)
        print(
            f"[segedu] {error.reason}; falling back to the offline SyntheticShapes "
            f"{synthetic_split!r} split ({size}x{size})."
        )
        return SyntheticShapes(synthetic_split, size=size, length=length, transforms=transforms)
    return SyntheticShapes(native, size=size, length=length, transforms=transforms)


# ----------------------------------------------------------------------------------------------
# 4. Joint image + mask transforms (torchvision.transforms.v2)
# ----------------------------------------------------------------------------------------------
# v2 transforms take the image and the mask in one call and apply the *same* random parameters
# to both. They dispatch on the tv_tensor type: geometric ops resize a Mask with nearest
# neighbour (no blended class indices), while photometric ops (ColorJitter, Normalize) and
# ToDtype(float32) touch only the Image. Padding uses a per-type fill: 0 for the image and the
# ignore label for the mask, so padded pixels never count in the loss.

_PAD_FILL = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}


def train_transforms(
    crop_size: int,
    scale: tuple[float, float] = (0.5, 2.0),
    hflip: float = 0.5,
    color_jitter: float | None = 0.2,
    normalize: bool = True,
) -> v2.Compose:
    """The standard segmentation training augmentation (as in FCN / DeepLab / PSPNet).

    1. random scale: ``v2.ScaleJitter((crop, crop), scale)`` resizes image and mask together
       by a random factor so that at factor 1 the image just fits the crop window. Relative to
       the crop, not to absolute pixels, so the same call works for 64-pixel synthetic images
       and 500-pixel VOC photos (``v2.RandomResize`` would need an absolute size per data set);
    2. random crop of ``crop_size``, padding first where the scaled image is smaller
       (image with 0, mask with 255 = ignore);
    3. horizontal flip with probability ``hflip``;
    4. to float32 in [0, 1]; colour jitter of brightness, contrast and saturation (image only;
       no hue jitter, since hue carries class information: sky is blue, in SyntheticShapes a
       circle is reddish);
    5. ``Normalize(IMAGENET_MEAN, IMAGENET_STD)`` if ``normalize``.

    Returns a ``v2.Compose`` to be called as ``image, mask = t(image, mask)``; the output image
    is (3, crop, crop) float32, the mask (crop, crop) long with 255 preserved.
    """
    crop_size = int(crop_size)
    steps: list = [
        v2.ScaleJitter((crop_size, crop_size), scale_range=tuple(scale)),
        v2.RandomCrop(crop_size, pad_if_needed=True, fill=_PAD_FILL),
    ]
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(hflip))
    steps.append(v2.ToDtype(torch.float32, scale=True))  # images only; masks stay long
    if color_jitter:
        steps.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter))
    if normalize:
        steps.append(v2.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return v2.Compose(steps)


def eval_transforms(size: int | None = None, normalize: bool = True) -> v2.Compose:
    """Deterministic evaluation transforms: optional square resize, to float, normalise.

    With ``size`` the image (bilinear) and the mask (nearest) are resized to ``size x size``,
    which lets real photos of different shapes share a batch. That distorts the aspect ratio
    and scores the mask at the resized resolution — fine for a course; benchmark numbers are
    computed on the original masks.
    """
    steps: list = []
    if size is not None:
        steps.append(v2.Resize((int(size), int(size))))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if normalize:
        steps.append(v2.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return v2.Compose(steps)


# ----------------------------------------------------------------------------------------------
# 5. Loaders
# ----------------------------------------------------------------------------------------------


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
    repeatable augmentations as well, call ``segedu.utils.set_seed`` first.
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


# ----------------------------------------------------------------------------------------------
# 6. Touching cells (chapter 3, U-Net)
# ----------------------------------------------------------------------------------------------

#: The classes of :class:`TouchingCells`, as in the U-Net paper's cell segmentation tasks.
CELL_CLASSES = ("background", "cell")


class TouchingCells(_SyntheticSet):
    """Grey "microscopy" images of cells that touch each other, with instance ids.

    The problem U-Net's loss weight map was made for (Ronneberger et al., 2015, Sec. 3):
    cells of one class lie against each other, and a segmentation that labels every cell
    pixel correctly can still merge two cells into one blob. As in the paper's data, the
    labels keep touching cells apart by a thin line of *background* between them, and the
    weight map (:func:`segedu.unet.weight_map`) makes the network pay for those few pixels.

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
            ``return_weights``; the weights are then a float ``tv_tensors.Mask``).
        max_cells: at most this many cells per image (at least 3).
        return_weights: also return the loss weight map, ``w0`` and ``sigma`` as in
            :func:`segedu.unet.weight_map` (the paper's 10 and 5 pixels by default).
        cache: keep generated samples in memory.

    Returns (from ``dataset[i]``):
        ``(image, mask)``: ``tv_tensors.Image`` (1, H, W) float32 and ``tv_tensors.Mask``
        (H, W) long (0 background, 1 cell); with ``return_weights`` also the (H, W) float32
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
        return_weights: bool = False,
        w0: float = 10.0,
        sigma: float = 5.0,
        cache: bool = True,
    ) -> None:
        super().__init__(split, size, length, seed, transforms, cache, min_size=32)
        if max_cells < 3:
            raise ValueError(f"max_cells must be at least 3, got {max_cells}.")
        self.max_cells = int(max_cells)
        self.return_weights, self.w0, self.sigma = return_weights, float(w0), float(sigma)
        self._weights: dict[int, torch.Tensor] = {}

    def __getitem__(self, index: int) -> tuple:
        image_u8, ids = self._sample(index)
        image = tv_tensors.Image(torch.from_numpy(image_u8.astype(np.float32) / np.float32(255)))
        mask = tv_tensors.Mask(torch.from_numpy((ids > 0).astype(np.int64)))
        if not self.return_weights:
            return (image, mask) if self.transforms is None else self.transforms(image, mask)
        weights = self.weights(index)
        if self.transforms is not None:
            return self.transforms(image, mask, tv_tensors.Mask(weights))
        return image, mask, weights

    def instances(self, index: int) -> torch.Tensor:
        """(H, W) long instance ids of sample ``index``: 0 background, 1..K the cells."""
        return torch.from_numpy(self._sample(index)[1].astype(np.int64))

    def weights(self, index: int) -> torch.Tensor:
        """(H, W) float32 loss weight map of sample ``index`` (:func:`segedu.unet.weight_map`)."""
        from .unet import weight_map  # the weight map is chapter 3's; data is chapter 0's

        index = self._check_index(index)
        if index not in self._weights:
            w = weight_map(self.instances(index), w0=self.w0, sigma=self.sigma)
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
        xs, ys = _pixel_grid(size)
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
        up = _upsample_matrix(size, 4)
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


# ----------------------------------------------------------------------------------------------
# 7. Objects that only context can name (chapter 4, PSPNet)
# ----------------------------------------------------------------------------------------------

#: The classes of :class:`ContextShapes`: the same object is a boat on water, a car on a road.
CONTEXT_CLASSES = ("background", "boat", "car")

#: The two scenes of :class:`ContextShapes` and the class an object gets in each.
CONTEXT_SCENES = {"water": 1, "road": 2}


class ContextShapes(_SyntheticSet):
    """One vehicle-like object in a patch of fog, on water (a "boat") or on a road (a "car").

    The confusion of the PSPNet paper's Fig. 2, made exact: the object's pixels are drawn from
    a random stream that does not depend on the scene, so the *same* object, pixel for pixel,
    is labelled ``boat`` in a water scene and ``car`` in a road scene (:meth:`in_scene` renders
    one sample in either). Around the object lies a patch of fog, ``margin`` pixels wide and
    also independent of the scene: whatever sees only the object and its surroundings up to
    ``margin`` pixels away cannot tell the two classes apart (it is right half the time). The
    scene shows only further out, towards the image border:

    * **water**: blue-green, with wavy horizontal ripples;
    * **road**: grey asphalt with speckle and a dashed lane marking;
    * **object**: an elongated rounded rectangle of random colour, length and angle, with a
      darker "cabin" on it; anti-aliased edges (the label follows the pixel centre);
    * **fog**: a soft, light, low-saturation disk of radius ``object radius + margin``;
    * Gaussian noise and 8-bit quantisation, as in :class:`SyntheticShapes`.

    Scenes alternate: even indices are water, odd ones road, so every split is balanced.

    Args:
        split: ``"train"`` or ``"val"``.
        size: height and width in pixels (at least 32).
        length: number of samples; default 512 for train, 128 for val.
        seed: selects a different (but again deterministic) data set.
        transforms: called as ``transforms(image, mask)``.
        margin: width of the fog around the object, in pixels (0: the scene touches the object).
        cache: keep generated samples in memory.

    Returns (from ``dataset[i]``):
        ``(image, mask)``: ``tv_tensors.Image`` (3, H, W) float32 in [0, 1] and
        ``tv_tensors.Mask`` (H, W) long: 0 background (water, road, fog), 1 boat, 2 car.
    """

    classes = CONTEXT_CLASSES

    def __init__(
        self,
        split: str = "train",
        size: int = 64,
        length: int | None = None,
        seed: int = 0,
        transforms: Transforms | None = None,
        margin: float = 12.0,
        cache: bool = True,
    ) -> None:
        super().__init__(split, size, length, seed, transforms, cache, min_size=32)
        if margin < 0:
            raise ValueError(f"margin must be >= 0 pixels, got {margin}.")
        self.margin = float(margin)

    def scene(self, index: int) -> str:
        """``"water"`` (even indices) or ``"road"`` (odd indices)."""
        return "water" if self._check_index(index) % 2 == 0 else "road"

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        return self.in_scene(index, self.scene(index))

    def in_scene(self, index: int, scene: str) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """Sample ``index`` rendered in ``scene`` (``"water"`` or ``"road"``): the object and
        the fog are the same pixels in both; only the scene around them and the label differ."""
        if scene not in CONTEXT_SCENES:
            raise ValueError(f"scene must be one of {tuple(CONTEXT_SCENES)}, got {scene!r}.")
        index = self._check_index(index)
        key = (index, scene)
        if key in self._cache:
            image_u8, mask_u8 = self._cache[key]
        else:
            image_u8, mask_u8 = self._render(index, scene)
            if self.cache:
                self._cache[key] = (image_u8, mask_u8)
        image = tv_tensors.Image(torch.from_numpy(image_u8.astype(np.float32) / np.float32(255)))
        mask = tv_tensors.Mask(torch.from_numpy(mask_u8).long())
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        return image, mask

    # -- generation ----------------------------------------------------------------------------

    def _scene(self, scene: str, rng: np.random.Generator) -> np.ndarray:
        """A (3, S, S) water or road background."""
        size = self.size
        xs, ys = _pixel_grid(size)
        up = _upsample_matrix(size, 4)
        if scene == "water":
            base = _hsv(rng.uniform(180, 220), rng.uniform(0.45, 0.8), rng.uniform(0.4, 0.7))
            image = base[:, None, None] + up @ rng.uniform(-0.06, 0.06, (3, 4, 4)) @ up.T
            period, phase = rng.uniform(4, 7), rng.uniform(0, 2 * np.pi)
            wobble = 1.5 * np.sin(xs * rng.uniform(0.15, 0.3) + rng.uniform(0, 2 * np.pi))
            ripples = np.sin((ys + wobble) * (2 * np.pi / period) + phase)
            tint = np.array([0.6, 1.0, 1.0])[:, None, None]  # ripples are bluish-white
            return image + rng.uniform(0.04, 0.08) * ripples * tint
        grey = rng.uniform(0.25, 0.45)
        image = np.full((3, size, size), grey) + rng.uniform(-0.02, 0.02, (3, 1, 1))
        image = image + up @ rng.uniform(-0.04, 0.04, (4, 4)) @ up.T  # uneven asphalt
        image = image + rng.normal(0, 0.04, (1, size, size))  # speckle, the same in R, G, B
        # a dashed lane marking along a random direction through the image
        theta = rng.uniform(0, np.pi)
        across = (xs - size / 2) * np.sin(theta) - (ys - size / 2) * np.cos(theta)
        along = (xs - size / 2) * np.cos(theta) + (ys - size / 2) * np.sin(theta)
        offset, dash = rng.uniform(-size / 3, size / 3), rng.uniform(5, 9)
        line = (np.abs(across - offset) < 1.2) & (np.mod(along, 2 * dash) < dash)
        return np.where(line, np.float32(rng.uniform(0.8, 0.95)), image)

    def _render(self, index: int, scene: str) -> tuple[np.ndarray, np.ndarray]:
        """Draw sample ``index`` in ``scene``: image (3, S, S) uint8 and mask (S, S) uint8."""
        size = self.size
        # Three independent streams: the object (and fog), the scene, the noise. The object's
        # stream does not depend on the scene, so its pixels are the same in both.
        obj_rng = np.random.default_rng([self.seed, self._SPLITS[self.split], index, 0])
        scene_rng = np.random.default_rng([self.seed, self._SPLITS[self.split], index,
                                           1 + CONTEXT_SCENES[scene]])
        xs, ys = _pixel_grid(size)

        length = obj_rng.uniform(size / 6, size / 4)        # half-length, half-width in pixels
        half_w = length * obj_rng.uniform(0.4, 0.6)
        cx, cy = obj_rng.uniform(size * 0.3, size * 0.7, size=2)
        angle = obj_rng.uniform(0, np.pi)
        u = (xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)
        v = -(xs - cx) * np.sin(angle) + (ys - cy) * np.cos(angle)
        corner = 0.35 * half_w  # rounded-rectangle signed distance
        qu, qv = np.abs(u) - (length - corner), np.abs(v) - (half_w - corner)
        dist = (np.hypot(np.maximum(qu, 0), np.maximum(qv, 0))
                + np.minimum(np.maximum(qu, qv), 0) - corner)
        body = _hsv(obj_rng.uniform(0, 360), obj_rng.uniform(0.5, 0.9), obj_rng.uniform(0.55, 0.9))
        cabin_at = obj_rng.uniform(-0.3, 0.3) * length
        cabin = (np.abs(u - cabin_at) < 0.35 * length) & (np.abs(v) < 0.55 * half_w)
        colour = np.where(cabin, body[:, None, None] * 0.45, body[:, None, None])
        fog_colour = _hsv(obj_rng.uniform(0, 360), obj_rng.uniform(0.0, 0.1),
                          obj_rng.uniform(0.7, 0.85))
        fog_texture = obj_rng.normal(0, 0.02, (1, size, size)).astype(np.float32)
        radius = np.hypot(length, half_w)

        image = self._scene(scene, scene_rng)
        fog = np.clip((radius + self.margin - np.hypot(xs - cx, ys - cy)) / 3 + 0.5, 0, 1)
        image = image * (1 - fog) + (fog_colour[:, None, None] + fog_texture) * fog
        alpha = np.clip(0.5 - dist, 0.0, 1.0)  # anti-aliased edge
        image = image * (1 - alpha) + colour * alpha
        label = np.where(dist < 0, CONTEXT_SCENES[scene], 0).astype(np.uint8)
        image = image + obj_rng.normal(0, 0.02, image.shape)  # noise: same stream, same pixels
        image_u8 = (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
        return image_u8, label

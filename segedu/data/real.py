"""Real data sets through torchvision (Oxford-IIIT Pet, PASCAL VOC 2012), as class-index masks.

A data set that is not on disk and cannot be downloaded raises :class:`DatasetUnavailableError`
with what to do, and :func:`load_dataset` can fall back to the offline synthetic set instead.
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

from ..core.validation import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, check_mask
from .synthetic import SyntheticShapes
from .transforms import Transforms

__all__ = [
    "VOC_CLASSES",
    "PET_CLASSES",
    "DATASET_NAMES",
    "DatasetUnavailableError",
    "OxfordPet",
    "VOCSegmentation",
    "mask_from_palette",
    "load_dataset",
]


#: PASCAL VOC 2012: background plus 20 object classes, in the order of the mask indices.
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

#: Oxford-IIIT Pet used as a two-class problem: the pet's outline against everything else.
PET_CLASSES = ("background", "pet")

#: Names accepted by :func:`load_dataset` and :func:`make_loaders`.
DATASET_NAMES = ("synthetic", "oxford_pet", "voc")


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
        palette: (K, 3) colours, row k = colour of class k, e.g. ``segedu.tools.viz.VOC_PALETTE``.
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

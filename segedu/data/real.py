"""Real data sets through torchvision, as class-index masks: Oxford-IIIT Pet, PASCAL VOC 2012
(optionally with SBD's extra masks, the "train_aug" set of 10,582 images that DeepLab and PSPNet
train on) and Cityscapes (``gtFine``, 19 train IDs, everything else 255).

A data set that is not on disk, or only half of it, raises :class:`DatasetUnavailableError`
saying where to get it; :func:`load_dataset` can fall back to the offline synthetic set instead.
A file that cannot be read is an error that names the file.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image as PILImage
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..core.validation import IGNORE_INDEX, check_mask
from .synthetic import SyntheticShapes
from .transforms import Transforms

__all__ = [
    "VOC_CLASSES",
    "PET_CLASSES",
    "DATASET_NAMES",
    "DatasetUnavailableError",
    "OxfordPet",
    "VOCSegmentation",
    "VOCAugmented",
    "Cityscapes",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_TRAIN_IDS",
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

#: Cityscapes' 19 evaluation classes, in train-ID order (Cordts et al., CVPR 2016, Table 1).
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip

#: Cityscapes label ID -> train ID (the 19 classes above); every other ID becomes 255.
CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
                        23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}

#: Names accepted by :func:`load_dataset` and :func:`make_loaders`.
DATASET_NAMES = ("synthetic", "oxford_pet", "voc", "voc_aug", "cityscapes")

#: Where to get each real data set when it is missing (shown in the error).
WHERE_TO_GET = {
    "Oxford-IIIT Pet": "download=True fetches it from the authors' page "
                       "(https://www.robots.ox.ac.uk/~vgg/data/pets/).",
    "PASCAL VOC 2012": "download=True tries the original host (host.robots.ox.ac.uk), which "
                       "has often been down; alternatives: the widely used mirror "
                       "https://pjreddie.com/media/files/VOCtrainval_11-May-2012.tar, or a "
                       "copy on Kaggle or the Hugging Face Hub (search 'VOC2012'). Extract it "
                       "so that VOCdevkit/VOC2012/ is inside root.",
    "SBD": "the Semantic Boundaries Dataset (Hariharan et al., 2011), benchmark.tgz from "
           "Berkeley's 'semantic_contours' page (download=True of torchvision's SBDataset); "
           "put its img/, cls/, train.txt and val.txt in root/sbd/.",
    "Cityscapes": "register at https://www.cityscapes-dataset.com and download "
                  "leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip (no automatic "
                  "download: the licence requires an account); extract both into root/cityscapes/.",
}


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


def _unavailable(name: str, folder: Path, download: bool, error: Exception | str, size: str):
    what = "could not be downloaded" if download else "was not found (download=False)"
    reason = f"{name} {what} in {folder}"
    said = error if isinstance(error, str) else f"torchvision said: {type(error).__name__}: {error}"
    message = (
        f"{reason}.\n"
        f"  {said}\n"
        "  What to do:\n"
        f"  - get it ({size}): {WHERE_TO_GET.get(name.split(' (')[0], 'pass download=True')}\n"
        f"  - or put the extracted files in {folder}, or\n"
        "  - use the offline synthetic set: load_dataset('synthetic', split) / SyntheticShapes()."
    )
    return DatasetUnavailableError(message, reason=reason)


def _check_files(paths: Sequence[str | Path], name: str, folder: Path, size: str) -> None:
    """A half-downloaded or half-extracted data set: the split lists files that are missing."""
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise _unavailable(name, folder, False,
                           f"{len(missing)} of {len(paths)} listed files are missing, e.g. "
                           f"{missing[0]} (an interrupted download or extraction?)", size)


def _read(dataset: Dataset, index: int, paths: Sequence[Sequence[str]]) -> tuple:
    """``dataset[index]``, with an error naming the files if one cannot be decoded."""
    try:
        return dataset[index]
    except (OSError, ValueError, SyntaxError) as error:  # PIL: UnidentifiedImageError, truncated
        files = ", ".join(str(p[index]) for p in paths)
        raise ValueError(f"could not read sample {index} ({files}): {type(error).__name__}: "
                         f"{error}. The file is corrupt or truncated; download it again."
                         ) from error


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
        _check_files(self._dataset._images + self._dataset._segs, "Oxford-IIIT Pet",
                     self.root / "oxford-iiit-pet", "~800 MB")
        self._lut = np.full(256, -1, dtype=np.int64)
        for value, index in self._TRIMAP_TO_CLASS.items():
            self._lut[value] = index

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        pil_image, trimap = _read(self._dataset, index,
                                  (self._dataset._images, self._dataset._segs))
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
        _check_files(self._dataset.images + self._dataset.masks, f"PASCAL VOC {year}",
                     self.root / "VOCdevkit" / f"VOC{year}", "~2 GB")

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        pil_image, pil_mask = _read(self._dataset, index,
                                    (self._dataset.images, self._dataset.masks))
        if pil_mask.mode not in ("P", "L"):
            raise ValueError(
                f"VOC mask {index} has PIL mode {pil_mask.mode!r}; expected 'P' (palette "
                "indices). An RGB mask must be converted first: see mask_from_palette()."
            )
        mask = tv_tensors.Mask(torch.from_numpy(np.asarray(pil_mask, dtype=np.int64).copy()))
        check_mask(mask, self.num_classes, IGNORE_INDEX, name=f"VOC mask {index}")
        return self._finish(_to_image(pil_image), mask)


class VOCAugmented(Dataset):
    """VOC 2012 train + SBD: the 10,582-image "train_aug" set DeepLab and PSPNet train on.

    SBD (Hariharan et al., ICCV 2011) re-annotated 11,355 VOC images with the same 20 classes.
    The usual recipe takes VOC 2012's train masks, adds every SBD image (train and val) that is
    neither among them nor in VOC 2012 *val* (which stays the test set), and uses VOC's own mask
    where both have one. torchvision's ``SBDataset(image_set="train_noval")`` would give that
    list, but its download has failed since 2024 (pytorch/vision#8471), so we compute it.
    SBD masks have no 255 boundary band.

    Args:
        root: holds ``VOCdevkit/VOC2012/`` and ``sbd/`` (``img/``, ``cls/``, ``train.txt``,
            ``val.txt``).
        transforms: called as ``transforms(image, mask)``.
    """

    classes = VOC_CLASSES

    def __init__(self, root: str | Path = "data", transforms: Transforms | None = None) -> None:
        self.root, self.transforms = Path(root), transforms
        self.voc = VOCSegmentation(root, "train")
        voc_val = VOCSegmentation(root, "val")
        folder = self.root / "sbd"
        try:
            self._sbd = [torchvision.datasets.SBDataset(str(folder), image_set=s,
                                                        mode="segmentation")
                         for s in ("train", "val")]
        except _MISSING_OR_DOWNLOAD_ERRORS as error:
            raise _unavailable("SBD", folder, False, error, "~1.4 GB") from error
        taken = {Path(p).stem for p in self.voc._dataset.images + voc_val._dataset.images}
        self._extra = []  # (which SBD split, index) of the images SBD adds
        for k, sbd in enumerate(self._sbd):
            _check_files(sbd.images + sbd.masks, "SBD", folder, "~1.4 GB")
            for i, path in enumerate(sbd.images):
                if Path(path).stem not in taken:
                    taken.add(Path(path).stem)
                    self._extra.append((k, i))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.voc) + len(self._extra)

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        if index < len(self.voc):
            image, mask = self.voc[index]
        else:
            k, i = self._extra[index - len(self.voc)]
            sbd = self._sbd[k]
            pil_image, pil_mask = _read(sbd, i, (sbd.images, sbd.masks))
            image = _to_image(pil_image.convert("RGB"))
            mask = tv_tensors.Mask(torch.from_numpy(np.asarray(pil_mask, dtype=np.int64).copy()))
            check_mask(mask, self.num_classes, IGNORE_INDEX, name=f"SBD mask {sbd.masks[i]}")
        return (image, mask) if self.transforms is None else self.transforms(image, mask)


class Cityscapes(_TorchvisionSegmentation):
    """Cityscapes fine annotations (Cordts et al., CVPR 2016): 19 classes, others ignored.

    Wraps ``torchvision.datasets.Cityscapes(mode="fine", target_type="semantic")``, whose masks
    hold the 34 *label IDs*; :data:`CITYSCAPES_TRAIN_IDS` maps the 19 evaluated ones to 0..18 and
    every other ID (ego vehicle, rectification border, out of ROI, static, ...) to 255, as the
    official ``createTrainIdLabelImgs.py`` does.

    Args:
        root: holds (or links to) ``cityscapes/`` with ``leftImg8bit/`` and ``gtFine/``.
        split: ``"train"`` (2975 images), ``"val"`` (500) or ``"test"`` (1525, no labels).
        transforms: called as ``transforms(image, mask)``.
    """

    classes = CITYSCAPES_CLASSES

    def __init__(self, root: str | Path = "data", split: str = "train",
                 transforms: Transforms | None = None) -> None:
        if split not in ("train", "val", "test"):
            raise ValueError(f"Cityscapes split must be 'train', 'val' or 'test', got {split!r}.")
        self.root, self.split, self.transforms = Path(root), split, transforms
        folder = self.root / "cityscapes"
        self._open(lambda: torchvision.datasets.Cityscapes(
            str(folder), split=split, mode="fine", target_type="semantic"),
            "Cityscapes", folder, False, "~11 GB for both archives")
        if len(self._dataset) == 0:
            raise _unavailable("Cityscapes", folder, False,
                               f"no images under {folder / 'leftImg8bit' / split}", "~11 GB")
        _check_files(self._dataset.images + [t[0] for t in self._dataset.targets], "Cityscapes",
                     folder, "~11 GB")
        self._lut = np.full(256, IGNORE_INDEX, dtype=np.int64)
        for label_id, train_id in CITYSCAPES_TRAIN_IDS.items():
            self._lut[label_id] = train_id

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        targets = [t[0] for t in self._dataset.targets]
        pil_image, pil_mask = _read(self._dataset, index, (self._dataset.images, targets))
        label_ids = np.asarray(pil_mask, dtype=np.uint8)  # -1 (license plate) is stored as 255
        mask = tv_tensors.Mask(torch.from_numpy(self._lut[label_ids]))
        return self._finish(_to_image(pil_image.convert("RGB")), mask)


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
        "voc_aug": {"train": "train_aug", "val": "val"},
        "cityscapes": {"train": "train", "val": "val", "test": "test"},
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
        name: one of :data:`DATASET_NAMES` (``"voc_aug"``: VOC train + SBD, VOC val).
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
        if name == "voc_aug":  # VOC train + SBD for training; VOC val for validation
            return (VOCAugmented(root, transforms=transforms) if native == "train_aug"
                    else VOCSegmentation(root, "val", transforms=transforms))
        if name == "cityscapes":
            return Cityscapes(root, native, transforms=transforms)
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

"""Data sets, joint image + mask transforms and loaders (chapter 0), one module per job:

* :mod:`~segedu.data.synthetic` — **SyntheticShapes**, an offline, deterministic data set of
  coloured shapes on textured backgrounds (every CPU notebook, the tests and ``segedu demo``
  use it, so nothing needs a download), and the base class of every offline set;
* :mod:`~segedu.data.scenes` — **ShapeScenes**, the same classes as SyntheticShapes with colour
  and texture drawn independently of the class: only shape decides;
* :mod:`~segedu.data.tasks` — the registry of diagnostic tasks (:func:`get_task`), one per idea
  the chapters claim, shared by the chapters' experiments and chapter 9's benchmark;
* :mod:`~segedu.data.cells` — **TouchingCells**, microscopy-like cells that touch, with
  instance ids (chapter 3, U-Net's weight map);
* :mod:`~segedu.data.context` — **ContextShapes**, the same object is a boat on water and a car
  on a road: only global context tells them apart (chapter 4);
* :mod:`~segedu.data.imbalance` — **SmallObjects**, large blobs and tiny specks of the same
  colours: class imbalance, for chapter 7's losses;
* :mod:`~segedu.data.real` — Oxford-IIIT Pet, PASCAL VOC 2012 (+ SBD), Cityscapes through
  torchvision, as
  class-index masks, with a clear error when the files are not there and a fallback to the
  synthetic set (:func:`load_dataset`);
* :mod:`~segedu.data.transforms` — joint transforms from ``torchvision.transforms.v2``: image
  and mask transformed *together* (same crop, same flip), the mask with nearest-neighbour
  interpolation and padded with the ignore label;
* :mod:`~segedu.data.loaders` — :func:`make_loaders`, the (train, val) pair the notebooks use.

Every data set here returns ``(image, mask)`` where ``image`` is a
:class:`torchvision.tv_tensors.Image` of shape (C, H, W), float32 in [0, 1], and ``mask`` is a
:class:`torchvision.tv_tensors.Mask` of shape (H, W), ``torch.long`` class indices in
``[0, num_classes)`` or 255 (:data:`IGNORE_INDEX`) for "ignore this pixel".

Layer: data imports only :mod:`segedu.core`; no data set depends on a chapter (U-Net's weight
map is passed to :class:`TouchingCells` as a function, not imported).
"""

from ..core.validation import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from .cells import CELL_CLASSES, TouchingCells
from .context import CONTEXT_CLASSES, CONTEXT_SCENES, ContextShapes
from .imbalance import IMBALANCE_CLASSES, SmallObjects
from .loaders import make_loaders
from .real import (
    CITYSCAPES_CLASSES,
    DATASET_NAMES,
    PET_CLASSES,
    VOC_CLASSES,
    Cityscapes,
    DatasetUnavailableError,
    OxfordPet,
    VOCAugmented,
    VOCSegmentation,
    load_dataset,
    mask_from_palette,
)
from .scenes import ShapeScenes
from .synthetic import SHAPE_CLASSES, Shape, SyntheticSet, SyntheticShapes
from .tasks import TASKS, Task, get_task, list_tasks
from .transforms import JointCompose, Transforms, eval_transforms, scale_crop, train_transforms

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IGNORE_INDEX",
    "VOC_CLASSES",
    "PET_CLASSES",
    "SHAPE_CLASSES",
    "DATASET_NAMES",
    "Shape",
    "SyntheticSet",
    "SyntheticShapes",
    "ShapeScenes",
    "Task",
    "TASKS",
    "get_task",
    "list_tasks",
    "DatasetUnavailableError",
    "OxfordPet",
    "VOCSegmentation",
    "VOCAugmented",
    "Cityscapes",
    "CITYSCAPES_CLASSES",
    "IMBALANCE_CLASSES",
    "SmallObjects",
    "JointCompose",
    "scale_crop",
    "mask_from_palette",
    "load_dataset",
    "Transforms",
    "train_transforms",
    "eval_transforms",
    "make_loaders",
    "CELL_CLASSES",
    "TouchingCells",
    "CONTEXT_CLASSES",
    "CONTEXT_SCENES",
    "ContextShapes",
]

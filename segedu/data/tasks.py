"""Diagnostic tasks: one offline data set per idea the chapters claim, in one registry.

A chapter's idea is shown on the task built to isolate it, and chapter 9's model-selection
benchmark runs the same tasks, so they live here, once: a name, the question the task asks of a
model, and how to build its training and validation sets. The experiment harness
(:mod:`segedu.tools.experiment`) trains models on them under equal budgets.

==================  =================================================================
task                isolates
==================  =================================================================
``shapes``          shape: colour and texture carry no class (:class:`ShapeScenes`)
``touching``        touching instances kept apart (U-Net's weight map; TouchingCells)
``context``         global context: the same object, two classes (PSPNet; ContextShapes)
``imbalance``       a rare, small class (chapter 7's Dice and Focal; SmallObjects)
``few-images``      32 training images of ``shapes`` (U-Net's claim; augmentation)
``scale-range``     ``shapes`` with radii from 2 pixels to half the image (DeepLab's ASPP)
``resolution``      ``shapes`` trained at 64x64, validated at 96x96 (larger objects)
==================  =================================================================

Every set is deterministic (sample ``i`` is the same image everywhere) and offline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch.utils.data import Dataset

from .cells import TouchingCells
from .context import ContextShapes
from .imbalance import SmallObjects
from .scenes import ShapeScenes
from .synthetic import SyntheticSet
from .transforms import eval_transforms

__all__ = ["Task", "TASKS", "get_task", "list_tasks"]


@dataclass(frozen=True)
class Task:
    """A diagnostic task: a data set family and the sizes it is trained and validated at.

    Attributes:
        name: the registry key.
        isolates: what the task isolates and which chapter's claim it tests (one paragraph).
        dataset: ``dataset(split, size=..., length=..., seed=..., transforms=..., **options)``,
            a :class:`~segedu.data.synthetic.SyntheticSet` subclass.
        train_length, val_length: number of training and validation images.
        size: training image side; ``val_size`` the validation side (default: the same).
        options: keyword arguments for ``dataset`` (e.g. a wider ``scale_range``).
    """

    name: str
    isolates: str
    dataset: Callable[..., SyntheticSet]
    train_length: int = 512
    val_length: int = 128
    size: int = 64
    val_size: int | None = None
    options: dict = field(default_factory=dict)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.dataset.classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def train_set(self, transforms: Callable | None = None, *, length: int | None = None,
                  size: int | None = None, seed: int = 0) -> Dataset:
        """The training split (default transforms: to float and ImageNet-normalised)."""
        return self.dataset("train", size=size or self.size,
                            length=self.train_length if length is None else length, seed=seed,
                            transforms=transforms or eval_transforms(None), **self.options)

    def val_set(self, transforms: Callable | None = None, *, length: int | None = None,
                size: int | None = None, seed: int = 0) -> Dataset:
        """The validation split, at ``val_size`` when the task changes resolution."""
        return self.dataset("val", size=size or self.val_size or self.size,
                            length=self.val_length if length is None else length, seed=seed,
                            transforms=transforms or eval_transforms(None), **self.options)


_TASK_LIST = [
    Task("shapes",
         "Shape. Textured circles, squares, triangles and rings on textured backgrounds; hue, "
         "saturation, brightness and texture are drawn independently of the class, so only the "
         "outline's shape names the class (objects at several scales, partly occluded, thin "
         "ring bands). The per-pixel baselines fail here by construction; every chapter's "
         "network should not.",
         ShapeScenes),
    Task("touching",
         "Touching instances (chapter 3, U-Net's weight map): grey cells pressed against each "
         "other, separated in the labels by a 1-2 pixel line of background that a network "
         "must reproduce to keep the cells apart.",
         TouchingCells),
    Task("context",
         "Global context (chapter 4, PSPNet): the same object, pixel for pixel, is a boat on "
         "water and a car on a road; a patch of fog around it hides the scene from anything "
         "that sees only nearby pixels.",
         ContextShapes),
    Task("imbalance",
         "Class imbalance (chapter 7, Dice and Focal losses): large blobs and tiny specks "
         "(~1% of the pixels) of the same colours; only size tells them apart.",
         SmallObjects),
    Task("few-images",
         "Few training images (chapter 3, U-Net's claim; chapter 7's augmentation): the shapes "
         "task with only 32 training images.",
         ShapeScenes, train_length=32),
    Task("scale-range",
         "Objects over a wide range of scales (chapter 5, DeepLab's atrous rates and ASPP): the "
         "shapes task with radii log-uniform from 2 pixels to 45% of the image side.",
         ShapeScenes, options={"scale_range": (1 / 32, 0.45)}),
    Task("resolution",
         "A change of input resolution: trained on the shapes task at 64x64, validated at "
         "96x96, where every object is 1.5x larger in pixels (how much a network's learnt "
         "features depend on the scale it saw).",
         ShapeScenes, val_size=96),
]

#: The diagnostic tasks by name.
TASKS: dict[str, Task] = {task.name: task for task in _TASK_LIST}


def list_tasks() -> list[str]:
    """The names of the diagnostic tasks."""
    return list(TASKS)


def get_task(name: str) -> Task:
    """The task called ``name`` (see :data:`TASKS`)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}.")
    return TASKS[name]

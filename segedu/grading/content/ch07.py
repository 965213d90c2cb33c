"""Chapter 7 exercises (training): the functions students write in ``07_training.ipynb``.

Each exercise's reference is the implementation in :mod:`segedu.train`, :mod:`segedu.losses`
or :mod:`segedu.data.transforms`. Case inputs are built from seeded generators, so the
student's process and the grader's build the same tensors.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...data.transforms import scale_crop
from ...losses import dice_loss, focal_loss
from ...train.schedule import poly_factor
from ..engine.exercise import Case, Exercise
from .cases import as_tensor, const, randn

__all__ = ["EXERCISES"]


# --------------------------------------------------------------------------- references
# The exercises take plain positional arguments; these call the package's functions.


def poly_lr_at(base_lr: float, it: int, max_it: int, power: float = 0.9) -> float:
    return base_lr * poly_factor(it, max_it, power)


def _dice(logits, target, smooth=1.0, ignore_index=255):
    return dice_loss(logits, target, smooth=smooth, ignore_index=ignore_index)


def _focal(logits, target, gamma=2.0, alpha=None, ignore_index=255):
    return focal_loss(logits, target, gamma=gamma, alpha=alpha, ignore_index=ignore_index)


# --------------------------------------------------------------------------- helpers


def _labels(shape: tuple[int, ...], classes: int, seed: int, ignore: float = 0.0,
            only: tuple[int, ...] | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, classes, shape, generator=g)
    if only is not None:  # some classes absent from the target
        target = torch.tensor(only)[torch.randint(0, len(only), shape, generator=g)]
    if ignore:
        target[torch.rand(shape, generator=g) < ignore] = 255
    return target


def _loss_case(n, c, h, w, seed, ignore=0.0, only=None, **extra) -> Callable[[], tuple]:
    def make() -> tuple:
        logits = 2 * randn(n, c, h, w, seed=seed)
        target = _labels((n, h, w), c, seed + 1, ignore, only)
        return (logits, target, *extra.values())
    return make


def _crop_case(c, h, w, classes, scale, crop, top, left, seed) -> Callable[[], tuple]:
    def make() -> tuple:
        image = randn(c, h, w, seed=seed)
        mask = _labels((h, w), classes, seed + 1, ignore=0.1)
        return image, mask, scale, crop, top, left
    return make


def _pair(value) -> dict[str, torch.Tensor]:
    if not isinstance(value, tuple) or len(value) != 2:
        raise TypeError("scale_crop must return the pair (image, mask).")
    image, mask = (as_tensor(v, returned_by="scale_crop") for v in value)
    return {"image": image, "mask": mask}


# --------------------------------------------------------------------------- exercises

POLY_LR = Exercise(
    id="ch07.poly_lr_at",
    function="poly_lr_at",
    reference=poly_lr_at,
    summary=float,
    rtol=1e-9,
    atol=1e-12,
    task=(
        "Return the learning rate of the poly schedule at iteration `it` of `max_it`: the decay "
        "FCN, DeepLab and PSPNet train with, which starts at the base rate and reaches zero "
        "exactly at the last iteration."
    ),
    hint=(
        "The schedule multiplies the base rate by the fraction of training that is still "
        "left, raised to a power (0.9 in the papers). Ask what the rate is at the first "
        "iteration, at the last one, and after it."
    ),
    hints=(
        "Which quantity goes wrong: what the power applies to (the fraction remaining, not the "
        "fraction done), the end point (the rate must be exactly 0 at max_it), or iterations "
        "past max_it (they must not give a negative base for a fractional power).",
        "Worked example: base 0.01, max_it 100, power 0.9: it = 0 gives 0.01, it = 50 gives "
        "0.01 * 0.5 ** 0.9 = 0.00536, it = 100 and it = 120 give 0.",
    ),
    answer_fragments=("min(it, max_it) / max_it", "(1 - progress) ** power"),
    cases=[
        Case("it = 0 gives base_lr", const(0.01, 0, 100)),
        Case("halfway, power 0.9", const(0.01, 50, 100), points=2),
        Case("the last step, it = max_it - 1", const(0.007, 29_999, 30_000), points=2),
        Case("power 1: linear", const(0.1, 30, 40, 1.0)),
        Case("it = max_it gives 0", const(0.01, 100, 100)),
        Case("past the end stays 0", const(0.01, 150, 100), points=2),
        Case("power 2, base 1", const(1.0, 3, 7, 2.0), hidden=True),
    ],
)

DICE_LOSS = Exercise(
    id="ch07.dice_loss",
    function="dice_loss",
    reference=_dice,
    summary=as_tensor,
    rtol=1e-5,
    atol=1e-6,
    task=(
        "Return the soft multiclass Dice loss of logits (N, C, H, W) against a target "
        "(N, H, W) in which 255 marks pixels to ignore: the overlap loss medical segmentation "
        "uses because it does not let a large background drown a small object."
    ),
    hint=(
        "Dice compares, per class, how much probability falls on the class's true pixels with "
        "how much probability and how many true pixels there are in all; the loss is one minus "
        "the average over classes. An ignored pixel must not count anywhere."
    ),
    hints=(
        "Which quantity goes wrong: ignored pixels left in one of the sums (zero their "
        "probabilities as well as their one-hot labels), the axes summed over (the whole "
        "batch and image per class, then the mean over classes), or a batch with no labelled "
        "pixel (the loss is 0 and must still be connected to the logits).",
        "Worked example: 2 classes, one labelled pixel of class 1 with probabilities "
        "(0.2, 0.8), smoothing 1: class 0 gives (0 + 1) / (0.2 + 0 + 1) = 0.833, class 1 "
        "(1.6 + 1) / (0.8 + 1 + 1) = 0.929; the loss is 1 - 0.881 = 0.119.",
    ),
    answer_fragments=("logits.softmax(1) * valid", "2 * intersection + smooth"),
    cases=[
        Case("3 classes, no ignored pixels", _loss_case(2, 3, 5, 7, seed=1), points=2),
        Case("4 classes, 25% ignored", _loss_case(2, 4, 6, 5, seed=2, ignore=0.25), points=3),
        Case("a class absent from the target", _loss_case(1, 4, 7, 9, seed=3, only=(0, 2)),
             points=2),
        Case("smooth = 0", _loss_case(2, 3, 4, 4, seed=4, ignore=0.2, smooth=0.0), points=2),
        Case("every pixel ignored gives 0", _loss_case(1, 3, 3, 3, seed=5, ignore=1.0),
             points=2),
        Case("batch 3, 5 classes, 9x2, 40% ignored",
             _loss_case(3, 5, 9, 2, seed=6, ignore=0.4), points=2, hidden=True),
    ],
)

FOCAL_LOSS = Exercise(
    id="ch07.focal_loss",
    function="focal_loss",
    reference=_focal,
    summary=as_tensor,
    rtol=1e-5,
    atol=1e-6,
    task=(
        "Return the softmax focal loss (Lin et al., 2017) of logits (N, C, H, W) against a "
        "target (N, H, W) with 255 ignored, with focusing parameter gamma and optional per-class "
        "weights alpha: cross-entropy that turns down the pixels the network already gets right."
    ),
    hint=(
        "Start from each labelled pixel's cross-entropy, -log p of its true class, and scale "
        "it by a factor that is near 0 when p is near 1 and grows as p falls; gamma sets how "
        "sharply. With gamma = 0 the loss must be plain cross-entropy."
    ),
    hints=(
        "Which quantity goes wrong: the probabilities (a softmax over the classes, not a sigmoid "
        "per class), the ignored pixels (gather at a safe index, then keep only the labelled "
        "ones), alpha (a weight per pixel by its true class), or the mean (over labelled "
        "pixels, not over the sum of alpha).",
        "Worked example: one pixel, true-class probability 0.9, gamma 2: cross-entropy 0.105, "
        "factor (1 - 0.9) ** 2 = 0.01, loss 0.00105; with gamma 0 it is 0.105.",
    ),
    answer_fragments=("log_softmax(1).gather(1", "(1 - log_p.exp()) ** gamma"),
    cases=[
        Case("gamma = 0 is cross-entropy", _loss_case(2, 3, 5, 4, seed=11, gamma=0.0),
             points=2),
        Case("gamma = 2, 20% ignored", _loss_case(2, 4, 6, 6, seed=12, ignore=0.2, gamma=2.0),
             points=3),
        Case("per-class alpha", _loss_case(1, 3, 5, 5, seed=13, gamma=2.0,
                                           alpha=[0.25, 1.0, 2.0]), points=2),
        Case("gamma = 5 on confident logits", _loss_case(1, 2, 4, 8, seed=14, gamma=5.0),
             points=2),
        Case("every pixel ignored gives 0", _loss_case(1, 3, 3, 3, seed=15, ignore=1.0),
             points=2),
        Case("batch 3, alpha and 30% ignored",
             _loss_case(3, 4, 3, 7, seed=16, ignore=0.3, gamma=1.5, alpha=[1.0, 0.5, 2.0, 3.0]),
             points=2, hidden=True),
    ],
)

SCALE_CROP = Exercise(
    id="ch07.scale_crop",
    function="scale_crop",
    reference=scale_crop,
    summary=_pair,
    rtol=1e-5,
    atol=1e-5,
    task=(
        "Return the image and mask scaled by `scale`, padded to at least `crop` pixels and "
        "cropped at (top, left): the random scale-and-crop augmentation of the segmentation "
        "papers, written for fixed parameters so it can be checked. The mask must only ever "
        "hold labels that were there, or 255."
    ),
    hint=(
        "An image and its mask must move together, but they are not the same kind of data: "
        "interpolating class indices invents classes, and padded mask pixels must not be "
        "learnt from."
    ),
    hints=(
        "Which quantity goes wrong: the mask's interpolation (nearest, never bilinear), the new "
        "size (the input's size times scale, rounded, at least 1), the padding (only at the "
        "bottom and right; 0 for the image, 255 for the mask), or what is cropped (the scaled, "
        "padded pair).",
        "Worked example: a 20x18 image at scale 0.5 becomes 10x9; with crop 16 it is padded by "
        "6 rows and 7 columns; the crop at (0, 0) is 16x16 and its last 7 mask columns are 255.",
    ),
    answer_fragments=("value=255", "mode=\"nearest\")[0, 0]"),
    cases=[
        Case("scale 1: a plain crop", _crop_case(3, 20, 24, 4, 1.0, 16, 2, 5, seed=21),
             points=2),
        Case("scale 2, crop in the middle", _crop_case(3, 11, 13, 3, 2.0, 16, 4, 7, seed=22),
             points=2),
        Case("scale 0.5 needs padding", _crop_case(3, 20, 18, 5, 0.5, 16, 0, 0, seed=23),
             points=3),
        Case("odd size 37x23, scale 0.75", _crop_case(3, 37, 23, 3, 0.75, 17, 6, 0, seed=24),
             points=2),
        Case("scale 1.5, crop at the bottom-right corner",
             _crop_case(1, 10, 14, 2, 1.5, 12, 3, 9, seed=25), points=2),
        Case("scale 0.6, pad in one direction only",
             _crop_case(3, 30, 12, 4, 0.6, 15, 3, 0, seed=26), points=2, hidden=True),
        Case("a 3x3 image at scale 0.2 keeps one pixel", _crop_case(2, 3, 3, 2, 0.2, 4, 0, 0,
                                                                     seed=27), hidden=True),
    ],
)

EXERCISES = [POLY_LR, DICE_LOSS, FOCAL_LOSS, SCALE_CROP]

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
    hint=(
        "return base_lr * (1 - min(it, max_it) / max_it) ** power\n"
        "The power applies to (1 - it/max_it), not to it/max_it; at it = 0 the rate is base_lr "
        "and at it = max_it it is 0. After max_it it stays 0 (clamp), never negative or complex."
    ),
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
    hint=(
        "p = softmax(logits, 1) * valid; g = one_hot(target where valid else 0) * valid; per class "
        "(2*sum(p*g) + smooth) / (sum(p) + sum(g) + smooth) over (N, H, W); 1 - mean.\n"
        "Ignored pixels (255) must leave both sums: zero their probabilities too, not only the "
        "one-hot. Sum over the whole batch (dims 0, 2, 3), then average over all C classes. A "
        "batch with no labelled pixel returns 0 (connected to the graph, e.g. logits.sum() * 0)."
    ),
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
    hint=(
        "log_p = log_softmax(logits, 1) at the true class; loss = -alpha[y] * (1 - exp(log_p)) "
        "** gamma * log_p; mean over labelled pixels.\n"
        "Softmax over the classes, not a sigmoid per class. Gather at a safe index (0 where the "
        "target is 255) and keep only labelled pixels; divide by their number (not by the sum of "
        "alpha). gamma = 0 must equal F.cross_entropy. No labelled pixel: return 0."
    ),
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
    hint=(
        "Resize (image bilinear, mask nearest, size round(H*scale), round(W*scale)), pad bottom/"
        "right to crop (image 0, mask 255), then slice [top:top+crop, left:left+crop].\n"
        "Use F.interpolate(image[None], size, mode='bilinear', align_corners=False) and "
        "mode='nearest' on the mask as float, then .long(): bilinear on a mask invents labels. "
        "The mask's padding is 255 (ignored), not 0 (background). Pad only at the bottom and "
        "right (F.pad(x, (0, pad_w, 0, pad_h))), and crop the padded, scaled pair."
    ),
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
    ],
)

EXERCISES = [POLY_LR, DICE_LOSS, FOCAL_LOSS, SCALE_CROP]

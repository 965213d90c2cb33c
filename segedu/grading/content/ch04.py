"""Chapter 4 exercises (PSPNet): the functions students write in ``04_pspnet.ipynb``.

Each exercise's reference is the implementation in :mod:`segedu.tools.receptive`,
:mod:`segedu.pspnet` or :mod:`segedu.train`. Case inputs are built from seeded generators, so
the student's process and the grader's build the same tensors and modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ...core.sizes import adaptive_pool_regions
from ...pspnet import PyramidPoolingModule, pyramid_pool
from ...train import segmentation_loss
from ..engine.exercise import Case, Exercise, case_generator
from .cases import as_tensor, const, randn

__all__ = ["EXERCISES"]


# --------------------------------------------------------------------------- helpers


def _regions(value: Any) -> list[tuple[int, int]]:
    """Summary: a list of (start, end) pairs of Python ints."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"expected a list of (start, end) pairs, got {type(value).__name__}")
    pairs = []
    for item in value:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise TypeError(f"each cell must be a (start, end) pair, got {item!r}")
        for v in item:
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"start and end must be Python ints, got {v!r} "
                                f"({type(v).__name__}); use // and math.ceil, or -(-a // b)")
        pairs.append((item[0], item[1]))
    return pairs


def _pyramid(batch: int, channels: int, size: tuple[int, int], bins: tuple[int, ...],
             seed: int) -> Callable[[], tuple]:
    """(x, bins, stages): a seeded feature map and the seeded stages of a pyramid pooling module
    (1x1 conv + BN with seeded running statistics + ReLU; the 1x1 bin has a bias and no BN),
    in eval mode."""
    def make() -> tuple:
        module = PyramidPoolingModule(channels, bins, reduction_channels=2)
        state = {}
        for i, (key, value) in enumerate(sorted(module.state_dict().items())):
            if key.endswith("num_batches_tracked"):
                state[key] = value
            elif key.endswith("running_var"):
                state[key] = randn(*value.shape, seed=seed + i).abs() + 0.5
            else:
                state[key] = randn(*value.shape, seed=seed + i) * 0.5
        module.load_state_dict(state)
        module.eval()
        return randn(batch, channels, *size, seed=seed + 100), bins, module.stages
    return make


def deep_supervision_loss(outputs: dict[str, torch.Tensor], target: torch.Tensor,
                          aux_weight: float = 0.4) -> torch.Tensor:
    """The exercise's signature for :func:`segedu.train.segmentation_loss` (positional weight)."""
    return segmentation_loss(outputs, target, aux_weight=aux_weight)


def _outputs(batch: int, classes: int, size: tuple[int, int], *, aux: bool = True,
             ignore: int = 0, aux_weight: float | None = None, seed: int) -> Callable[[], tuple]:
    """({"out", "aux"} logits, a target with ``ignore`` rows of 255[, aux_weight])."""
    def make() -> tuple:
        outputs = {"out": randn(batch, classes, *size, seed=seed)}
        if aux:
            outputs["aux"] = randn(batch, classes, *size, seed=seed + 1)
        generator = case_generator(seed + 2)
        target = torch.randint(0, classes, (batch, *size), generator=generator)
        target[:, :ignore] = 255
        return (outputs, target) if aux_weight is None else (outputs, target, aux_weight)
    return make


# --------------------------------------------------------------------------- exercises

ADAPTIVE_POOL_REGIONS = Exercise(
    id="ch04.adaptive_pool_regions",
    function="adaptive_pool_regions",
    reference=adaptive_pool_regions,
    summary=_regions,
    hint=(
        "Cell i of b covers [floor(i * n / b), ceil((i + 1) * n / b)).\n"
        "Integer arithmetic only: floor(a / b) is a // b and ceil(a / b) is -(-a // b). "
        "Return a list of b (start, end) tuples, end exclusive. When b does not divide n the "
        "cells overlap; when b > n they repeat pixels: that is correct, not a bug."
    ),
    cases=[
        Case("7 pixels, 3 bins (overlapping cells)", const(7, 3)),
        Case("60 pixels, 6 bins (the paper's 473 input: cells of 10)", const(60, 6)),
        Case("8 pixels, 6 bins (a 64x64 input)", const(8, 6), points=2),
        Case("4 pixels, 6 bins (more bins than pixels)", const(4, 6), points=2),
        Case("10 pixels, 1 bin (global pooling)", const(10, 1)),
        Case("13 pixels, 3 bins", const(13, 3)),
        Case("9 pixels, 6 bins", const(9, 6), hidden=True),
        Case("5 pixels, 7 bins", const(5, 7), hidden=True),
        Case("1 pixel, 6 bins", const(1, 6), hidden=True),
    ],
)

PYRAMID_POOL = Exercise(
    id="ch04.pyramid_pool",
    function="pyramid_pool",
    reference=pyramid_pool,
    summary=as_tensor,
    rtol=1e-4,
    atol=1e-5,
    hint=(
        "For each bin: F.adaptive_avg_pool2d(x, b), then the stage, then F.interpolate back "
        "to x's size (bilinear, align_corners=False); finally torch.cat([x, *levels], dim=1).\n"
        "The input comes first in the concatenation, then the levels in the order of `bins`. "
        "Upsample to x.shape[-2:] exactly (not by a scale factor: 7 is not a multiple of 3). "
        "A 1x1 level upsampled is constant over the map."
    ),
    cases=[
        Case("12x12 map, bins 1, 2, 3, 6 (all divide)", _pyramid(1, 4, (12, 12), (1, 2, 3, 6),
                                                                  seed=1), points=2),
        Case("7x7 map, bins 2, 3, 6 (none divides)", _pyramid(1, 4, (7, 7), (2, 3, 6), seed=2),
             points=3),
        Case("13x9 map, bins 1, 2, 3, 6", _pyramid(1, 3, (13, 9), (1, 2, 3, 6), seed=3),
             points=3),
        Case("batch 2, 8x10 map", _pyramid(2, 4, (8, 10), (1, 2, 3, 6), seed=4), points=2),
        Case("4x4 map: the 6-bin repeats pixels", _pyramid(1, 2, (4, 4), (1, 2, 3, 6), seed=5),
             points=2),
        Case("batch 3, 5x11 map, bins 1, 3, 5", _pyramid(3, 4, (5, 11), (1, 3, 5), seed=6),
             points=3, hidden=True),
        Case("1x1 map", _pyramid(2, 3, (1, 1), (1, 2, 3, 6), seed=7), points=2, hidden=True),
    ],
)

DEEP_SUPERVISION_LOSS = Exercise(
    id="ch04.deep_supervision_loss",
    function="deep_supervision_loss",
    reference=deep_supervision_loss,
    summary=as_tensor,
    rtol=1e-5,
    atol=1e-5,
    hint=(
        "cross_entropy(out, target, ignore_index=255) + aux_weight * the same on outputs['aux'] "
        "(only if there is one).\n"
        "Pixels labelled 255 count in neither term. A model built without the auxiliary head "
        "returns only 'out': then the loss is the main term alone. Return a scalar tensor."
    ),
    cases=[
        Case("main and auxiliary outputs", _outputs(1, 3, (5, 7), seed=1), points=2),
        Case("no auxiliary head", _outputs(1, 3, (6, 6), aux=False, seed=2)),
        Case("ignored pixels (255)", _outputs(2, 4, (9, 5), ignore=3, seed=3), points=2),
        Case("aux_weight 0", _outputs(1, 3, (4, 4), aux_weight=0.0, seed=4)),
        Case("aux_weight 1, batch 2, 11x6, ignored pixels",
             _outputs(2, 5, (11, 6), ignore=2, aux_weight=1.0, seed=5), points=2, hidden=True),
    ],
)

EXERCISES = [ADAPTIVE_POOL_REGIONS, PYRAMID_POOL, DEEP_SUPERVISION_LOSS]

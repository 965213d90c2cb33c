"""Chapter 4 exercises (PSPNet): the functions students write in ``04_pspnet.ipynb``.

Each exercise's reference is the implementation in :mod:`segedu.core.sizes`,
:mod:`segedu.pspnet` or :mod:`segedu.train`. Case inputs are built from seeded generators, so
the student's process and the grader's build the same tensors and modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ...core.sizes import adaptive_pool_regions, resnet_feature_size
from ...pspnet import PyramidPoolingModule, pyramid_pool
from ...train import segmentation_loss
from ..engine.exercise import Case, Exercise, case_generator
from .cases import as_tensor, bins_tile, const, every_failure, randn

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
    task=(
        "Return, for each of `bins` adaptive-pooling cells, the input pixels it averages: "
        "PSPNet's pyramid pools to 1, 2, 3 and 6 bins whatever the map's size, and this is "
        "what a bin means when the bins do not divide the map."
    ),
    hint=(
        "Adaptive pooling spreads the cells evenly over the map: cell i starts where an even "
        "split would start it (rounded towards the map's start) and ends where an even split "
        "would end it (rounded towards the end), so neighbouring cells may overlap."
    ),
    hints=(
        "Which quantity goes wrong: the rounding (down for the start, up for the end), "
        "floating-point division (use integer arithmetic), or the end (exclusive).",
        "Worked example: 7 pixels, 3 bins: [(0, 3), (2, 5), (4, 7)]; 4 pixels, 6 bins: "
        "[(0, 1), (0, 2), (1, 3), (2, 3), (2, 4), (3, 4)].",
    ),
    answer_fragments=("(i * size) // bins", "-((-(i + 1) * size) // bins)"),
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
    task=(
        "Return the pyramid pooling module's output (Sec. 3.3, Fig. 3): the feature map joined "
        "with its context pooled at several scales, each brought back to the map's size, so "
        "that every pixel sees the whole scene."
    ),
    hint=(
        "Fig. 3(c): for each pyramid level, pool the map to that many bins, reduce it with the "
        "level's stage, bring it back to the map's size, and keep it. The module's output "
        "holds the original features and every level side by side."
    ),
    hints=(
        "Which quantity goes wrong: the upsampled size (exactly the map's, not a scale "
        "factor), the interpolation (bilinear, without aligned corners), the order of the "
        "concatenation (the input first, then the levels in the order of bins), or using the "
        "wrong stage for a level.",
        "Worked example: a (1, 4, 12, 12) map with bins (1, 2, 3, 6) and stages to 2 channels "
        "each: levels (1, 2, 1, 1), (1, 2, 2, 2), (1, 2, 3, 3), (1, 2, 6, 6), each upsampled to "
        "12 x 12; the output is (1, 4 + 4 * 2, 12, 12).",
    ),
    answer_fragments=("torch.cat(levels, dim=1)", "F.adaptive_avg_pool2d(x, b)"),
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
    task=(
        "Return PSPNet's training loss with deep supervision (Sec. 3.4): the main head's loss "
        "plus a weighted loss of the auxiliary head, which helps the deep backbone learn."
    ),
    hint=(
        "Both heads are trained on the same labels with the same per-pixel loss; the "
        "auxiliary one counts less, by aux_weight. Unlabelled pixels (255) count in neither."
    ),
    hints=(
        "Which quantity goes wrong: the weight (it multiplies the auxiliary term only), the "
        "ignored label (255), or a model without an auxiliary head (then only the main term).",
        "Worked example: with main loss 1.2 and auxiliary loss 1.5, aux_weight 0.4 gives "
        "1.2 + 0.6 = 1.8.",
    ),
    answer_fragments=("aux_weight * ",),
    cases=[
        Case("main and auxiliary outputs", _outputs(1, 3, (5, 7), seed=1), points=2),
        Case("no auxiliary head", _outputs(1, 3, (6, 6), aux=False, seed=2)),
        Case("ignored pixels (255)", _outputs(2, 4, (9, 5), ignore=3, seed=3), points=2),
        Case("aux_weight 0", _outputs(1, 3, (4, 4), aux_weight=0.0, seed=4)),
        Case("aux_weight 1, batch 2, 11x6, ignored pixels",
             _outputs(2, 5, (11, 6), ignore=2, aux_weight=1.0, seed=5), points=2, hidden=True),
    ],
)

def choose_psp_input(low: int, high: int, bins: tuple[int, ...], output_stride: int) -> int:
    """A reference answer of the open-ended exercise: the first input size in [low, high]
    whose feature map every bin divides."""
    for size in range(low, high + 1):
        if all(resnet_feature_size(size, output_stride) % b == 0 for b in bins):
            return size
    raise ValueError("no size fits")


def _psp_outcome(low: int, high: int, bins: tuple[int, ...],
                 output_stride: int) -> Callable[[Any], dict[str, bool]]:
    """Summary of ``choose_psp_input``, measured: the backbone's map and the bins' cells."""
    def summary(size: Any) -> dict[str, bool]:
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"expected an int input size, got {type(size).__name__}")
        fits = 32 <= size <= 4096 and bins_tile(resnet_feature_size(size, output_stride), bins)
        return {"inside [low, high]": low <= size <= high,
                "every bin's cells tile the feature map without overlap": fits}
    return summary


CHOOSE_PSP_INPUT = Exercise(
    id="ch04.choose_psp_input",
    function="choose_psp_input",
    reference=choose_psp_input,
    judge=every_failure,
    time_limit_s=2.0,
    task=(
        "Open-ended: choose an input size between low and high for which every pyramid bin "
        "splits the backbone's feature map into equal cells that do not overlap (PSPNet is "
        "'sensitive to input resolution'); the grader measures the cells of your size."
    ),
    hint=(
        "The bins see the backbone's feature map, not the image: first work out how large "
        "that map is for a candidate input size and output stride, then ask when every bin "
        "cuts it into equal cells. Your adaptive_pool_regions shows the cells."
    ),
    hints=(
        "Which quantity goes wrong: the feature map's size (the stem and each strided stage "
        "round up), or the condition on it (every bin must divide it, so their least common "
        "multiple must).",
        "Worked example: the paper's 473 x 473 crop at output stride 8 gives a 60 x 60 map, "
        "which 1, 2, 3 and 6 all divide; 520 gives 65, which only 1 divides.",
    ),
    answer_fragments=(),
    cases=[
        Case("400 to 500, bins 1, 2, 3, 6, stride 8", const(400, 500, (1, 2, 3, 6), 8),
             summary=_psp_outcome(400, 500, (1, 2, 3, 6), 8)),
        Case("500 to 560, bins 1, 2, 3, 6, stride 8", const(500, 560, (1, 2, 3, 6), 8),
             points=2, summary=_psp_outcome(500, 560, (1, 2, 3, 6), 8)),
        Case("200 to 280, bins 1, 2, 4, stride 16", const(200, 280, (1, 2, 4), 16),
             summary=_psp_outcome(200, 280, (1, 2, 4), 16)),
        Case("600 to 700, bins 1, 2, 3, 6, stride 16", const(600, 700, (1, 2, 3, 6), 16),
             hidden=True, summary=_psp_outcome(600, 700, (1, 2, 3, 6), 16)),
    ],
)

EXERCISES = [ADAPTIVE_POOL_REGIONS, PYRAMID_POOL, DEEP_SUPERVISION_LOSS, CHOOSE_PSP_INPUT]

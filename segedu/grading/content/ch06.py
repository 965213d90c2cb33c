"""Chapter 6 exercises (RefineNet): the functions students write in ``06_refinenet.ipynb``.

Each exercise's reference is the implementation in :mod:`segedu.refinenet`. Case inputs are
built from seeded generators, so the student's process and the grader's build the same tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ...refinenet import ResidualConvUnit, chained_residual_pooling, multi_resolution_fusion
from ..engine.exercise import Case, Exercise
from .cases import (
    as_tensor,
    const,
    every_failure,
    module_summary,
    randn,
    seeded_weights,
    state_shapes,
)

__all__ = ["EXERCISES"]


# --------------------------------------------------------------------------- helpers


def _conv(cin: int, cout: int, kernel_size: int, *, bias: bool, seed: int) -> nn.Conv2d:
    """A conv with seeded weights (scaled by 1/sqrt(fan_in), so sums stay of order 1)."""
    conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=bias)
    with torch.no_grad():
        conv.weight.copy_(randn(*conv.weight.shape, seed=seed) / (cin * kernel_size**2) ** 0.5)
        if bias:
            conv.bias.copy_(randn(cout, seed=seed + 1))
    return conv


def _fusion(shapes: list[tuple[int, ...]], strides: list[int], out_channels: int,
            kernel_size: int = 3, seed: int = 0) -> Callable[[], tuple]:
    """(paths, convs, strides): seeded paths of the given (N, C, H, W) shapes and convs to
    ``out_channels``."""
    def make() -> tuple:
        paths = [randn(*shape, seed=seed + 10 * i) for i, shape in enumerate(shapes)]
        convs = [_conv(shape[1], out_channels, kernel_size, bias=False, seed=seed + 10 * i + 5)
                 for i, shape in enumerate(shapes)]
        return paths, convs, list(strides)
    return make


def _crp(shape: tuple[int, ...], stages: int, kernel_size: int = 1, seed: int = 0,
         negate: bool = False) -> Callable[[], tuple]:
    """(x, convs): a seeded map and ``stages`` seeded convs without bias. ``negate`` makes the
    first conv map positive inputs to negative outputs (where the pool's padding shows)."""
    def make() -> tuple:
        channels = shape[1]
        x = randn(*shape, seed=seed)
        convs = [_conv(channels, channels, kernel_size, bias=False, seed=seed + 1 + i)
                 for i in range(stages)]
        if negate and convs:
            with torch.no_grad():
                convs[0].weight.copy_(-convs[0].weight.abs())
        return x, convs
    return make


_RCU_PARTS = ("two convs named conv1 and conv2; conv1 with a bias, conv2 without; "
              "no BatchNorm")


def _structure(channels: int, kernel_size: int = 3) -> Callable[[Any], Any]:
    """Summary: the parameter shapes, by name."""
    return module_summary(ResidualConvUnit, (channels, kernel_size), _RCU_PARTS)


def _forward(channels: int, kernel_size: int, size: tuple[int, int], batch: int,
             seed: int) -> Callable[[Any], Any]:
    """Summary: load seeded weights by name, run ``unit(x)``; also return x afterwards (an
    in-place ReLU on the input destroys the identity branch)."""
    def run(unit: nn.Module) -> dict[str, torch.Tensor]:
        unit.load_state_dict(seeded_weights(state_shapes(unit), seed, bias_fan_in=4))
        unit.eval()
        x = randn(batch, channels, *size, seed=seed + 100)
        out = as_tensor(unit(x), returned_by="forward(x)")
        return {"output": out, "input after the call": x}
    return module_summary(ResidualConvUnit, (channels, kernel_size), _RCU_PARTS, run)


# --------------------------------------------------------------------------- exercises

RESIDUAL_CONV_UNIT = Exercise(
    id="ch06.residual_conv_unit",
    function="ResidualConvUnit",
    reference=ResidualConvUnit,
    task=(
        "Write RefineNet's residual conv unit (Sec. 3.2, Fig. 3b): the adaptive block that "
        "fine-tunes pretrained features for segmentation while keeping an identity path."
    ),
    hint=(
        "Fig. 3b: two pre-activated convolutions on a residual branch, added to the unit's "
        "input. The input itself must reach the sum unchanged."
    ),
    hints=(
        "Which quantity goes wrong: the identity (an in-place ReLU overwrites the input that "
        "the sum needs), the padding (the output must keep the input's size), the biases "
        "(conv1 has one, conv2 none, as in the released model), or extra layers (no "
        "BatchNorm).",
        "Worked example: on x, compute ReLU(x), conv1, ReLU, conv2, then add x; a "
        "(1, 8, 7, 9) input gives a (1, 8, 7, 9) output, and x is unchanged after the call.",
    ),
    answer_fragments=("self.conv1(F.relu(x))", "self.conv2(F.relu(out))"),
    cases=[
        Case("ResidualConvUnit(8): parameter shapes", const(8), summary=_structure(8)),
        Case("ResidualConvUnit(8) on a 7x9 map", const(8), points=2,
             summary=_forward(8, 3, (7, 9), 1, seed=10)),
        Case("ResidualConvUnit(4), batch 2, 5x3 map", const(4), points=2,
             summary=_forward(4, 3, (5, 3), 2, seed=20)),
        Case("ResidualConvUnit(6, kernel_size=5) on 11x6", const(6, 5), points=2,
             summary=_forward(6, 5, (11, 6), 1, seed=30)),
        Case("ResidualConvUnit(3, kernel_size=1): parameter shapes", const(3, 1),
             summary=_structure(3, 1), hidden=True),
        Case("ResidualConvUnit(16), batch 2, 13x4 map", const(16), points=2,
             summary=_forward(16, 3, (13, 4), 2, seed=40), hidden=True),
    ],
)

MULTI_RESOLUTION_FUSION = Exercise(
    id="ch06.multi_resolution_fusion",
    function="multi_resolution_fusion",
    reference=multi_resolution_fusion,
    summary=as_tensor,
    rtol=1e-5,
    atol=1e-5,
    task=(
        "Return RefineNet's multi-resolution fusion (Sec. 3.2, Fig. 3c): paths of different "
        "resolutions adapted by their own convolution, brought to the finest resolution and "
        "summed."
    ),
    hint=(
        "Fig. 3c: each path is first adapted, then brought to the finest path's resolution, "
        "and the results are summed. Which path is the finest, and what size exactly must the "
        "others reach?"
    ),
    hints=(
        "Which quantity goes wrong: the finest path (the smallest stride, wherever it is in "
        "the list), the target size (the finest path's exact size, not a multiple of a "
        "coarse one), the order (convolve before upsampling), or the factor for each path.",
        "Worked example: paths 17 x 12 (stride 4) and 9 x 6 (stride 8): convolve both, "
        "upsample the second by 2 to 17 x 12, sum.",
    ),
    answer_fragments=("stride // finest)",),
    cases=[
        Case("two paths: 17x12 (stride 4) and 9x6 (stride 8)",
             _fusion([(1, 3, 17, 12), (1, 5, 9, 6)], [4, 8], 3, seed=1), points=2),
        Case("even sizes: 16x16 and 8x8",
             _fusion([(1, 4, 16, 16), (1, 4, 8, 8)], [8, 16], 2, seed=2)),
        Case("the finest path second: 4x5 (stride 32) and 7x10 (stride 16)",
             _fusion([(1, 6, 4, 5), (1, 3, 7, 10)], [32, 16], 3, seed=3), points=2),
        Case("three paths, strides 8, 16, 32: 13x19, 7x10, 4x5",
             _fusion([(1, 2, 13, 19), (1, 3, 7, 10), (1, 4, 4, 5)], [8, 16, 32], 2, seed=4),
             points=2),
        Case("one path: just the conv", _fusion([(2, 3, 5, 7)], [4], 4, seed=5)),
        Case("a 4x jump, batch 2: 25x38 (stride 4) and 7x10 (stride 16)",
             _fusion([(2, 2, 25, 38), (2, 3, 7, 10)], [4, 16], 2, seed=6), points=2),
        Case("four paths, 1x1 convs: 33x17 down to 5x3",
             _fusion([(1, 2, 33, 17), (1, 2, 17, 9), (1, 3, 9, 5), (1, 4, 5, 3)],
                     [4, 8, 16, 32], 2, kernel_size=1, seed=7), points=2, hidden=True),
        Case("batch 2, the coarse path first: 3x2 (stride 32) and 5x3 (stride 16)",
             _fusion([(2, 4, 3, 2), (2, 2, 5, 3)], [32, 16], 2, seed=8), points=2,
             hidden=True),
    ],
)

CHAINED_RESIDUAL_POOLING = Exercise(
    id="ch06.chained_residual_pooling",
    function="chained_residual_pooling",
    reference=chained_residual_pooling,
    summary=as_tensor,
    rtol=1e-5,
    atol=1e-5,
    task=(
        "Return RefineNet's chained residual pooling (Sec. 3.2, Fig. 3d): context gathered "
        "from ever larger regions by a chain of pooling blocks, each added to a running sum."
    ),
    hint=(
        "Fig. 3d: one non-linearity first; then each pooling block works on the previous "
        "block's output (that is the chain), and every block's output joins a running sum "
        "that starts from the input itself."
    ),
    hints=(
        "Which quantity goes wrong: what each block pools (the previous block's output, not "
        "the input), the running sum (it starts with the ReLU's output), the pooling's size "
        "(5 x 5, stride 1, padded to keep the size; its padding must never win a max), or "
        "the order of the given convs.",
        "Worked example: with two stages, out = r + c1(p(r)) + c2(p(c1(p(r)))) where r = "
        "ReLU(x) and p the 5 x 5 pool.",
    ),
    answer_fragments=("total = total + top", "top = conv(F.max_pool2d(top"),
    cases=[
        Case("no stages: just the ReLU", _crp((1, 2, 6, 5), 0, seed=1)),
        Case("one stage, 1x1 conv, 9x7", _crp((1, 3, 9, 7), 1, seed=2), points=2),
        Case("two stages (the paper), 3x3 convs, 7x5", _crp((1, 2, 7, 5), 2, kernel_size=3,
                                                            seed=3), points=2),
        Case("four stages (the released model), 11x13", _crp((1, 2, 11, 13), 4, seed=4),
             points=2),
        Case("negative stage output: the pool's padding is -inf", _crp((1, 2, 5, 6), 2, seed=5,
                                                                        negate=True), points=2),
        Case("a 1x1 map", _crp((2, 3, 1, 1), 2, seed=6)),
        Case("batch 2, 4 stages of 3x3 convs, 15x4", _crp((2, 4, 15, 4), 4, kernel_size=3,
                                                         seed=7), points=2, hidden=True),
        Case("three stages, negative, 3x9", _crp((1, 3, 3, 9), 3, seed=8, negate=True),
             points=2, hidden=True),
    ],
)

def choose_crp_stages(size: int) -> int:
    """A reference answer of the open-ended exercise: the fewest chained 5x5 pooling stages
    that carry every corner of a ``size`` map to its centre."""
    centre = (size - 1) // 2
    return -(-max(centre, size - 1 - centre) // 2)


def _reaches_centre(size: int, stages: int) -> bool:
    """Run chained residual pooling with identity 1x1 convs on an impulse in each corner:
    does the centre's output see all four?"""
    if stages < 0 or stages > 64:
        return False
    x = torch.zeros(4, 1, size, size)
    for i, (r, c) in enumerate(((0, 0), (0, -1), (-1, 0), (-1, -1))):
        x[i, 0, r, c] = 1.0
    identity = [nn.Conv2d(1, 1, 1, bias=False) for _ in range(stages)]
    for conv in identity:
        nn.init.ones_(conv.weight)
    centre = (size - 1) // 2
    return bool((chained_residual_pooling(x, identity)[:, 0, centre, centre] > 0).all())


def _stages_outcome(size: int) -> Callable[[Any], dict[str, bool]]:
    """Summary of ``choose_crp_stages(size)``, measured with chained residual pooling."""
    def summary(stages: Any) -> dict[str, bool]:
        if isinstance(stages, bool) or not isinstance(stages, int):
            raise TypeError(f"expected an int number of stages, got {type(stages).__name__}")
        return {"the centre sees all four corners": _reaches_centre(size, stages),
                "one stage fewer would not": not _reaches_centre(size, stages - 1)}
    return summary


CHOOSE_CRP_STAGES = Exercise(
    id="ch06.choose_crp_stages",
    function="choose_crp_stages",
    reference=choose_crp_stages,
    judge=every_failure,
    time_limit_s=2.0,
    task=(
        "Open-ended: choose the fewest chained residual pooling stages (5 x 5 max-pools, "
        "Fig. 3d) with which the centre of a size x size map gathers context from all four "
        "corners; the grader runs the chain on your choice and on one stage fewer."
    ),
    hint=(
        "Each stage pools the previous stage's output, so the region a stage sees grows with "
        "every stage. How far does one 5 x 5 pool reach, and how far is the farthest corner "
        "from the centre pixel?"
    ),
    hints=(
        "Which quantity goes wrong: the distance (from the centre pixel to the farthest "
        "corner along one axis; for an even size one side is a pixel longer), or the reach "
        "per stage (a 5 x 5 window reaches 2 pixels each way).",
        "Worked example: a 9 x 9 map: centre 4, farthest corner 4 pixels away along each "
        "axis, 2 per stage: 2 stages; 1 stage does not reach.",
    ),
    answer_fragments=(),
    cases=[
        Case("9x9", const(9), summary=_stages_outcome(9)),
        Case("17x17", const(17), summary=_stages_outcome(17)),
        Case("12x12 (even)", const(12), summary=_stages_outcome(12)),
        Case("10x10 (even: the far side is a pixel longer)", const(10), points=2,
             summary=_stages_outcome(10)),
        Case("33x33", const(33), hidden=True, summary=_stages_outcome(33)),
        Case("20x20 (even)", const(20), hidden=True, summary=_stages_outcome(20)),
    ],
)

EXERCISES = [RESIDUAL_CONV_UNIT, MULTI_RESOLUTION_FUSION, CHAINED_RESIDUAL_POOLING,
             CHOOSE_CRP_STAGES]

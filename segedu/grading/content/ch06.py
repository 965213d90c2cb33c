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
from .cases import as_tensor, const, module_summary, randn, seeded_weights, state_shapes

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
    hint=(
        "forward: x + conv2(relu(conv1(relu(x)))), with F.relu (not in place) and padding "
        "kernel_size // 2.\n"
        "Fig. 3b: ReLU, conv, ReLU, conv, then add the input. conv1 = Conv2d(channels, "
        "channels, kernel_size, padding=kernel_size // 2) with a bias, conv2 the same without "
        "one (bias=False), as in the released model; no BatchNorm. An in-place ReLU on x "
        "(nn.ReLU(inplace=True) or x.relu_()) overwrites the identity branch: the grader "
        "checks that x is unchanged after the call."
    ),
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
    hint=(
        "Convolve each path, then upsample_aligned(y, size_of_finest, stride // finest_stride), "
        "then sum.\n"
        "The finest path is the one with the smallest stride (it need not come first); take its "
        "exact H, W as the target size, never 2x the coarse size. Convolve *before* upsampling "
        "(Fig. 3c): the other order gives different numbers. A path at the finest stride is "
        "upsampled by factor 1 (unchanged)."
    ),
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
    hint=(
        "x = relu(x); total = top = x; per conv: top = conv(max_pool2d(top, 5, stride=1, "
        "padding=2)); total = total + top.\n"
        "Fig. 3d: one ReLU first, and it is part of the sum. Each stage pools the previous "
        "*stage's* output (the chain), not the input, and every stage is added to the running "
        "total. 5x5 with stride 1 needs padding 2 to keep the size; F.max_pool2d pads with "
        "-inf, so a negative map is not clipped at 0 by the border. Use the convs you are "
        "given, in order."
    ),
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

EXERCISES = [RESIDUAL_CONV_UNIT, MULTI_RESOLUTION_FUSION, CHAINED_RESIDUAL_POOLING]

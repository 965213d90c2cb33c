"""Chapter 3 exercises (U-Net): the functions students write in ``03_unet.ipynb``.

Each exercise's reference is the implementation in :mod:`segedu.unet`. Case inputs are built
from seeded generators, so the student's process and the grader's build the same tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ...data import TouchingCells
from ...unet import UpBlock, crop_and_concat, unet_output_size, weight_map
from ..engine.exercise import Case, Exercise
from .cases import (
    as_int,
    as_tensor,
    const,
    module_summary,
    randn,
    seeded_weights,
    state_shapes,
)

__all__ = ["EXERCISES"]


# --------------------------------------------------------------------------- helpers


def _maps(skip: tuple[int, ...], x: tuple[int, ...], seed: int) -> Callable[[], tuple]:
    return lambda: (randn(*skip, seed=seed), randn(*x, seed=seed + 1))


def _instances(*cells: tuple[int, int, int, int], size: tuple[int, int] = (24, 24),
               w0: float = 10.0, sigma: float = 5.0) -> Callable[[], tuple]:
    """An instance mask with rectangular cells (top, bottom, left, right), ids 1, 2, ..."""
    def make() -> tuple:
        ids = torch.zeros(size, dtype=torch.long)
        for k, (top, bottom, left, right) in enumerate(cells, start=1):
            ids[top:bottom, left:right] = k
        return ids, w0, sigma
    return make


def _cells_sample(index: int, w0: float = 10.0, sigma: float = 5.0) -> Callable[[], tuple]:
    return lambda: (TouchingCells("val", size=48, length=index + 1).instances(index), w0, sigma)


_UP_BLOCK_PARTS = "name the parts self.up and self.conv = DoubleConv(...)"


def _structure(in_channels: int, out_channels: int) -> Callable[[Any], Any]:
    """Summary: the parameter shapes, by name (checks the channel counts)."""
    return module_summary(UpBlock, (in_channels, out_channels), _UP_BLOCK_PARTS)


def _forward(in_channels: int, out_channels: int, x_size: tuple[int, int],
             skip_size: tuple[int, int], batch: int, seed: int) -> Callable[[Any], Any]:
    """Summary: load seeded weights by name, run ``block(x, skip)`` on seeded maps."""
    def run(block: nn.Module) -> torch.Tensor:
        block.load_state_dict(seeded_weights(state_shapes(block), seed, bias_fan_in=10))
        block.eval()
        x = randn(batch, in_channels, *x_size, seed=seed + 100)
        skip = randn(batch, out_channels, *skip_size, seed=seed + 101)
        return as_tensor(block(x, skip), returned_by="forward(x, skip)")
    return module_summary(UpBlock, (in_channels, out_channels), _UP_BLOCK_PARTS, run)


# --------------------------------------------------------------------------- exercises

UNET_OUTPUT_SIZE = Exercise(
    id="ch03.unet_output_size",
    function="unet_output_size",
    reference=unet_output_size,
    summary=as_int,
    hint=(
        "Each level: two valid 3x3 convs (-4), then a 2x2 max-pool (// 2); at the bottom -4; "
        "then each level up: x2, -4.\n"
        "Go down `depth` times (conv, conv, pool), do the bottom's two convs, come back up "
        "`depth` times (up-convolution doubles, then two convs). A valid 3x3 conv turns n into "
        "n - 2. Return a Python int."
    ),
    cases=[
        Case("572, depth 4 (the paper: 388)", const(572, 4)),
        Case("188, depth 4 (the smallest)", const(188, 4)),
        Case("508, depth 4", const(508, 4)),
        Case("92, depth 3", const(92, 3)),
        Case("44, depth 2", const(44, 2)),
        Case("18, depth 1", const(18, 1)),
        Case("1084, depth 4", const(1084, 4), hidden=True),
        Case("412, depth 5", const(412, 5), hidden=True),
    ],
)

CROP_AND_CONCAT = Exercise(
    id="ch03.crop_and_concat",
    function="crop_and_concat",
    reference=crop_and_concat,
    summary=as_tensor,
    hint=(
        "Crop skip[..., top:top + H, left:left + W] with top = (H_skip - H) // 2, then "
        "torch.cat([cropped, x], dim=1).\n"
        "The skip comes first in the concatenation. When the size difference is odd, floor "
        "division puts the extra row/column at the bottom/right. Height and width are "
        "cropped separately: they may differ."
    ),
    cases=[
        Case("same size (nothing to crop)", _maps((1, 2, 6, 6), (1, 3, 6, 6), seed=1)),
        Case("8x8 skip to 4x4", _maps((1, 2, 8, 8), (1, 2, 4, 4), seed=2)),
        Case("the paper's top level in miniature: 568 -> 392 is 13 -> 9",
             _maps((1, 4, 13, 13), (1, 4, 9, 9), seed=3)),
        Case("odd difference: 9x9 to 4x4", _maps((1, 2, 9, 9), (1, 1, 4, 4), seed=4), points=2),
        Case("non-square, odd: 9x10 to 4x5, batch 2", _maps((2, 3, 9, 10), (2, 2, 4, 5), seed=5),
             points=2),
        Case("odd difference 7x12 to 2x3", _maps((1, 2, 7, 12), (1, 3, 2, 3), seed=6),
             hidden=True),
        Case("batch 3, 11x6 to 8x6", _maps((3, 1, 11, 6), (3, 2, 8, 6), seed=7), hidden=True),
    ],
)

WEIGHT_MAP = Exercise(
    id="ch03.weight_map",
    function="weight_map",
    reference=weight_map,
    summary=as_tensor,
    rtol=1e-4,
    atol=1e-4,
    hint=(
        "w = w_c + w0 * exp(-(d1 + d2)**2 / (2 * sigma**2)) on background pixels, with d1, d2 "
        "the distances to the nearest and second-nearest cell.\n"
        "w_c: N / (2 * N_cell) on cell pixels and N / (2 * N_background) on background "
        "pixels (1 everywhere if one class is missing). The distance from every pixel to "
        "cell k is distance_transform_edt(ids != k); stack them for all cells and take the two "
        "smallest per pixel. No border term with fewer than two cells, none on cell pixels. "
        "Return float32."
    ),
    cases=[
        Case("two cells, a 2-pixel gap", _instances((4, 20, 2, 10), (4, 20, 11, 20))),
        Case("two cells, a 5-pixel gap", _instances((4, 20, 2, 9), (4, 20, 13, 20))),
        Case("three cells", _instances((2, 10, 2, 10), (2, 10, 12, 20), (12, 22, 5, 15)),
             points=2),
        Case("one cell (no border term)", _instances((5, 15, 5, 15))),
        Case("no cell at all", _instances(size=(8, 9))),
        Case("a TouchingCells sample", _cells_sample(0), points=2),
        Case("w0 = 5, sigma = 3", _instances((4, 20, 2, 10), (4, 20, 12, 20), w0=5.0,
                                             sigma=3.0)),
        Case("a TouchingCells sample, w0 = 8, sigma = 4", _cells_sample(3, 8.0, 4.0),
             points=2, hidden=True),
        Case("four cells, non-square image",
             _instances((1, 8, 1, 8), (1, 8, 10, 20), (10, 18, 1, 12), (10, 18, 14, 30),
                        size=(20, 32)), hidden=True),
    ],
)

UP_BLOCK = Exercise(
    id="ch03.up_block",
    function="UpBlock",
    reference=UpBlock,
    hint=(
        "Fig. 1: after the up-convolution the skip is cropped and concatenated; how many "
        "channels does the next conv then see?\n"
        "The outline's block never uses the skip, and its conv expects out_channels although "
        "the concatenation has the skip's out_channels plus the upsampled map's out_channels: "
        "up = ConvTranspose2d(in, out, 2, stride=2), conv = DoubleConv(2 * out, out), and "
        "forward does up, crop_and_concat(skip, x), conv. Keep the names self.up and self.conv: "
        "the grader loads weights by name."
    ),
    cases=[
        Case("UpBlock(16, 8): parameter shapes", const(16, 8), summary=_structure(16, 8)),
        Case("UpBlock(16, 8) on a 6x6 map with a 16x16 skip", const(16, 8), points=2,
             summary=_forward(16, 8, (6, 6), (16, 16), 1, seed=10)),
        Case("UpBlock(12, 4): in != 2 * out", const(12, 4), points=2,
             summary=_forward(12, 4, (5, 7), (14, 18), 2, seed=20)),
        Case("UpBlock(8, 4): odd size difference (skip 15x15)", const(8, 4), points=2,
             summary=_forward(8, 4, (5, 5), (15, 15), 1, seed=30)),
        Case("UpBlock(6, 3): parameter shapes", const(6, 3), summary=_structure(6, 3),
             hidden=True),
        Case("UpBlock(32, 16), batch 2, 4x9 map, 14x24 skip", const(32, 16), points=2,
             summary=_forward(32, 16, (4, 9), (14, 24), 2, seed=40), hidden=True),
    ],
)

EXERCISES = [UNET_OUTPUT_SIZE, CROP_AND_CONCAT, WEIGHT_MAP, UP_BLOCK]

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
from ...unet import UpBlock, crop_and_concat, unet_output_size, valid_input_sizes, weight_map
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
    task=(
        "Return the side of the segmentation U-Net outputs for an input of `size` pixels: "
        "with unpadded convolutions the output is smaller than the input (Fig. 1: 572 in, "
        "388 out), and the overlap-tile strategy depends on knowing by how much."
    ),
    hint=(
        "Follow one side of the image through Fig. 1: down the contracting path, across the "
        "bottom, up the expanding path. Every unpadded 3 x 3 convolution eats a border, every "
        "max-pool halves, every up-convolution doubles."
    ),
    hints=(
        "Which quantity goes wrong: what one valid 3 x 3 conv removes (one pixel on each "
        "side), how many convs each level has (two, also at the bottom), or the number of "
        "levels (depth pools down, depth up-convolutions back).",
        "Worked example (the paper): 572 -> 570 -> 568, pool 284 -> 282 -> 280, pool 140 -> "
        "136, pool 68 -> 64, pool 32 -> 28 (bottom), up 56 -> 52, up 104 -> 100, up 200 -> "
        "196, up 392 -> 388.",
    ),
    answer_fragments=("(n - 4) // 2", "2 * n - 4"),
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
    task=(
        "Return the skip cropped to x's size and joined with x along the channels: U-Net's "
        "copy-and-crop (Fig. 1, grey arrows), which hands the expanding path the detail the "
        "contracting path saw."
    ),
    hint=(
        "The skip is larger than x because unpadded convs shrank x more; cut the skip to x's "
        "size around its centre, so that pixel (i, j) of both means the same place in the "
        "image, then put the two side by side as channels."
    ),
    hints=(
        "Which quantity goes wrong: the offset of the crop (half the size difference; when "
        "the difference is odd the extra row and column go at the bottom and right), the two "
        "axes (crop height and width separately), or the order of the concatenation (the "
        "skip first).",
        "Worked example: a (1, 4, 13, 13) skip and a (1, 4, 9, 9) x: crop rows and columns "
        "2..10 of the skip, return (1, 8, 9, 9). A 9 x 9 skip and a 4 x 4 x: offset 2.",
    ),
    answer_fragments=("torch.cat([cropped, x], dim=1)", "(H_skip - H) // 2"),
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
    task=(
        "Return U-Net's loss weight map for an instance mask (Sec. 3, Eq. 2): weights that "
        "balance the classes and make the thin background gaps between touching cells count "
        "much more, so that the network learns to separate them."
    ),
    hint=(
        "Two terms add up: one that balances how often cell and background pixels occur, and "
        "one that is large on background pixels squeezed between two cells and fades with "
        "their distance to the two nearest cells (Eq. 2)."
    ),
    hints=(
        "Which quantity goes wrong: d1 and d2 (distances to the nearest and second-nearest "
        "*different* cells, measured to each cell separately), where the border term applies "
        "(background only, and only when there are two cells), the class-balance term (from "
        "pixel frequencies; 1 if one class is missing), or the dtype (float32).",
        "Worked example (Eq. 2): w = w_c + w0 * exp(-(d1 + d2)^2 / (2 sigma^2)); with w0 = 10 "
        "and sigma = 5, a background pixel 1 pixel from each of two cells gets w_c + "
        "10 * exp(-4 / 50) = w_c + 9.23.",
    ),
    answer_fragments=("np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))", "np.sort(dist, axis=0)[:2]"),
    cases=[
        Case("two cells, a 2-pixel gap", _instances((4, 20, 2, 10), (4, 20, 11, 20))),
        Case("two cells, a 5-pixel gap", _instances((4, 20, 2, 9), (4, 20, 13, 20))),
        Case("three cells", _instances((2, 10, 2, 10), (2, 10, 12, 20), (12, 22, 5, 15)),
             points=2),
        Case("one cell (no border term)", _instances((5, 15, 5, 15))),
        Case("no cell at all", _instances(size=(8, 9))),
        Case("every pixel a cell (no background to balance)", _instances((0, 8, 0, 9), size=(8, 9)),
             hidden=True),
        Case("a single one-pixel cell", _instances((3, 4, 3, 4), size=(6, 7)), hidden=True),
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
    task=(
        "Fix the outline's U-Net up block so that it does what Fig. 1's expanding path does "
        "with the skip it is given; keep the part names, the grader loads weights by them."
    ),
    hint=(
        "Fig. 1: after each up-convolution the expanding path receives the cropped feature "
        "map of the same level. Does the outline's block use its skip at all? And how many "
        "channels does the convolution after that step then see?"
    ),
    hints=(
        "Which quantity goes wrong: the input channels of the convolution after the "
        "concatenation (it sees the skip's channels and the upsampled map's), the order of "
        "forward's steps (up, then copy-and-crop, then convs), or the names (self.up, "
        "self.conv).",
        "Worked example: UpBlock(16, 8) on a (1, 16, 6, 6) map with a (1, 8, 16, 16) skip: "
        "up -> (1, 8, 12, 12); crop the skip to 12 x 12 and concatenate -> (1, 16, 12, 12); "
        "two valid 3 x 3 convs -> (1, 8, 8, 8).",
    ),
    answer_fragments=("DoubleConv(2 * out_channels", "crop_and_concat(skip, x)"),
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

def _sizes(value: Any) -> list[int]:
    """Summary: a sorted list of Python ints."""
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise TypeError(f"expected a list of int sizes, got {type(value).__name__}")
    return sorted(value)


VALID_SIZES = Exercise(
    id="ch03.valid_input_sizes",
    function="valid_input_sizes",
    reference=valid_input_sizes,
    summary=_sizes,
    time_limit_s=2.0,
    task=(
        "Open-ended search: list every input size between low and high (inclusive) that the "
        "paper's U-Net of the given depth accepts, i.e. for which every 2 x 2 max-pool sees an "
        "even map and an output remains (Sec. 3: 'select the input tile size such that all "
        "2x2 max-pooling operations are applied to a layer with an even x- and y-size')."
    ),
    hint=(
        "Walk a candidate size through the contracting path as your unet_output_size does, "
        "and reject it as soon as a pool would meet an odd size or a convolution would leave "
        "nothing. Then try every size in the range."
    ),
    hints=(
        "Which quantity goes wrong: the check happens before each pool (after its two "
        "convs), the range includes both ends, and the bottom's two convs must still leave "
        "something.",
        "Worked example: depth 4 accepts 572 and 556 between 550 and 580 (they differ by 16, "
        "the product of the four halvings); 188 is the smallest.",
    ),
    answer_fragments=(),
    cases=[
        Case("400 to 600, depth 4 (the paper's network)", const(400, 600, 4), points=2),
        Case("180 to 200, depth 4 (the smallest)", const(180, 200, 4)),
        Case("50 to 100, depth 2", const(50, 100, 2)),
        Case("10 to 12, depth 4 (none)", const(10, 12, 4)),
        Case("900 to 1000, depth 5", const(900, 1000, 5), hidden=True),
        Case("1 to 60, depth 1 (maps that shrink to a pixel or nothing)", const(1, 60, 1),
             hidden=True),
        Case("180 to 187, depth 4 (none: 188 is just past the end)", const(180, 187, 4),
             hidden=True),
    ],
)

EXERCISES = [UNET_OUTPUT_SIZE, CROP_AND_CONCAT, WEIGHT_MAP, UP_BLOCK, VALID_SIZES]

"""Chapter 2 exercises (SegNet): the functions students write in ``02_segnet.ipynb``.

Each exercise's reference is the implementation in :mod:`segedu.segnet`. Case inputs are built
from seeded generators, so the student's process and the grader's build the same tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ...segnet import max_pool_with_indices, max_unpool, upsampling_memory
from ..engine.exercise import Case, Exercise
from .cases import as_tensor, const, every_failure, randn

__all__ = ["EXERCISES"]


# --------------------------------------------------------------------------- helpers


def _pool_result(value: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Summary for ``max_pool_with_indices``: a (values, indices) pair of tensors."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"expected a (values, indices) pair, got {type(value).__name__}")
    values, indices = value
    if not isinstance(values, torch.Tensor) or not isinstance(indices, torch.Tensor):
        raise TypeError("expected values and indices to be torch.Tensors")
    return values, indices




def _as_memory(value: Any) -> dict[str, int]:
    """Summary for ``upsampling_memory``: the three byte counts, as Python ints."""
    if not isinstance(value, dict):
        raise TypeError(f"expected a dict, got {type(value).__name__}")
    keys = ("feature_maps", "indices_int64", "indices_2bit")
    missing = [k for k in keys if k not in value]
    if missing:
        raise TypeError(f"the dict needs the keys {list(keys)}; missing {missing}")
    out = {}
    for k in keys:
        v = value[k]
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, float) and v.is_integer():
            raise TypeError(f"{k}: expected an int number of bytes, got the float {v!r} "
                            "(use // or math.ceil)")
        out[k] = v
    return out


def _pool_inputs(*shape: int, seed: int, ceil_mode: bool = True,
                 relu: bool = False) -> Callable[[], tuple]:
    def make() -> tuple:
        x = randn(*shape, seed=seed)
        if relu:  # post-ReLU maps: many zeros, so ties inside windows
            x = x.clamp(min=0)
        return x, ceil_mode
    return make


def _unpool_inputs(*shape: int, seed: int, ceil_mode: bool = True,
                   scale: float = 1.0) -> Callable[[], tuple]:
    """(values, indices, output_size) from pooling a random (N, C, H, W) map."""
    def make() -> tuple:
        x = randn(*shape, seed=seed) * scale
        values, indices = F.max_pool2d(x, 2, 2, ceil_mode=ceil_mode, return_indices=True)
        return values, indices, tuple(shape[-2:])
    return make


# VGG16's channels before each of its five pools, at full width.
_VGG16 = (64, 128, 256, 512, 512)


def _pre_pool_shapes(height: int, width: int, batch: int = 1,
                     channels: tuple[int, ...] = _VGG16) -> list[tuple[int, int, int, int]]:
    """The (N, C, H, W) maps entering SegNet's five pools (rounding up, as SegNet does)."""
    shapes = []
    for c in channels:
        shapes.append((batch, c, height, width))
        height, width = -(-height // 2), -(-width // 2)
    return shapes


def choose_segnet_size(low: int, high: int) -> int:
    """A reference answer of the open-ended exercise: an input size in [low, high] that
    SegNet's five pools halve without rounding (the first multiple of 32)."""
    return -(-low // 32) * 32


def _segnet_size_outcome(low: int, high: int) -> Callable[[Any], dict[str, bool]]:
    """Summary of ``choose_segnet_size(low, high)``, measured: pool a map of that size five
    times and unpool it back with the indices."""
    def summary(size: Any) -> dict[str, bool]:
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"expected an int input size, got {type(size).__name__}")
        inside = low <= size <= high
        restored = False
        if 32 <= size <= 2048:
            x = torch.arange(size, dtype=torch.float32).expand(1, 1, 1, size)
            sizes, ok = [], True
            for _ in range(5):
                sizes.append(x.shape[-1])
                x, _indices = max_pool_with_indices(x.expand(1, 1, 2, x.shape[-1]), True)
            for width in reversed(sizes):
                ok = ok and 2 * x.shape[-1] == width
                x = torch.zeros(1, 1, 1, width)
            restored = ok
        return {"inside [low, high]": inside,
                "every pool halves exactly, so unpooling restores each size": restored}
    return summary


# --------------------------------------------------------------------------- exercises

MAX_POOL_WITH_INDICES = Exercise(
    id="ch02.max_pool_with_indices",
    function="max_pool_with_indices",
    reference=max_pool_with_indices,
    summary=_pool_result,
    task=(
        "Return the 2 x 2 max-pooled map and, for every pooled value, where in the input it "
        "came from: SegNet's decoder needs exactly these positions to put each value back "
        "(Sec. 3)."
    ),
    hint=(
        "Each output cell is the largest of one 2 x 2 window, and its index says which input "
        "pixel won, as a position in the flattened input plane (the convention of PyTorch's "
        "max_unpool2d). Think about what happens when a window hangs over the edge of an odd "
        "map, and when two pixels of a window are equal."
    ),
    hints=(
        "Which quantity goes wrong: the index (a position in the whole plane, computed with "
        "the input's width, not the pooled one and not the padded one), the edge (rounding "
        "up keeps a half window whose padding must never win; rounding down drops it), ties "
        "(the first maximum in row-major order wins), or the dtype (int64).",
        "Worked example: the 4 x 4 plane [[1, 5, 0, 0], [2, 3, 0, 9], [0, 0, 4, 4], "
        "[7, 0, 4, 1]] pools to [[5, 9], [7, 4]] with indices [[1, 7], [12, 10]]: index = "
        "row * 4 + column of the winner.",
    ),
    answer_fragments=("permute(0, 1, 2, 4, 3, 5)",),
    cases=[
        Case("4x4, 1 channel", _pool_inputs(1, 1, 4, 4, seed=1)),
        Case("batch 2, 3 channels, 6x8", _pool_inputs(2, 3, 6, 8, seed=2)),
        Case("7x9, rounding up (ceil_mode=True)", _pool_inputs(1, 2, 7, 9, seed=3), points=2),
        Case("7x9, rounding down (ceil_mode=False)",
             _pool_inputs(1, 2, 7, 9, seed=4, ceil_mode=False), points=2),
        Case("ties after a ReLU: the first maximum wins",
             _pool_inputs(1, 4, 8, 8, seed=5, relu=True), points=2),
        Case("1x5 (a single row)", _pool_inputs(1, 1, 1, 5, seed=6)),
        Case("batch 2, 4 channels, 127x33", _pool_inputs(2, 4, 127, 33, seed=7), hidden=True,
             points=2),
        Case("33x17, rounding down, after a ReLU",
             _pool_inputs(1, 3, 33, 17, seed=8, ceil_mode=False, relu=True), hidden=True,
             points=2),
    ],
)

MAX_UNPOOL = Exercise(
    id="ch02.max_unpool",
    function="max_unpool",
    reference=max_unpool,
    summary=as_tensor,
    task=(
        "Return the sparse map SegNet's decoder starts from: each pooled value put back at the "
        "position its index records, zeros everywhere else, at the size the map had before "
        "pooling (Sec. 3, Fig. 3)."
    ),
    hint=(
        "Unpooling is the inverse bookkeeping of the pool: the indices already say, for every "
        "value, which pixel of the full-size plane it belongs to. Nothing is learned and "
        "nothing is interpolated. What size is the full plane when the pooled map came from an "
        "odd one?"
    ),
    hints=(
        "Which quantity goes wrong: the output size (take it from output_size: twice the "
        "pooled size is wrong for odd maps), the plane (indices are per (n, c) plane, not "
        "into the whole batch), or the dtype and sign of the values (keep x's dtype; negative "
        "values stay negative, the rest is 0).",
        "Worked example: values [[5, 9], [7, 4]] with indices [[1, 7], [12, 10]] and "
        "output_size (4, 4) give [[0, 5, 0, 0], [0, 0, 0, 9], [0, 0, 4, 0], [7, 0, 0, 0]].",
    ),
    answer_fragments=("scatter(2, indices.reshape(n, c, -1)", "scatter(2,"),
    cases=[
        Case("4x4 from 2x2, 1 channel", _unpool_inputs(1, 1, 4, 4, seed=11)),
        Case("batch 2, 3 channels, 6x8", _unpool_inputs(2, 3, 6, 8, seed=12)),
        Case("odd size 7x9 (pooled rounding up)", _unpool_inputs(1, 2, 7, 9, seed=13),
             points=2),
        Case("odd size 7x9 (pooled rounding down)",
             _unpool_inputs(1, 2, 7, 9, seed=14, ceil_mode=False), points=2),
        Case("127x33, 4 channels", _unpool_inputs(1, 4, 127, 33, seed=15), points=2),
        Case("1x1", _unpool_inputs(1, 2, 1, 1, seed=16)),
        Case("batch 2, 5 channels, 45x60 (pool4 of CamVid)",
             _unpool_inputs(2, 5, 45, 60, seed=17), hidden=True, points=2),
        Case("negative values stay negative: 23x30", _unpool_inputs(1, 3, 23, 30, seed=18,
                                                                     scale=-1.0), hidden=True),
    ],
)

UPSAMPLING_MEMORY = Exercise(
    id="ch02.upsampling_memory",
    function="upsampling_memory",
    reference=upsampling_memory,
    summary=_as_memory,
    task=(
        "Return what SegNet's decoder must keep in memory to upsample: the encoder's feature "
        "maps (as FCN-style decoders keep them) against the pooling indices alone, stored as "
        "int64 and as the paper's 2 bits (Sec. 3): the memory argument for SegNet."
    ),
    hint=(
        "Count values first, then bytes: every pre-pool map is kept as float32 values by a "
        "decoder that reuses features; SegNet keeps one index per pooled value instead, and "
        "an index inside a 2 x 2 window needs only 2 bits."
    ),
    hints=(
        "Which quantity goes wrong: the pooled size of an odd map (it depends on ceil_mode), "
        "the bytes per value (4 for float32, 8 for int64), or the rounding of the 2-bit count "
        "(each map's bits are rounded up to whole bytes before summing).",
        "Worked example: one (1, 64, 224, 224) map: 64 * 224 * 224 * 4 = 12,845,056 bytes of "
        "features; it pools to 64 * 112 * 112 = 802,816 values: 6,422,528 bytes as int64, "
        "200,704 bytes at 2 bits. A (1, 1, 3, 5) map pools to 2 * 3 = 6 values: 12 bits, 2 "
        "bytes.",
    ),
    answer_fragments=("math.ceil(2 * pooled / 8)",),
    cases=[
        Case("one 64-channel 224x224 map", const([(1, 64, 224, 224)])),
        Case("SegNet at 64x64, batch 8", const(_pre_pool_shapes(64, 64, batch=8)), points=2),
        Case("SegNet at CamVid's 360x480 (odd maps round up)",
             const(_pre_pool_shapes(360, 480)), points=2),
        Case("a 3x5 map, 1 channel (bits rounded up to bytes)", const([(1, 1, 3, 5)])),
        Case("two 2x2 maps, 1 channel (each rounded up to a byte)",
             const([(1, 1, 2, 2), (1, 1, 2, 2)])),
        Case("rounding down: 7x9, 2 channels", const([(1, 2, 7, 9)], False)),
        Case("no maps at all", const([])),
        Case("SegNet at 127x200, batch 2", const(_pre_pool_shapes(127, 200, batch=2)),
             hidden=True, points=2),
        Case("width 1/8 at 100x151, rounding down",
             const(_pre_pool_shapes(100, 151, channels=(8, 16, 32, 64, 64)), False),
             hidden=True),
    ],
)

CHOOSE_SEGNET_SIZE = Exercise(
    id="ch02.choose_segnet_size",
    function="choose_segnet_size",
    reference=choose_segnet_size,
    judge=every_failure,
    time_limit_s=2.0,
    task=(
        "Open-ended: choose an input size between low and high for which SegNet's decoder "
        "puts every value back on a map of exactly the encoder's size; the grader pools and "
        "unpools a map of your size and measures."
    ),
    hint=(
        "SegNet pools five times. A pool that meets an odd size has to round, and then the "
        "unpooled map is not the size it came from. Which sizes survive five halvings without "
        "ever being odd?"
    ),
    hints=(
        "Which quantity goes wrong: the number of halvings (five pools, so the size must "
        "stay even through all of them), or the range (both ends are allowed).",
        "Worked example: 360 (CamVid) halves to 180, 90, 45 and then 45 is odd; 352 halves to "
        "176, 88, 44, 22, 11 and every unpooling restores its size exactly.",
    ),
    answer_fragments=("-(-low // 32) * 32",),
    cases=[
        Case("between 300 and 400", const(300, 400), summary=_segnet_size_outcome(300, 400)),
        Case("between 360 and 400 (CamVid's 360 does not work)", const(360, 400), points=2,
             summary=_segnet_size_outcome(360, 400)),
        Case("between 100 and 130", const(100, 130), summary=_segnet_size_outcome(100, 130)),
        Case("between 500 and 540", const(500, 540), hidden=True,
             summary=_segnet_size_outcome(500, 540)),
    ],
)

EXERCISES = [MAX_POOL_WITH_INDICES, MAX_UNPOOL, UPSAMPLING_MEMORY, CHOOSE_SEGNET_SIZE]

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
from .cases import as_tensor, const, randn

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


# --------------------------------------------------------------------------- exercises

MAX_POOL_WITH_INDICES = Exercise(
    id="ch02.max_pool_with_indices",
    function="max_pool_with_indices",
    reference=max_pool_with_indices,
    summary=_pool_result,
    hint=(
        "Group the map into 2x2 windows (reshape/permute), take the max of each, and turn the "
        "winner's place into the flat index row * W + col.\n"
        "x.reshape(N, C, H/2, 2, W/2, 2).permute(0, 1, 2, 4, 3, 5).reshape(..., 4) lists each "
        "window's pixels in row-major order; .max(dim=-1) gives the value and its position p in "
        "0..3, i.e. row 2i + p // 2 and column 2j + p % 2. W is the width of the *input*, "
        "before any padding. For ceil_mode=True pad odd maps at the bottom/right with -inf "
        "(F.pad(..., value=-math.inf)) so the padding never wins; for ceil_mode=False drop the "
        "last row/column. Return (values, indices), indices as int64."
    ),
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
    hint=(
        "Scatter the flattened values into zeros of shape (N, C, H*W) at the flattened "
        "indices, then reshape to (N, C, H, W).\n"
        "The indices are flat positions row * W + col in each (H, W) plane, so one scatter per "
        "plane does it: torch.zeros(N, C, H * W).scatter(2, indices.reshape(N, C, -1), "
        "x.reshape(N, C, -1)). Take H, W from output_size, not from 2 * h: an odd map's last "
        "window hung over the edge. Keep x's dtype (x.new_zeros)."
    ),
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
    hint=(
        "Per map: 4 bytes per pre-pool value; per pooled value 8 bytes as int64, 2 bits in the "
        "paper (rounded up to whole bytes).\n"
        "A map (N, C, H, W) pools to N*C*ceil(H/2)*ceil(W/2) values. "
        "Sum over the maps. For the 2-bit count round each map's bits up to whole bytes, "
        "math.ceil(2 * pooled / 8), before adding. With ceil_mode=False the pooled map is "
        "floor(H/2) x floor(W/2). Return a dict with the keys 'feature_maps', 'indices_int64' "
        "and 'indices_2bit', each an int."
    ),
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

EXERCISES = [MAX_POOL_WITH_INDICES, MAX_UNPOOL, UPSAMPLING_MEMORY]

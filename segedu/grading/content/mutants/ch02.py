"""Plausible wrong answers to chapter 2's exercises."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ....segnet import max_pool_with_indices, max_unpool
from . import Mutant


def _pool_pooled_width(x, ceil_mode=True):
    values, idx = max_pool_with_indices(x, ceil_mode)
    w, wo = x.shape[-1], values.shape[-1]
    return values, (idx // w) * wo + idx % w


def _pool_padded_width(x, ceil_mode=True):
    values, idx = max_pool_with_indices(x, ceil_mode)
    w = x.shape[-1]
    wp = w + (w % 2 if ceil_mode else 0)
    return values, (idx // w) * wp + idx % w


def _pool_zero_pad(x, ceil_mode=True):
    return F.max_pool2d(F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2)), 2, 2,
                        return_indices=True) if ceil_mode else max_pool_with_indices(x, False)


def _pool_last_tie(x, ceil_mode=True):
    values, idx = max_pool_with_indices(torch.flip(x, (-1, -2)), ceil_mode)
    return max_pool_with_indices(x, ceil_mode)[0], idx if x.shape[-1] % 2 else idx.flip(-1)


def _pool_int32(x, ceil_mode=True):
    values, idx = max_pool_with_indices(x, ceil_mode)
    return values, idx.int()


def _unpool_twice(x, indices, output_size):
    return max_unpool(x, indices, (2 * x.shape[-2], 2 * x.shape[-1]))


def _unpool_float64(x, indices, output_size):
    return max_unpool(x, indices, output_size).double()


def _unpool_relu(x, indices, output_size):
    return max_unpool(x, indices, output_size).clamp(min=0)


def _unpool_nearest(x, indices, output_size):
    return F.interpolate(x, size=tuple(output_size))


def _memory(variant):
    def fn(shapes, ceil_mode=True):
        total = {"feature_maps": 0, "indices_int64": 0, "indices_2bit": 0}
        bits = 0
        for n, c, h, w in shapes:
            if variant == "floor always":
                pooled = n * c * (h // 2) * (w // 2)
            else:
                pooled = n * c * (math.ceil(h / 2) if ceil_mode else h // 2) * (
                    math.ceil(w / 2) if ceil_mode else w // 2)
            total["feature_maps"] += (8 if variant == "8-byte features" else 4) * n * c * h * w
            total["indices_int64"] += 8 * pooled
            if variant == "round once":
                bits += 2 * pooled
            else:
                total["indices_2bit"] += (2 * pooled) // 8 if variant == "round down" else \
                    math.ceil(2 * pooled / 8)
        if variant == "round once":
            total["indices_2bit"] = math.ceil(bits / 8)
        return total
    return fn


MUTANTS = [
    Mutant("ch02.max_pool_with_indices", "index with the pooled width", _pool_pooled_width),
    Mutant("ch02.max_pool_with_indices", "index with the padded width", _pool_padded_width),
    Mutant("ch02.max_pool_with_indices", "odd maps padded with zeros", _pool_zero_pad),
    Mutant("ch02.max_pool_with_indices", "ties go to the last maximum", _pool_last_tie),
    Mutant("ch02.max_pool_with_indices", "int32 indices", _pool_int32),
    Mutant("ch02.max_unpool", "size 2h x 2w instead of output_size", _unpool_twice),
    Mutant("ch02.max_unpool", "float64 output", _unpool_float64),
    Mutant("ch02.max_unpool", "negative values clipped", _unpool_relu),
    Mutant("ch02.max_unpool", "nearest-neighbour upsampling instead of indices",
           _unpool_nearest),
    Mutant("ch02.upsampling_memory", "pooled size always rounded down",
           _memory("floor always")),
    Mutant("ch02.upsampling_memory", "2-bit count rounded once, not per map",
           _memory("round once")),
    Mutant("ch02.upsampling_memory", "2-bit count rounded down", _memory("round down")),
    Mutant("ch02.upsampling_memory", "8 bytes per feature value", _memory("8-byte features")),
    Mutant("ch02.choose_segnet_size", "a multiple of 16", lambda lo, hi: -(-lo // 16) * 16),
    Mutant("ch02.choose_segnet_size", "the low end itself", lambda lo, hi: lo),
    Mutant("ch02.choose_segnet_size", "a multiple of 32 below low", lambda lo, hi: lo // 32 * 32),
]

"""Plausible wrong answers to chapter 3's exercises."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ....unet import DoubleConv, UpBlock, crop_and_concat, valid_input_sizes, weight_map
from . import Mutant


def _uos(variant):
    def fn(size, depth=4):
        shrink = 2 if variant == "-2 per conv pair" else 4
        for _ in range(depth):
            size = (size - shrink) // 2
        size -= shrink if variant != "no bottom" else 0
        for _ in range(depth):
            size = size * 2 - shrink
        return size
    return fn


def _crop(variant):
    def fn(skip, x):
        h, w = x.shape[-2:]
        dh, dw = skip.shape[-2] - h, skip.shape[-1] - w
        top = -(-dh // 2) if variant == "round up" else dh // 2
        left = top if variant == "one offset" else (-(-dw // 2) if variant == "round up"
                                                    else dw // 2)
        cropped = skip[..., top:top + h, left:left + w]
        return torch.cat([x, cropped] if variant == "x first" else [cropped, x], dim=1)
    return fn


def _crop_resize(skip, x):
    return torch.cat([F.interpolate(skip, size=x.shape[-2:]), x], dim=1)


def _wm_no_balance(ids, w0=10.0, sigma=5.0):
    w = weight_map(ids, w0, sigma)
    return w - weight_map(torch.zeros_like(ids), w0, sigma) * 0 - _balance(ids) + 1


def _balance(ids):
    cells = ids > 0
    n, nc = ids.numel(), int(cells.sum())
    if nc in (0, n):
        return torch.ones(ids.shape)
    return torch.where(cells, n / (2 * nc), n / (2 * (n - nc))).float()


def _wm_float64(ids, w0=10.0, sigma=5.0):
    return weight_map(ids, w0, sigma).double()


def _wm_sigma(ids, w0=10.0, sigma=5.0):
    return weight_map(ids, w0, sigma * 2 ** 0.5)


def _wm_w0(ids, w0=10.0, sigma=5.0):
    return weight_map(ids, 10.0, sigma)


class _UpNoConcat(UpBlock):
    def __init__(self, in_channels, out_channels):
        nn.Module.__init__(self)
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.conv = DoubleConv(out_channels, out_channels)

    def forward(self, x, skip):
        return self.conv(self.up(x))


class _UpWrongOrder(UpBlock):
    def forward(self, x, skip):
        x = self.up(x)
        h, w = x.shape[-2:]
        dh, dw = (skip.shape[-2] - h) // 2, (skip.shape[-1] - w) // 2
        return self.conv(torch.cat([x, skip[..., dh:dh + h, dw:dw + w]], dim=1))


class _UpInterp(UpBlock):
    def forward(self, x, skip):
        x = F.interpolate(x, scale_factor=2.0)
        x = self.up.weight.new_zeros(0).sum() + x[:, : self.up.out_channels]
        return self.conv(crop_and_concat(skip, x))


MUTANTS = [
    Mutant("ch03.unet_output_size", "2 pixels per conv pair", _uos("-2 per conv pair")),
    Mutant("ch03.unet_output_size", "no convs at the bottom", _uos("no bottom")),
    Mutant("ch03.crop_and_concat", "odd difference rounded up", _crop("round up")),
    Mutant("ch03.crop_and_concat", "the height's offset for both axes", _crop("one offset")),
    Mutant("ch03.crop_and_concat", "x first in the concatenation", _crop("x first")),
    Mutant("ch03.crop_and_concat", "skip resized instead of cropped", _crop_resize),
    Mutant("ch03.weight_map", "no class-balance term", _wm_no_balance),
    Mutant("ch03.weight_map", "float64", _wm_float64),
    Mutant("ch03.weight_map", "sigma**2 instead of 2 sigma**2", _wm_sigma),
    Mutant("ch03.weight_map", "w0 fixed at 10", _wm_w0),
    Mutant("ch03.up_block", "the outline's block: no concatenation", _UpNoConcat),
    Mutant("ch03.up_block", "concatenated in the wrong order", _UpWrongOrder),
    Mutant("ch03.up_block", "interpolation instead of the up-convolution", _UpInterp),
    Mutant("ch03.valid_input_sizes", "every size whose output is positive",
           lambda lo, hi, d=4: [n for n in range(lo, hi + 1) if n > 186 + 0 * d]),
    Mutant("ch03.valid_input_sizes", "the high end left out",
           lambda lo, hi, d=4: valid_input_sizes(lo, hi - 1, d)),
    Mutant("ch03.valid_input_sizes", "steps of 16 from low",
           lambda lo, hi, d=4: list(range(lo, hi + 1, 16))),
]

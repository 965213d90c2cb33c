"""Plausible wrong answers to chapter 1's exercises."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ....fcn import bilinear_kernel
from . import Mutant


def _l2c(transpose=False, bias=True, padding=0):
    def fn(linear, c, k):
        conv = nn.Conv2d(c, linear.out_features, k, padding=padding,
                         bias=bias and linear.bias is not None)
        w = linear.weight.reshape(linear.out_features, c, k, k)
        with torch.no_grad():
            conv.weight.copy_(w.transpose(-1, -2) if transpose else w)
            if conv.bias is not None:
                conv.bias.copy_(linear.bias)
        return conv
    return fn


def _l2c_always_bias(linear, c, k):
    conv = nn.Conv2d(c, linear.out_features, k)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.reshape(linear.out_features, c, k, k))
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return conv


def _cos(variant):
    def fn(size, k, s=1, p=0, d=1):
        if variant == "d*k":
            return (size + 2 * p - d * k) // s + 1
        if variant == "one p":
            return (size + p - d * (k - 1) - 1) // s + 1
        if variant == "float":
            return (size + 2 * p - d * (k - 1) - 1) / s + 1
        if variant == "ceil":
            return math.ceil((size + 2 * p - d * (k - 1) - 1) / s) + 1
        if variant == "no dilation":
            return (size + 2 * p - (k - 1) - 1) // s + 1
        raise ValueError(variant)
    return fn


def _cts(variant):
    def fn(size, k, s=1, p=0, op=0, d=1):
        if variant == "H*s":
            return size * s - 2 * p + d * (k - 1) + op + 1
        if variant == "one p":
            return (size - 1) * s - p + d * (k - 1) + op + 1
        if variant == "no output_padding":
            return (size - 1) * s - 2 * p + d * (k - 1) + 1
        if variant == "d*k":
            return (size - 1) * s - 2 * p + d * k + op
        if variant == "args swapped":
            return (size - 1) * s - 2 * p + op * (k - 1) + d + 1
        raise ValueError(variant)
    return fn


def _bk(centre="right", dtype=torch.float32, fill_all=False, layout_swap=False, slope="f"):
    def fn(cin, cout, k):
        f = math.ceil(k / 2)
        c = (f - 1 if k % 2 == 1 else f - 0.5) if centre == "right" else f - 1
        i = torch.arange(k, dtype=torch.float64)
        denom = f if slope == "f" else k / 2
        tent = 1 - (i - c).abs() / denom
        filt = torch.outer(tent, tent)
        shape = (cout, cin, k, k) if layout_swap else (cin, cout, k, k)
        w = torch.zeros(*shape, dtype=dtype)
        for a in range(shape[0]):
            for b in range(shape[1]):
                if fill_all or a == b:
                    w[a, b] = filt.to(dtype)
        return w
    return fn


def _ptm(variant):
    def fn(x, m):
        h, w = x.shape[-2:]
        if variant == "m - h % m":
            ph, pw = m - h % m, m - w % m
        else:
            ph, pw = -h % m, -w % m
        if variant == "top left":
            return F.pad(x, (pw, 0, ph, 0))
        if variant == "order swapped":
            return F.pad(x, (0, ph, 0, pw))
        if variant == "centred":
            return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.pad(x, (0, pw, 0, ph))
    return fn


def _fuse(variant):
    def fn(score, skips, ups, final):
        for i, (skip, up) in enumerate(zip(skips, ups, strict=False)):
            if variant == "upsample the skip":
                score = F.interpolate(score, size=skip.shape[-2:]) + up(skip)[..., ::2, ::2]
            elif variant == "concatenate":
                score = torch.cat([up(score), skip], 1)[:, : score.shape[1]]
            elif variant == "reversed upsamplers":
                score = ups[len(ups) - 1 - i](score) + skip
            elif variant == "no sum":
                score = up(score)
            else:
                score = up(score) + skip
        if variant == "no final":
            return F.interpolate(score, scale_factor=2 ** (5 - len(skips)))
        return final(score)
    return fn


def _upsampler(variant):
    def fn(f):
        if variant == "2f always":
            return 2 * f, f, f // 2
        if variant == "nearest":
            return f, f, 0
        if variant == "no padding":
            return 2 * f, f, 0
        raise ValueError(variant)
    return fn


MUTANTS = [
    Mutant("ch01.linear_to_conv", "kernel rows and columns swapped", _l2c(transpose=True)),
    Mutant("ch01.linear_to_conv", "bias dropped", _l2c(bias=False)),
    Mutant("ch01.linear_to_conv", "padding 1 (same-size conv)", _l2c(padding=1)),
    Mutant("ch01.linear_to_conv", "a bias even when the Linear has none", _l2c_always_bias),
    Mutant("ch01.conv_output_size", "span d*k instead of d*(k-1)+1", _cos("d*k")),
    Mutant("ch01.conv_output_size", "padding on one side only", _cos("one p")),
    Mutant("ch01.conv_output_size", "true division (a float)", _cos("float")),
    Mutant("ch01.conv_output_size", "rounding up", _cos("ceil")),
    Mutant("ch01.conv_output_size", "dilation ignored", _cos("no dilation")),
    Mutant("ch01.conv_transpose_output_size", "H*s instead of (H-1)*s", _cts("H*s")),
    Mutant("ch01.conv_transpose_output_size", "padding removed once", _cts("one p")),
    Mutant("ch01.conv_transpose_output_size", "output_padding ignored",
           _cts("no output_padding")),
    Mutant("ch01.conv_transpose_output_size", "reach d*k", _cts("d*k")),
    Mutant("ch01.conv_transpose_output_size", "output_padding and dilation swapped",
           _cts("args swapped")),
    Mutant("ch01.bilinear_kernel", "centre f-1 for every k", _bk(centre="wrong")),
    Mutant("ch01.bilinear_kernel", "float64", _bk(dtype=torch.float64)),
    Mutant("ch01.bilinear_kernel", "every channel pair filled", _bk(fill_all=True)),
    Mutant("ch01.bilinear_kernel", "float64 and every pair filled",
           _bk(dtype=torch.float64, fill_all=True)),
    Mutant("ch01.bilinear_kernel", "(out, in) layout", _bk(layout_swap=True)),
    Mutant("ch01.bilinear_kernel", "slope k/2 instead of ceil(k/2)", _bk(slope="k/2")),
    Mutant("ch01.bilinear_kernel", "the reference's kernel in float64",
           lambda i, o, k: bilinear_kernel(i, o, k).double()),
    Mutant("ch01.pad_to_multiple", "m - h % m (a whole extra m)", _ptm("m - h % m")),
    Mutant("ch01.pad_to_multiple", "padded at the top and left", _ptm("top left")),
    Mutant("ch01.pad_to_multiple", "F.pad's order swapped", _ptm("order swapped")),
    Mutant("ch01.pad_to_multiple", "padded on both sides", _ptm("centred")),
    Mutant("ch01.fuse_skips", "skip upsampled instead of the scores",
           _fuse("upsample the skip")),
    Mutant("ch01.fuse_skips", "concatenated instead of summed", _fuse("concatenate")),
    Mutant("ch01.fuse_skips", "upsamplers in reverse order", _fuse("reversed upsamplers")),
    Mutant("ch01.fuse_skips", "skips never added", _fuse("no sum")),
    Mutant("ch01.fuse_skips", "final upsampler replaced by interpolation", _fuse("no final")),
    Mutant("ch01.choose_upsampler", "kernel 2f for odd factors too", _upsampler("2f always")),
    Mutant("ch01.choose_upsampler", "nearest: kernel f, stride f", _upsampler("nearest")),
    Mutant("ch01.choose_upsampler", "no padding", _upsampler("no padding")),
]

"""Plausible wrong answers to chapter 5's exercises.

Not listed because they are equivalent (no case can catch them): the upper of the two middle
pixels as the default position of ``atrous_taps_inside`` (the two are mirror images, so the
counts agree for every size and rate), and ``align_corners=True`` in ``image_pooling`` (a 1x1
map upsamples to a constant either way).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ....deeplab import ASPP, ASPPConv
from . import Mutant


def _dilate(variant):
    def fn(weight, rate):
        o, i, kh, kw = weight.shape
        if variant == "extent r*k":
            sparse = weight.new_zeros(o, i, rate * kh, rate * kw)
        elif variant == "square":
            sparse = weight.new_zeros(o, i, rate * (kh - 1) + 1, rate * (kh - 1) + 1)
            sparse[..., ::rate, ::rate][..., :kh, :kw] = weight[..., :, :kh]
            return sparse
        else:
            sparse = weight.new_zeros(o, i, rate * (kh - 1) + 1, rate * (kw - 1) + 1)
        if variant == "float64":
            sparse = sparse.double()
        if variant == "transposed":
            sparse[..., ::rate, ::rate] = weight.transpose(-1, -2) if kh == kw else weight
            return sparse
        sparse[..., ::rate, ::rate] = weight
        return sparse
    return fn


def _taps(variant):
    def fn(size, dilation, kernel_size=3, position=None):
        centre = (size - 1) // 2 if position is None else position
        if variant == "truthy position":
            centre = position or (size - 1) // 2
        if variant == "upper centre" and position is None:
            centre = size // 2
        offsets = [dilation * (j - kernel_size // 2) for j in range(kernel_size)]
        if variant == "<=":
            return sum(0 <= centre + o <= size for o in offsets)
        if variant == "0 <":
            return sum(0 < centre + o < size for o in offsets)
        return sum(0 <= centre + o < size for o in offsets)
    return fn


def _pool(variant):
    def fn(x, conv, bn):
        y = conv(F.adaptive_avg_pool2d(x, 1) if variant != "max" else F.adaptive_max_pool2d(x, 1))
        if variant == "always bn":
            y = bn(y) if y.shape[0] > 1 or not bn.training else y
        elif bn.training and y.shape[0] == 1:
            y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                             training=False, eps=bn.eps)
        else:
            y = bn(y)
        if variant != "no relu":
            y = F.relu(y)
        mode = dict(mode="bilinear", align_corners=True) if variant == "align" else dict(
            mode="bilinear", align_corners=False)
        return F.interpolate(y, size=x.shape[-2:], **mode)
    return fn


class _PlainList(ASPP):
    """Correct parts, kept in a plain list: not registered."""

    def __init__(self, cin, rates, cout=256):
        super().__init__(cin, rates, cout)
        branches = list(self.convs)
        del self.convs
        self.convs = branches


class _NoPooling(nn.Module):
    def __init__(self, cin, rates, cout=256):
        super().__init__()
        branches = [nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                                  nn.ReLU())]
        branches += [ASPPConv(cin, cout, r) for r in rates]
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(nn.Conv2d(len(branches) * cout, cout, 1, bias=False),
                                     nn.BatchNorm2d(cout), nn.ReLU(), nn.Dropout(0.5))

    def forward(self, x):
        return self.project(torch.cat([c(x) for c in self.convs], 1))


class _NoProjectionBN(ASPP):
    def __init__(self, cin, rates, cout=256):
        super().__init__(cin, rates, cout)
        self.project = nn.Sequential(self.project[0], nn.ReLU(), nn.Dropout(0.5))


class _NoFinalReLU(ASPP):
    def forward(self, x):
        y = torch.cat([c(x) for c in self.convs], 1)
        return self.project[1](self.project[0](y))


class _Summed(ASPP):
    """v2's sum instead of v3's concatenation (projection sized to one branch)."""

    def __init__(self, cin, rates, cout=256):
        super().__init__(cin, rates, cout)
        self.project[0] = nn.Conv2d(cout, cout, 1, bias=False)

    def forward(self, x):
        return self.project(sum(c(x) for c in self.convs))


class _PoolingFirst(ASPP):
    def __init__(self, cin, rates, cout=256):
        super().__init__(cin, rates, cout)
        self.convs = nn.ModuleList([self.convs[-1], *self.convs[:-1]])


def _outline_aspp():
    from ..ch05 import OUTLINE_ASPP
    namespace = {"nn": nn, "torch": torch}
    exec(OUTLINE_ASPP, namespace)  # noqa: S102 - the course's own text
    return namespace["ASPP"]


def _rates(variant):
    def fn(size):
        if variant == "v3 rates":
            return (6, 12, 18)
        if variant == "size // 2":
            return (size // 6, size // 3, size // 2)
        return (1, 1, 1)
    return fn


MUTANTS = [
    Mutant("ch05.dilate_kernel", "extent rate*k", _dilate("extent r*k")),
    Mutant("ch05.dilate_kernel", "float64", _dilate("float64")),
    Mutant("ch05.dilate_kernel", "kernel transposed", _dilate("transposed")),
    Mutant("ch05.dilate_kernel", "height's extent for the width too", _dilate("square")),
    Mutant("ch05.atrous_taps_inside", "<= for < at the last pixel", _taps("<=")),
    Mutant("ch05.atrous_taps_inside", "0 < for 0 <= at the first pixel", _taps("0 <")),
    Mutant("ch05.atrous_taps_inside", "position tested by truthiness", _taps("truthy position")),
    Mutant("ch05.image_pooling", "no ReLU", _pool("no relu")),
    Mutant("ch05.image_pooling", "global max-pooling", _pool("max")),
    Mutant("ch05.image_pooling", "BN skipped for a batch of one", _pool("always bn")),
    Mutant("ch05.aspp", "the outline's ASPP", _outline_aspp()),
    Mutant("ch05.aspp", "branches in a plain list", _PlainList),
    Mutant("ch05.aspp", "no image pooling", _NoPooling),
    Mutant("ch05.aspp", "no BatchNorm in the projection", _NoProjectionBN),
    Mutant("ch05.aspp", "no ReLU after the projection", _NoFinalReLU),
    Mutant("ch05.aspp", "branches summed (v2)", _Summed),
    Mutant("ch05.aspp", "image pooling first", _PoolingFirst),
    Mutant("ch05.choose_aspp_rates", "v3's (6, 12, 18) for every map", _rates("v3 rates")),
    Mutant("ch05.choose_aspp_rates", "widest rate size // 2", _rates("size // 2")),
    Mutant("ch05.choose_aspp_rates", "the same rate three times", _rates("same")),
]

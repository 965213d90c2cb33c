"""Plausible wrong answers to chapter 6's exercises."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ....refinenet import ResidualConvUnit, upsample_aligned
from . import Mutant


class _InplaceReLU(ResidualConvUnit):
    def forward(self, x):
        y = self.conv1(F.relu(x, inplace=True))
        return x + self.conv2(F.relu(y))


class _NoSecondReLU(ResidualConvUnit):
    def forward(self, x):
        return x + self.conv2(self.conv1(F.relu(x)))


class _NoIdentity(ResidualConvUnit):
    def forward(self, x):
        return self.conv2(F.relu(self.conv1(F.relu(x))))


class _PostActivation(ResidualConvUnit):
    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class _WithBN(ResidualConvUnit):
    def __init__(self, channels, kernel_size=3):
        super().__init__(channels, kernel_size)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x):
        return x + self.conv2(F.relu(self.bn(self.conv1(F.relu(x)))))


def _fusion(variant):
    def fn(paths, convs, strides):
        finest = min(range(len(paths)), key=lambda i: strides[i])
        if variant == "first path":
            finest = 0
        size = paths[finest].shape[-2:]
        total = 0
        for path, conv, stride in zip(paths, convs, strides, strict=False):
            factor = stride // strides[finest]
            if variant == "upsample first":
                y = conv(F.interpolate(path, size=size, mode="bilinear", align_corners=False))
            elif variant == "2x coarse size":
                y = conv(path)
                y = F.interpolate(y, scale_factor=factor, mode="bilinear", align_corners=False)
                y = y[..., : size[0], : size[1]]
                y = F.pad(y, (0, size[1] - y.shape[-1], 0, size[0] - y.shape[-2]))
            else:
                y = upsample_aligned(conv(path), size, factor)
            total = total + y
        return total
    return fn


def _crp(variant):
    def fn(x, convs):
        if variant != "no relu":
            x = F.relu(x)
        total = top = x
        for conv in convs:
            source = x if variant == "pool the input" else top
            if variant == "zero padding":
                pooled = F.max_pool2d(F.pad(source, (2, 2, 2, 2)), 5, stride=1)
            elif variant == "3x3 pool":
                pooled = F.max_pool2d(source, 3, stride=1, padding=1)
            else:
                pooled = F.max_pool2d(source, 5, stride=1, padding=2)
            top = conv(pooled)
            total = total + top
        if variant == "last stage only":
            return top if convs else total
        return total
    return fn


MUTANTS = [
    Mutant("ch06.residual_conv_unit", "in-place ReLU on the input", _InplaceReLU),
    Mutant("ch06.residual_conv_unit", "second ReLU missing", _NoSecondReLU),
    Mutant("ch06.residual_conv_unit", "identity missing", _NoIdentity),
    Mutant("ch06.residual_conv_unit", "post-activation", _PostActivation),
    Mutant("ch06.residual_conv_unit", "an extra BatchNorm", _WithBN),
    Mutant("ch06.multi_resolution_fusion", "the first path taken as the finest",
           _fusion("first path")),
    Mutant("ch06.multi_resolution_fusion", "upsample before the conv",
           _fusion("upsample first")),
    Mutant("ch06.multi_resolution_fusion", "scale factor then crop/pad",
           _fusion("2x coarse size")),
    Mutant("ch06.chained_residual_pooling", "no ReLU", _crp("no relu")),
    Mutant("ch06.chained_residual_pooling", "every stage pools the input",
           _crp("pool the input")),
    Mutant("ch06.chained_residual_pooling", "zero padding in the pool", _crp("zero padding")),
    Mutant("ch06.chained_residual_pooling", "3x3 pool", _crp("3x3 pool")),
    Mutant("ch06.chained_residual_pooling", "only the last stage returned",
           _crp("last stage only")),
    Mutant("ch06.choose_crp_stages", "ceil(size / 4)", lambda size: -(-size // 4)),
    Mutant("ch06.choose_crp_stages", "one stage too many",
           lambda size: -(-max((size - 1) // 2, size - 1 - (size - 1) // 2) // 2) + 1),
    Mutant("ch06.choose_crp_stages", "distance from the centre to the near side",
           lambda size: -(-((size - 1) // 2) // 2)),
]

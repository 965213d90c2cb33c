"""Plausible wrong answers to chapter 4's exercises."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ....core.sizes import resnet_feature_size
from ..ch04 import deep_supervision_loss
from . import Mutant


def _regions(variant):
    def fn(size, bins):
        out = []
        for i in range(bins):
            if variant == "floor end":
                start, end = i * size // bins, (i + 1) * size // bins
            elif variant == "equal steps":
                step = size // bins
                start, end = i * step, (i + 1) * step
            elif variant == "round":
                start, end = round(i * size / bins), round((i + 1) * size / bins)
            else:  # inclusive end
                start, end = i * size // bins, -(-(i + 1) * size // bins) - 1
            out.append((int(start), int(end)))
        return out
    return fn


def _pyramid(variant):
    def fn(x, bins, stages):
        levels = []
        for b, stage in zip(bins, stages, strict=False):
            y = stage(F.adaptive_avg_pool2d(x, b) if variant != "max" else
                      F.adaptive_max_pool2d(x, b))
            if variant == "align":
                y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=True)
            elif variant == "nearest":
                y = F.interpolate(y, size=x.shape[-2:], mode="nearest")
            else:
                y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
            levels.append(y)
        if variant == "levels first":
            return torch.cat([*levels, x], dim=1)
        if variant == "no input":
            return torch.cat(levels, dim=1)
        return torch.cat([x, *levels], dim=1)
    return fn


def _loss(variant):
    def fn(outputs, target, aux_weight=0.4):
        if variant == "no ignore":
            t = target.clamp(max=outputs["out"].shape[1] - 1)
            return deep_supervision_loss(outputs, t, aux_weight)
        main = F.cross_entropy(outputs["out"], target, ignore_index=255)
        if "aux" not in outputs:
            return main
        aux = F.cross_entropy(outputs["aux"], target, ignore_index=255)
        if variant == "weight on main":
            return aux_weight * main + aux
        if variant == "fixed 0.4":
            return main + 0.4 * aux
        if variant == "sum reduction":
            return F.cross_entropy(outputs["out"], target, ignore_index=255, reduction="sum")
        return main + aux
    return fn


def _psp(variant):
    def fn(low, high, bins, stride):
        for size in range(low, high + 1):
            side = size // stride if variant == "floor" else resnet_feature_size(size, stride)
            if all(side % b == 0 for b in bins[:1] if variant == "first bin only") if \
                    variant == "first bin only" else all(side % b == 0 for b in bins):
                return size
        return low
    return fn


MUTANTS = [
    Mutant("ch04.adaptive_pool_regions", "end rounded down", _regions("floor end")),
    Mutant("ch04.adaptive_pool_regions", "equal steps of size // bins", _regions("equal steps")),
    Mutant("ch04.adaptive_pool_regions", "start and end rounded to nearest", _regions("round")),
    Mutant("ch04.adaptive_pool_regions", "inclusive end", _regions("inclusive")),
    Mutant("ch04.pyramid_pool", "aligned corners", _pyramid("align")),
    Mutant("ch04.pyramid_pool", "nearest upsampling", _pyramid("nearest")),
    Mutant("ch04.pyramid_pool", "max-pooling", _pyramid("max")),
    Mutant("ch04.pyramid_pool", "levels before the input", _pyramid("levels first")),
    Mutant("ch04.pyramid_pool", "input left out", _pyramid("no input")),
    Mutant("ch04.deep_supervision_loss", "auxiliary term unweighted", _loss("unweighted")),
    Mutant("ch04.deep_supervision_loss", "weight on the main term", _loss("weight on main")),
    Mutant("ch04.deep_supervision_loss", "aux_weight ignored (0.4)", _loss("fixed 0.4")),
    Mutant("ch04.deep_supervision_loss", "255 not ignored", _loss("no ignore")),
    Mutant("ch04.deep_supervision_loss", "summed, not averaged", _loss("sum reduction")),
    Mutant("ch04.choose_psp_input", "feature map size // stride", _psp("floor")),
    Mutant("ch04.choose_psp_input", "only the first bin checked", _psp("first bin only")),
]

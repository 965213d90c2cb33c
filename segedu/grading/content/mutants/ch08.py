"""Plausible wrong answers to chapter 8's exercises."""

from __future__ import annotations

import math

import torch
from torch import nn

from ....core.sizes import conv_output_size, resnet_feature_size
from ....deploy.fold import fold_conv_bn
from ....deploy.measure import conv_cost
from . import Mutant


def _fold(variant):
    def fn(conv, bn):
        if variant == "no training check":
            return fold_conv_bn(conv, bn.eval())
        if variant == "vague errors":
            try:
                return fold_conv_bn(conv, bn)
            except ValueError:
                raise ValueError("cannot fold these layers") from None
        if variant == "sequential":
            return nn.Sequential(conv, bn)
        if conv.out_channels != bn.num_features or bn.training:
            raise ValueError(f"need bn.eval() and {conv.out_channels} == {bn.num_features}")
        var, mean, eps = bn.running_var, bn.running_mean, bn.eps
        if variant == "no eps":
            scale = bn.weight / torch.sqrt(var)
        elif variant == "eps outside the root":
            scale = bn.weight / (torch.sqrt(var) + eps)
        elif variant == "standard deviation as variance":
            scale = bn.weight / (var + eps)
        else:
            scale = bn.weight / torch.sqrt(var + eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
        groups = 1 if variant == "groups dropped" else conv.groups
        padding = 0 if variant == "padding dropped" else conv.padding
        folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                           padding, conv.dilation, groups, bias=True)
        weight = conv.weight * scale.view(-1, 1, 1, 1)
        if variant == "scale on the input axis":
            weight = conv.weight * scale.view(1, -1, 1, 1)[:, :conv.weight.shape[1]]
        if variant == "conv bias not scaled":
            new_bias = bias + scale * (-mean) + bn.bias
        elif variant == "conv bias dropped":
            new_bias = scale * (-mean) + bn.bias
        elif variant == "mean not scaled":
            new_bias = scale * bias - mean + bn.bias
        else:
            new_bias = scale * (bias - mean) + bn.bias
        with torch.no_grad():
            folded.weight.copy_(weight)
            folded.bias.copy_(new_bias)
        return folded
    return fn


def _conv_cost(variant):
    def fn(in_channels, out_channels, kernel_size, out_height, out_width, groups=1, bias=True):
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        if variant == "square kernel":
            kw = kh
        per_output = in_channels * kh * kw // (1 if variant == "groups ignored" else groups)
        params = out_channels * per_output + (out_channels if bias else 0)
        macs = out_channels * out_height * out_width * per_output
        if variant == "bias counted as MACs" and bias:
            macs += out_channels * out_height * out_width
        if variant == "bias always counted" and not bias:
            params += out_channels
        if variant == "FLOPs, not MACs":
            macs *= 2
        if variant == "height squared":
            macs = out_channels * out_height * out_height * per_output
        if variant == "groups only in the parameters":
            macs = out_channels * out_height * out_width * in_channels * kh * kw
        return params, macs
    return fn


def _network(variant):
    def fn(layers, height, width):
        params = macs = 0
        h, w = height, width
        for layer in layers:
            if isinstance(layer, nn.Conv2d):
                k, s, p, d = layer.kernel_size, layer.stride, layer.padding, layer.dilation
                if variant == "stride ignored":
                    s = (1, 1)
                if variant == "padding ignored":
                    p = (0, 0)
                if variant == "dilation ignored":
                    d = (1, 1)
                new = (conv_output_size(h, k[0], s[0], p[0], d[0]),
                       conv_output_size(w, k[1], s[1], p[1], d[1]))
                if variant == "counted at the input size":
                    n = conv_cost(layer.in_channels, layer.out_channels, k, h, w,
                                  layer.groups, layer.bias is not None)
                    h, w = new
                else:
                    h, w = new
                    n = conv_cost(layer.in_channels, layer.out_channels, k, h, w,
                                  layer.groups, layer.bias is not None)
                if variant == "height for both axes":
                    h, w = new[0], new[0]
                params, macs = params + n[0], macs + n[1]
            elif isinstance(layer, nn.BatchNorm2d):
                if variant == "BatchNorm's statistics counted":
                    params += 4 * layer.num_features
                elif variant == "BatchNorm costs MACs":
                    params += 2 * layer.num_features
                    macs += layer.num_features * h * w
                elif variant != "BatchNorm left out":
                    params += 2 * layer.num_features
            elif isinstance(layer, nn.MaxPool2d) and variant != "pooling ignored":
                ceil = layer.ceil_mode and variant != "ceil_mode ignored"
                h, w = (conv_output_size(n, layer.kernel_size, layer.stride, layer.padding,
                                         layer.dilation, ceil_mode=ceil) for n in (h, w))
        return params, macs
    return fn


def _export(variant):
    def fn(height, width, output_stride, bins):
        period = math.prod(bins) if variant == "product of the bins" else math.lcm(*bins)

        def side(size):
            if variant == "size // stride":
                return size // output_stride
            return resnet_feature_size(size, 8 if variant == "stride 8 always" else output_stride)

        def nearest(n):
            for distance in range(output_stride * period):
                for size in (n + distance, n - distance):
                    check = bins[-1:] if variant == "last bin only" else (period,)
                    if size >= 32 and all(side(size) % b == 0 for b in check):
                        return size
            return n

        if variant == "the camera's size":
            return height, width
        if variant == "width as height":
            return nearest(height), nearest(height)
        return nearest(height), nearest(width)
    return fn


MUTANTS = [
    Mutant("ch08.fold_conv_bn", "a BatchNorm in training mode is folded",
           _fold("no training check")),
    Mutant("ch08.fold_conv_bn", "errors that say nothing", _fold("vague errors")),
    Mutant("ch08.fold_conv_bn", "returns the pair as a Sequential", _fold("sequential")),
    Mutant("ch08.fold_conv_bn", "eps left out", _fold("no eps")),
    Mutant("ch08.fold_conv_bn", "eps outside the square root", _fold("eps outside the root")),
    Mutant("ch08.fold_conv_bn", "divides by the variance", _fold("standard deviation as variance")),
    Mutant("ch08.fold_conv_bn", "groups dropped", _fold("groups dropped")),
    Mutant("ch08.fold_conv_bn", "padding dropped", _fold("padding dropped")),
    Mutant("ch08.fold_conv_bn", "scale on the input-channel axis",
           _fold("scale on the input axis")),
    Mutant("ch08.fold_conv_bn", "conv bias not scaled", _fold("conv bias not scaled")),
    Mutant("ch08.fold_conv_bn", "conv bias dropped", _fold("conv bias dropped")),
    Mutant("ch08.fold_conv_bn", "mean subtracted after scaling", _fold("mean not scaled")),
    Mutant("ch08.conv_cost", "kernel taken as square", _conv_cost("square kernel")),
    Mutant("ch08.conv_cost", "groups ignored", _conv_cost("groups ignored")),
    Mutant("ch08.conv_cost", "groups only in the parameters",
           _conv_cost("groups only in the parameters")),
    Mutant("ch08.conv_cost", "bias counted as MACs", _conv_cost("bias counted as MACs")),
    Mutant("ch08.conv_cost", "bias always counted", _conv_cost("bias always counted")),
    Mutant("ch08.conv_cost", "FLOPs (2 per MAC) returned as MACs", _conv_cost("FLOPs, not MACs")),
    Mutant("ch08.conv_cost", "height used twice", _conv_cost("height squared")),
    Mutant("ch08.network_cost", "stride ignored", _network("stride ignored")),
    Mutant("ch08.network_cost", "padding ignored", _network("padding ignored")),
    Mutant("ch08.network_cost", "dilation ignored", _network("dilation ignored")),
    Mutant("ch08.network_cost", "each conv counted at its input size",
           _network("counted at the input size")),
    Mutant("ch08.network_cost", "the height's size used for both axes",
           _network("height for both axes")),
    Mutant("ch08.network_cost", "BatchNorm's running statistics counted",
           _network("BatchNorm's statistics counted")),
    Mutant("ch08.network_cost", "BatchNorm costs MACs", _network("BatchNorm costs MACs")),
    Mutant("ch08.network_cost", "BatchNorm left out", _network("BatchNorm left out")),
    Mutant("ch08.network_cost", "pooling ignored", _network("pooling ignored")),
    Mutant("ch08.network_cost", "ceil_mode ignored", _network("ceil_mode ignored")),
    Mutant("ch08.choose_export_size", "the camera's size unchanged", _export("the camera's size")),
    Mutant("ch08.choose_export_size", "feature map size // stride", _export("size // stride")),
    Mutant("ch08.choose_export_size", "only the largest bin checked", _export("last bin only")),
    Mutant("ch08.choose_export_size", "output stride 8 assumed", _export("stride 8 always")),
    Mutant("ch08.choose_export_size", "the width chosen like the height",
           _export("width as height")),
    Mutant("ch08.choose_export_size", "the product of the bins, not their lcm",
           _export("product of the bins")),
]

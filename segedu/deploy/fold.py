"""Folding BatchNorm into the convolution before it: the first step of every deployment.

In eval mode a BatchNorm is a fixed affine map per channel,
``y = gamma * (x - mean) / sqrt(var + eps) + beta``. After a convolution ``x = W * z + b`` it
can be merged into the convolution's weights: with ``s = gamma / sqrt(var + eps)`` per output
channel,

    W' = s * W          (each output channel's filter scaled)
    b' = s * (b - mean) + beta

One layer instead of two, no extra memory traffic, and — what matters for INT8 — the weights
that get quantized are the ones the network really applies (quantizing W and then multiplying
by a large ``s`` would magnify the rounding error). ONNX Runtime's graph optimizer does the same
fusion (``quant_pre_process`` runs it before quantization); :func:`fold_conv_bn` is the lesson,
:func:`fold_batchnorm` applies it to a whole model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["fold_conv_bn", "fold_batchnorm", "count_batchnorms"]


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new ``nn.Conv2d`` computing ``bn(conv(x))`` with ``bn`` in eval mode (running stats).

    Any convolution folds — with or without a bias, strided, dilated, grouped or depthwise
    (MobileNet's): the scale ``s`` is per *output* channel, and a grouped conv's weight is
    still ``(out_channels, in_channels / groups, kh, kw)``. The inputs are not changed.

    Raises ``ValueError`` when the layers do not fit together (not a Conv2d and a
    BatchNorm2d, or different channel counts), and when ``bn`` is in training mode: then
    ``bn(conv(x))`` normalises with each batch's own statistics, which no fixed convolution
    computes (call ``bn.eval()``, or ``model.eval()``, first).
    """
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        raise ValueError(f"fold_conv_bn takes an nn.Conv2d and an nn.BatchNorm2d, got "
                         f"{type(conv).__name__} and {type(bn).__name__}.")
    if conv.out_channels != bn.num_features:
        raise ValueError(f"the conv has {conv.out_channels} output channels but the BatchNorm "
                         f"normalises {bn.num_features}: fold a BatchNorm into the conv whose "
                         "output it normalises.")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("this BatchNorm keeps no running statistics (track_running_stats="
                         "False): it normalises with each batch's statistics and cannot fold.")
    if bn.training:
        raise ValueError("the BatchNorm is in training mode: it normalises with each batch's "
                         "own statistics, which no fixed convolution computes. Fold the "
                         "deployed network: call bn.eval() (or model.eval()) first.")
    folded = copy.deepcopy(conv)
    folded.bias = nn.Parameter(torch.zeros(conv.out_channels, dtype=conv.weight.dtype,
                                           device=conv.weight.device)) if conv.bias is None \
        else folded.bias
    with torch.no_grad():
        gamma = bn.weight if bn.affine else torch.ones_like(bn.running_var)
        beta = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
        s = gamma / torch.sqrt(bn.running_var + bn.eps)                  # (out,)
        folded.weight.copy_(conv.weight * s.view(-1, 1, 1, 1))          # W' = s W
        bias = conv.bias if conv.bias is not None else torch.zeros_like(s)
        folded.bias.copy_(s * (bias - bn.running_mean) + beta)           # b' = s (b - mean) + beta
    return folded


def _pairs(module: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) child names of ``module`` where the BatchNorm is registered right after the
    conv: neighbours in an ``nn.Sequential``, ``conv1``/``bn1`` in a ResNet block, the ``1``/``2``
    of DeepLab's image pooling. That the forward pass also runs them in that order is an
    assumption; the tests check it by comparing outputs for every model in the zoo."""
    children = list(module.named_children())
    return [(a, b) for (a, conv), (b, bn) in zip(children, children[1:], strict=False)
            if type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d]


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every conv + BatchNorm pair folded
    (:func:`fold_conv_bn`); the BatchNorm becomes ``nn.Identity``. The original is unchanged.

    A BatchNorm registered right after a conv is folded into it; one that follows something
    else (a concatenation, an addition) stays — :func:`count_batchnorms` says how many did.
    """
    folded = copy.deepcopy(model).eval()
    for module in list(folded.modules()):
        for conv_name, bn_name in _pairs(module):
            setattr(module, conv_name, fold_conv_bn(getattr(module, conv_name),
                                                    getattr(module, bn_name)))
            setattr(module, bn_name, nn.Identity())
    return folded


def count_batchnorms(model: nn.Module) -> int:
    """How many ``nn.BatchNorm2d`` modules ``model`` still has."""
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())

"""Chapter 8 exercises (deployment): the functions students write in ``08_deployment.ipynb``.

Each exercise's reference is the implementation in :mod:`segedu.deploy`: folding BatchNorm
into a convolution (:func:`~segedu.deploy.fold_conv_bn`), counting parameters and
multiply-accumulates by hand (:func:`~segedu.deploy.conv_cost`,
:func:`~segedu.deploy.network_cost`, checked in the tests against PyTorch's own
``FlopCounterMode``), and the open-ended choice of a PSPNet deployment size
(:func:`~segedu.deploy.pspnet_export_size`), measured with :mod:`segedu.core.sizes`. Case
inputs are built from seeded generators, so the student's process and the grader's build the
same tensors and modules.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ...core.sizes import resnet_feature_size
from ...deploy.export import pspnet_export_size
from ...deploy.fold import fold_conv_bn
from ...deploy.measure import conv_cost, network_cost
from ..engine.exercise import Case, Exercise
from .cases import bins_tile, const, every_failure, randn, refusal

__all__ = ["EXERCISES"]


# --------------------------------------------------------------------------- helpers


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], *,
             seed: int, groups: int = 1, bias: bool = False, stride: int = 1, padding: int = 0,
             dilation: int = 1, eps: float = 1e-5, variance: tuple[float, float] = (0.3, 3.0),
             training: bool = False, bn_channels: int | None = None) -> Callable[[], tuple]:
    """(conv, bn): a conv with seeded weights and a BatchNorm with seeded running statistics
    and affine parameters (not the identity), in eval mode unless ``training``."""
    def make() -> tuple:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias)
        bn = nn.BatchNorm2d(bn_channels or out_channels, eps=eps)
        low, high = variance
        c = bn.num_features
        with torch.no_grad():
            fan_in = conv.weight[0].numel()
            conv.weight.copy_(randn(*conv.weight.shape, seed=seed) / fan_in ** 0.5)
            if bias:
                conv.bias.copy_(randn(out_channels, seed=seed + 1) * 0.5)
            bn.running_mean.copy_(randn(c, seed=seed + 2) * 0.5)
            bn.running_var.copy_(low + (high - low) * torch.sigmoid(randn(c, seed=seed + 3)))
            bn.weight.copy_(1 + 0.5 * randn(c, seed=seed + 4))
            bn.bias.copy_(0.5 * randn(c, seed=seed + 5))
        return conv, bn.train(training)
    return make


def _folded(value: Any) -> dict[str, Any]:
    """Summary of ``fold_conv_bn``: one ``nn.Conv2d``, its layout, and what it computes on a
    seeded input (compared with the reference's folded conv, itself equal to the eval-mode
    pair to 1e-5)."""
    if not isinstance(value, nn.Conv2d):
        raise TypeError(f"fold_conv_bn must return one nn.Conv2d (the point of folding: one "
                        f"layer instead of two), got {type(value).__name__}")
    layout = {"kernel_size": value.kernel_size, "stride": value.stride,
              "padding": value.padding, "dilation": value.dilation, "groups": value.groups}
    x = randn(2, value.in_channels, 13, 10, seed=99)
    return {"layout": layout, "output": value(x)}


def _counts(value: Any) -> tuple[int, int]:
    """Summary of the counting exercises: the pair (parameters, MACs) of Python ints."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"return the pair (parameters, macs), got {type(value).__name__}"
                        + (f" of length {len(value)}" if isinstance(value, (tuple, list))
                           else ""))
    for name, v in zip(("parameters", "macs"), value, strict=True):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be a Python int, got {type(v).__name__} {v!r} "
                            "(count with integer arithmetic; .item() turns a tensor into one)")
    return int(value[0]), int(value[1])


def _network(layers: Callable[[], list[nn.Module]], height: int,
             width: int) -> Callable[[], tuple]:
    """(an nn.Sequential of ``layers()``, height, width); the weights do not matter."""
    def make() -> tuple:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return nn.Sequential(*layers()), height, width
    return make


def _conv_bn_relu(cin: int, cout: int, **kw: Any) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, bias=False, **kw), nn.BatchNorm2d(cout), nn.ReLU()]


def _separable(cin: int, cout: int, stride: int) -> list[nn.Module]:
    """MobileNet's depthwise-separable block: 3x3 depthwise, then 1x1 pointwise."""
    return [nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False),
            nn.BatchNorm2d(cin), nn.ReLU6(),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()]


def _export_outcome(height: int, width: int, output_stride: int,
                    bins: tuple[int, ...]) -> Callable[[Any], dict[str, bool]]:
    """Summary of ``choose_export_size``, measured: how far each side is from the request,
    and whether every bin cuts the feature map the backbone makes of it into equal cells."""
    reach = output_stride * math.lcm(*bins)

    def summary(value: Any) -> dict[str, bool]:
        if not isinstance(value, (tuple, list)) or len(value) != 2 or any(
                isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise TypeError(f"return the pair (height, width) of Python ints, got {value!r}")
        outcome = {}
        for name, got, asked in (("height", value[0], height), ("width", value[1], width)):
            outcome[f"{name} at least 32 and less than {reach} pixels from {asked}"] = \
                32 <= got <= 8192 and abs(got - asked) < reach
            outcome[f"every bin tiles the feature map of the {name}"] = \
                32 <= got <= 8192 and bins_tile(resnet_feature_size(got, output_stride), bins)
        return outcome
    return summary


def _export_case(name: str, height: int, width: int, output_stride: int,
                 bins: tuple[int, ...] = (1, 2, 3, 6), **kw: Any) -> Case:
    return Case(name, const(height, width, output_stride, bins),
                summary=_export_outcome(height, width, output_stride, bins), **kw)


# --------------------------------------------------------------------------- exercises

FOLD_CONV_BN = Exercise(
    id="ch08.fold_conv_bn",
    function="fold_conv_bn",
    reference=fold_conv_bn,
    summary=_folded,
    judge=every_failure,
    rtol=1e-5,
    atol=1e-5,
    task=(
        "Return one new nn.Conv2d that computes what the convolution followed by the "
        "BatchNorm compute in eval mode, for any convolution (with or without a bias, strided, "
        "grouped, depthwise) and any eps; leave the two layers unchanged. Refuse, with a "
        "ValueError that says what is wrong and what to do, a BatchNorm in training mode and "
        "a BatchNorm whose channel count is not the conv's."
    ),
    hint=(
        "In eval mode BatchNorm is a fixed affine map per channel: a scale and a shift that "
        "depend only on its stored statistics and parameters. Write what it does to one "
        "output channel of the convolution, and see which of the convolution's numbers absorb "
        "the scale and which the shift."
    ),
    hints=(
        "Which quantity goes wrong: where eps goes (inside the square root, with the running "
        "variance), which axis the per-channel scale multiplies (the output channels: the "
        "weight's first axis, also for a grouped conv), the shift (the conv's own bias is "
        "shifted and scaled too; no bias counts as 0), or the new layer (the same kernel, "
        "stride, padding, dilation and groups, now with a bias).",
        "Worked example: one channel with weight 2, no bias, running mean 1, running variance "
        "3, eps 1, gamma 4, beta 0.5: the scale is 4 / sqrt(3 + 1) = 2, so the folded weight "
        "is 4 and the folded bias 2 * (0 - 1) + 0.5 = -1.5.",
    ),
    answer_fragments=("torch.sqrt(bn.running_var + bn.eps)", "(bias - bn.running_mean)"),
    cases=[
        Case("3 -> 8 channels, 3x3, no conv bias", _conv_bn(3, 8, 3, padding=1, seed=1),
             points=2),
        Case("a conv with a bias", _conv_bn(4, 6, 3, bias=True, seed=2), points=2),
        Case("grouped conv (groups 2), stride 2", _conv_bn(4, 6, 3, groups=2, stride=2,
                                                            padding=1, seed=3), points=2),
        Case("depthwise 3x3 (MobileNet), eps 1e-3", _conv_bn(6, 6, 3, groups=6, padding=1,
                                                              eps=1e-3, seed=4), points=2),
        Case("eps 0.5 with small variances", _conv_bn(3, 4, 1, eps=0.5, variance=(0.01, 0.1),
                                                      bias=True, seed=5)),
        Case("a BatchNorm in training mode is refused",
             _conv_bn(3, 4, 3, training=True, seed=6),
             summary=refusal(ValueError, {"the message says to call .eval()": ("eval",)})),
        Case("mismatched channels are refused", _conv_bn(4, 8, 1, bn_channels=6, seed=7),
             summary=refusal(ValueError, {"the message names both channel counts": ("8", "6")})),
        Case("dilated 1x3 kernel with a bias, 5 -> 3 channels",
             _conv_bn(5, 3, (1, 3), dilation=2, padding=(0, 2), bias=True, seed=8), points=2,
             hidden=True),
    ],
)

CONV_COST = Exercise(
    id="ch08.conv_cost",
    function="conv_cost",
    reference=conv_cost,
    summary=_counts,
    task=(
        "Return (parameters, MACs) of a convolution from its hyper-parameters and the size of "
        "the map it outputs: how many numbers it stores and how many multiply-accumulates it "
        "performs. Count one MAC per weight-times-input multiplication added into an output; "
        "a bias adds parameters but no MACs. kernel_size is an int or a (height, width) pair."
    ),
    hint=(
        "Every output value is one filter applied to the input window under it. Ask how many "
        "numbers one filter holds (what a group changes about that), how many filters there "
        "are, and how many output values each filter produces."
    ),
    hints=(
        "Which quantity goes wrong: the channels one filter sees (in_channels / groups, not "
        "in_channels), the bias (out_channels more parameters, and no MACs), a non-square "
        "kernel (height times width), or the output size (height times width, times "
        "out_channels).",
        "Worked example: 64 -> 128 channels, 3x3, bias, output 56x56: one filter has "
        "64 * 9 = 576 weights; 128 * 576 + 128 = 73,856 parameters; 128 * 56 * 56 * 576 = "
        "231,211,008 MACs. Depthwise 32 channels (groups 32), 3x3, no bias, output 10x10: "
        "288 parameters, 28,800 MACs.",
    ),
    answer_fragments=("(in_channels // groups) * kh * kw",),
    cases=[
        Case("VGG's 3x3, 64 -> 128 at 56x56", const(64, 128, 3, 56, 56)),
        Case("no bias", const(16, 32, 3, 20, 20, 1, False)),
        Case("a 1x1 conv on a non-square map", const(24, 40, 1, 9, 13)),
        Case("depthwise 3x3 (groups = channels)", const(32, 32, 3, 10, 10, 32, False),
             points=2),
        Case("grouped, groups 4", const(16, 8, 3, 7, 5, 4)),
        Case("a (1, 7) kernel", const(12, 6, (1, 7), 8, 3)),
        Case("groups 3, 5x5, bias, 15x1", const(9, 6, 5, 15, 1, 3, True), hidden=True),
    ],
)

NETWORK_COST = Exercise(
    id="ch08.network_cost",
    function="network_cost",
    reference=network_cost,
    summary=_counts,
    task=(
        "Return (parameters, MACs) of a plain nn.Sequential of Conv2d, BatchNorm2d, "
        "max-pooling and activation layers on a height x width input, counted by hand: each "
        "convolution at the size of the map it really outputs. BatchNorm's scale and shift "
        "are parameters, but it costs no MACs (it is folded into the conv before deployment). "
        "The check is PyTorch's own: the parameters of the module, and its FlopCounterMode, "
        "which counts 2 FLOPs per MAC."
    ),
    hint=(
        "Walk through the layers in order, keeping track of the map's height and width as "
        "each layer changes it; a convolution costs what the previous exercise says at the "
        "size it outputs. Only some layers hold parameters or cost MACs."
    ),
    hints=(
        "Which quantity goes wrong: the size each conv outputs (its stride, padding and "
        "dilation, and every pooling layer before it, on both axes), BatchNorm (2 parameters "
        "per channel, no MACs), or which layers count at all (activations and pooling: "
        "nothing).",
        "Worked example: 3 -> 8 conv 3x3 stride 2 padding 1 without bias, BatchNorm(8), ReLU, "
        "max-pool 2, 8 -> 4 conv 1x1, on 32x32: the first conv outputs 16x16 (216 parameters, "
        "55,296 MACs), BatchNorm adds 16 parameters, pooling gives 8x8, the 1x1 conv has 36 "
        "parameters and 2,048 MACs: (268, 57,344).",
    ),
    answer_fragments=("conv_output_size(h, k[0], s[0], p[0], d[0])",),
    cases=[
        Case("conv-BN-ReLU twice at 32x32",
             _network(lambda: [*_conv_bn_relu(3, 8, padding=1),
                               *_conv_bn_relu(8, 8, padding=1)], 32, 32)),
        Case("a stride-2 conv on an odd 33x47 input",
             _network(lambda: [nn.Conv2d(3, 16, 3, stride=2, padding=1),
                               nn.Conv2d(16, 4, 3, stride=2)], 33, 47), points=2),
        Case("max-pooling between convs",
             _network(lambda: [*_conv_bn_relu(3, 8, padding=1), nn.MaxPool2d(2),
                               *_conv_bn_relu(8, 16, padding=1), nn.MaxPool2d(3, stride=2),
                               nn.Conv2d(16, 5, 1)], 40, 36), points=2),
        Case("a dilated conv that keeps the size",
             _network(lambda: [nn.Conv2d(4, 4, 3, padding=4, dilation=4), nn.ReLU(),
                               nn.Conv2d(4, 2, 3)], 21, 17)),
        Case("depthwise-separable blocks (MobileNet)",
             _network(lambda: [*_conv_bn_relu(3, 16, stride=2, padding=1),
                               *_separable(16, 24, 2), *_separable(24, 24, 1)], 64, 48),
             points=2),
        Case("ceil-mode pooling, 1x3 kernels, dilation (2, 1), 29x30",
             _network(lambda: [nn.Conv2d(3, 6, (1, 3), padding=(0, 1)), nn.BatchNorm2d(6),
                               nn.MaxPool2d(2, ceil_mode=True),
                               nn.Conv2d(6, 6, (3, 1), stride=(2, 1), groups=3),
                               nn.Conv2d(6, 4, 3, dilation=(2, 1), bias=False)], 29, 30),
             points=2, hidden=True),
    ],
)

CHOOSE_EXPORT_SIZE = Exercise(
    id="ch08.choose_export_size",
    function="choose_export_size",
    reference=pspnet_export_size,  # one answer: the nearest fitting size
    judge=every_failure,
    time_limit_s=2.0,
    task=(
        "Open-ended: a camera delivers height x width frames, and PSPNet is exported at one "
        "fixed size. Choose a deployment size (height, width) near the camera's for which "
        "every pyramid bin cuts the backbone's feature map into equal cells, so that each "
        "bin is a plain average pool (a bin that does not divide the map exports as an index "
        "graph). Each side must be at least 32 and less than output_stride x lcm(bins) "
        "pixels from the request; the grader measures the cells of your size."
    ),
    hint=(
        "The bins see the backbone's last feature map, not the frame: work out that map's "
        "side for a candidate size, with the package's size arithmetic, and ask when every "
        "bin divides it. Then look for the nearest candidate, on each axis separately."
    ),
    hints=(
        "Which quantity goes wrong: the map's side (the stem and each strided stage round up, "
        "it is not size // output_stride), the condition (every bin must divide the map, so "
        "their least common multiple must), or an axis left as it was (height and width are "
        "checked separately).",
        "Worked example: 480 x 640 at output stride 8 gives a 60 x 80 map; 60 fits (1, 2, 3 "
        "and 6 divide it), 80 does not; the nearest widths whose map fits are 624 (map 78) "
        "and 672 (map 84). (480, 624) and (480, 672) both earn full marks.",
    ),
    answer_fragments=(),
    cases=[
        _export_case("a VGA camera, 480 x 640, stride 8", 480, 640, 8, points=2),
        _export_case("720p, 720 x 1280, stride 8", 720, 1280, 8),
        _export_case("a VOC image, 500 x 375, stride 16", 500, 375, 16),
        _export_case("bins 1, 2, 4 at stride 16, 300 x 200", 300, 200, 16, (1, 2, 4)),
        _export_case("Cityscapes, 1024 x 2048, stride 8", 1024, 2048, 8, hidden=True),
        _export_case("a small 90 x 70 frame, stride 32, bins 1, 3", 90, 70, 32, (1, 3),
                     hidden=True),
        _export_case("bins 1, 2, 3, 4 at stride 8, 256 x 320", 256, 320, 8, (1, 2, 3, 4),
                     hidden=True),
    ],
)

EXERCISES = [FOLD_CONV_BN, CONV_COST, NETWORK_COST, CHOOSE_EXPORT_SIZE]

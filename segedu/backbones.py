"""Backbones written from scratch: VGG16 (Simonyan & Zisserman, 2015), ResNet-50/101
(He et al., CVPR 2016), MobileNetV3-Large (Howard et al., ICCV 2019) and the aligned
Xception-65 of DeepLab v3+ (Chen et al., ECCV 2018), with the dilation ("atrous") option
segmentation networks need.

Every network here except Xception (torchvision has none) has the same module names, and so
the same ``state_dict`` keys and shapes, as torchvision's model of the same name. That is how a
learner gets real ImageNet weights into code they can read:
``model.load_state_dict(torchvision_model.state_dict())`` with ``strict=True`` (see
:func:`load_imagenet_weights`).

Segmentation networks use a backbone as a feature extractor. Each backbone has
``forward_features(x) -> dict[str, Tensor]`` returning named intermediate maps
(``pool1``..``pool5`` for VGG, ``layer1``..``layer4`` for ResNet, ``C0``..``C5`` for
MobileNetV3, ``entry_block1``..``out`` for Xception) and ``feature_channels``, the channel
count of each; MobileNetV3 and Xception also have ``feature_strides``, the output stride of
each map. ``include_top=False`` drops the ImageNet classifier, as torchvision's
``IntermediateLayerGetter`` does.

Two course-specific options, both off by default:

* ``width`` multiplies every channel count (``width=0.125`` gives a VGG16 with 8..64 channels).
  The CPU profile trains the *same* architecture at reduced width, because a 134M-parameter
  FCN cannot learn anything in a CPU minute. Only ``width=1`` matches torchvision.
* ``batch_norm=True`` for VGG16 gives torchvision's ``vgg16_bn`` (SegNet's encoder).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from .validation import check_image_batch

__all__ = [
    "VGG16",
    "vgg16",
    "vgg16_bn",
    "Bottleneck",
    "ResNet",
    "resnet50",
    "resnet101",
    "ConvBNActivation",
    "SqueezeExcitation",
    "InvertedResidual",
    "MobileNetV3Features",
    "MobileNetV3",
    "mobilenet_v3_large",
    "SeparableConv2d",
    "XceptionBlock",
    "Xception",
    "xception65",
    "scaled",
    "load_imagenet_weights",
    "WeightsUnavailableError",
    "download_state_dict",
]


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1 — the width multiplier used everywhere."""
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}.")
    return max(1, int(round(channels * width)))


# --------------------------------------------------------------------------------------------
# VGG16 (configuration "D" of Simonyan & Zisserman, Table 1)
# --------------------------------------------------------------------------------------------

#: Output channels of the 13 conv layers; "M" is a 2x2 max-pool (stride 2) ending a block.
VGG16_CONFIG: tuple[int | str, ...] = (
    64, 64, "M",            # conv1_1, conv1_2, pool1  -> stride 2
    128, 128, "M",          # conv2_x, pool2           -> stride 4
    256, 256, 256, "M",     # conv3_x, pool3           -> stride 8
    512, 512, 512, "M",     # conv4_x, pool4           -> stride 16
    512, 512, 512, "M",     # conv5_x, pool5           -> stride 32
)


class VGG16(nn.Module):
    """VGG16 with torchvision's module layout (``features``, ``avgpool``, ``classifier``).

    ``features`` is one ``nn.Sequential`` of 3x3 convs (padding 1, so they keep the size),
    optional BatchNorm, ReLU and five 2x2 max-pools; each pool halves H and W (rounding down).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        batch_norm: bool = False,
        width: float = 1.0,
        include_top: bool = True,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.width = width
        layers: list[nn.Module] = []
        self.feature_channels: dict[str, int] = {}
        channels, block = in_channels, 1
        for v in VGG16_CONFIG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                self.feature_channels[f"pool{block}"] = channels
                block += 1
                continue
            out = scaled(v, width)
            layers.append(nn.Conv2d(channels, out, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=True))
            channels = out
        self.features = nn.Sequential(*layers)
        # Names of the outputs of the five pools, by their index in ``features``.
        pool_indices = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
        self._pool_names = {i: f"pool{b}" for b, i in enumerate(pool_indices, start=1)}

        self.fc_channels = scaled(4096, width)
        if include_top:
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(channels * 7 * 7, self.fc_channels),  # fc6
                nn.ReLU(inplace=True),
                nn.Dropout(0.5),
                nn.Linear(self.fc_channels, self.fc_channels),  # fc7
                nn.ReLU(inplace=True),
                nn.Dropout(0.5),
                nn.Linear(self.fc_channels, num_classes),        # fc8
            )
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's initialisation, so a from-scratch run matches theirs in spirit.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The outputs of pool1..pool5 (strides 2, 4, 8, 16, 32)."""
        check_image_batch(x, self.in_channels, min_size=32)
        features: dict[str, torch.Tensor] = OrderedDict()
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._pool_names:
                features[self._pool_names[i]] = x
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "classifier"):
            raise ValueError("this VGG16 was built with include_top=False; "
                             "use forward_features(x) for feature maps.")
        x = self.forward_features(x)["pool5"]
        x = self.avgpool(x)
        return self.classifier(torch.flatten(x, 1))


def vgg16(**kwargs) -> VGG16:
    """VGG16 (state_dict-compatible with ``torchvision.models.vgg16`` at ``width=1``)."""
    return VGG16(batch_norm=False, **kwargs)


def vgg16_bn(**kwargs) -> VGG16:
    """VGG16 with BatchNorm (compatible with ``torchvision.models.vgg16_bn`` at ``width=1``)."""
    return VGG16(batch_norm=True, **kwargs)


# --------------------------------------------------------------------------------------------
# ResNet (He et al., "Deep Residual Learning", Sec. 3.3 and Table 1; bottleneck of Fig. 5)
# --------------------------------------------------------------------------------------------


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride, dilation) -> 1x1 expand (x4), plus the shortcut.

    As in torchvision ("ResNet v1.5"), the stride sits on the 3x3 conv, not the first 1x1.
    A dilated 3x3 uses ``padding = dilation`` so it keeps the size.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride,
                               padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.dilation = dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with torchvision's module names (``conv1, bn1, layer1..layer4, fc``).

    ``replace_stride_with_dilation=[False, True, True]`` keeps layer3 and layer4 at stride 8:
    their stride-2 convs become stride 1 and later 3x3 convs are dilated by 2 and 4 instead
    (DeepLab's "atrous" trick; torchvision's segmentation models use exactly this). The
    first block of a dilated layer keeps the previous dilation, as in torchvision.
    """

    def __init__(
        self,
        layers: Sequence[int],
        num_classes: int = 1000,
        *,
        replace_stride_with_dilation: Sequence[bool] = (False, False, False),
        width: float = 1.0,
        include_top: bool = True,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(replace_stride_with_dilation) != 3:
            raise ValueError(
                "replace_stride_with_dilation must have 3 entries (for layer2, layer3, layer4), "
                f"got {list(replace_stride_with_dilation)}."
            )
        self.in_channels = in_channels
        self.width = width
        self.inplanes = scaled(64, width)
        self.dilation = 1
        # Stem: 7x7/2 conv + 3x3/2 max-pool -> stride 4.
        self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        dilate = [False, *replace_stride_with_dilation]
        self.feature_channels: dict[str, int] = {}
        for i, (planes, blocks, stride) in enumerate(
            zip((64, 128, 256, 512), layers, (1, 2, 2, 2), strict=True), start=1
        ):
            layer = self._make_layer(scaled(planes, width), blocks, stride, dilate[i - 1])
            setattr(self, f"layer{i}", layer)
            self.feature_channels[f"layer{i}"] = self.inplanes
        if include_top:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(self.inplanes, num_classes)
        self._init_weights()

    def _make_layer(self, planes: int, blocks: int, stride: int, dilate: bool) -> nn.Sequential:
        previous_dilation = self.dilation
        if dilate:  # trade this layer's stride for dilation in the layers that follow
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, kernel_size=1,
                          stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, previous_dilation)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes, dilation=self.dilation)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Outputs of layer1..layer4 (stride 4, 8, 16, 32 — or 8 from layer2 on, if dilated)."""
        check_image_batch(x, self.in_channels)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features: dict[str, torch.Tensor] = OrderedDict()
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            features[name] = x
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "fc"):
            raise ValueError("this ResNet was built with include_top=False; "
                             "use forward_features(x) for feature maps.")
        x = self.avgpool(self.forward_features(x)["layer4"])
        return self.fc(torch.flatten(x, 1))


def resnet50(**kwargs) -> ResNet:
    """ResNet-50: bottleneck blocks [3, 4, 6, 3] (compatible with torchvision's ``resnet50``)."""
    return ResNet([3, 4, 6, 3], **kwargs)


def resnet101(**kwargs) -> ResNet:
    """ResNet-101: bottleneck blocks [3, 4, 23, 3] (compatible with torchvision's ``resnet101``)."""
    return ResNet([3, 4, 23, 3], **kwargs)


# --------------------------------------------------------------------------------------------
# MobileNetV3-Large (Howard et al., "Searching for MobileNetV3", ICCV 2019, Table 1 and Sec. 5)
# --------------------------------------------------------------------------------------------


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to the nearest multiple of ``divisor`` (at least ``divisor``),
    never more than 10% below ``value`` — the rule of the MobileNet reference code, which
    torchvision copies. MobileNetV3 uses it instead of :func:`scaled`, so ``width=0.125``
    gives 8..144 channels, every one a multiple of 8."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


#: Table 1 of the paper, one row per bottleneck ("bneck"): kernel size, expansion size,
#: output channels, squeeze-and-excite, nonlinearity (RE = ReLU, HS = h-swish), stride.
#: The input of each row is the previous row's output; the stem gives 16 channels.
MOBILENET_V3_LARGE_CONFIG: tuple[tuple[int, int, int, bool, str, int], ...] = (
    (3, 16, 16, False, "RE", 1),     # 112x112 -> stride 2 (after the stem)
    (3, 64, 24, False, "RE", 2),     # -> stride 4   ("C1")
    (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2),      # -> stride 8   ("C2")
    (5, 120, 40, True, "RE", 1),
    (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2),    # -> stride 16  ("C3")
    (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1),
    (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2),    # -> stride 32  ("C4"; stride 16 if dilated)
    (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1),
)


class ConvBNActivation(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> optional activation; torchvision's ``Conv2dNormActivation``
    with MobileNetV3's BatchNorm settings (eps 0.001, momentum 0.01, from the TF reference).

    ``padding = (kernel_size - 1) // 2 * dilation`` keeps the size at stride 1 and gives
    ``ceil(H / 2)`` at stride 2, so any input size works.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        groups: int = 1,
        dilation: int = 1,
        activation: type[nn.Module] | None = nn.ReLU,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                      padding=(kernel_size - 1) // 2 * dilation, dilation=dilation,
                      groups=groups, bias=False),
            nn.BatchNorm2d(out_channels, eps=0.001, momentum=0.01),
        ]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_channels
        self.stride = stride


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excite (Hu et al.) as MobileNetV3 uses it (Sec. 5.3, Fig. 4): global average
    pool -> 1x1 conv ``fc1`` (to a quarter of the channels) -> ReLU -> 1x1 conv ``fc2`` ->
    hard-sigmoid, and the input is scaled channel-wise by the result."""

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.avgpool(x)                                   # (N, C, 1, 1)
        scale = self.fc2(self.activation(self.fc1(scale)))
        return x * self.scale_activation(scale)


class InvertedResidual(nn.Module):
    """The MobileNetV2/V3 bottleneck (Sec. 5.3, Fig. 4): 1x1 expand -> k x k depthwise (stride,
    dilation) -> optional squeeze-and-excite -> 1x1 linear projection, plus the identity when the
    block keeps the stride and the channel count.

    As in torchvision, a dilated block (``dilation > 1``) puts stride 1 on its depthwise conv but
    still counts as a stage start (``_is_cn``, the attribute torchvision's segmentation builder
    looks for) and, because its nominal stride is 2, keeps no residual connection.
    """

    def __init__(
        self,
        in_channels: int,
        kernel_size: int,
        expanded_channels: int,
        out_channels: int,
        use_se: bool,
        activation: type[nn.Module],
        stride: int,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2, got {stride}.")
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expanded_channels != in_channels:  # the first bneck (16 -> 16) has no expansion
            layers.append(ConvBNActivation(in_channels, expanded_channels, 1,
                                           activation=activation))
        self.stride = 1 if dilation > 1 else stride  # the stride this block really applies
        layers.append(ConvBNActivation(expanded_channels, expanded_channels, kernel_size,
                                       self.stride, groups=expanded_channels, dilation=dilation,
                                       activation=activation))
        if use_se:
            layers.append(SqueezeExcitation(expanded_channels,
                                            _make_divisible(expanded_channels // 4)))
        layers.append(ConvBNActivation(expanded_channels, out_channels, 1, activation=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = out_channels
        self._is_cn = stride > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_res_connect else out


class MobileNetV3Features(nn.Sequential):
    """MobileNetV3's ``features``: the stem, the 15 bottlenecks and the final 1x1 conv, as one
    ``nn.Sequential`` (indices 0..16, the keys of torchvision's ``backbone.*``).

    ``forward_features`` returns the maps torchvision's segmentation models pick from it: the
    output of layer 0 and of every stage-starting (strided) layer and of the last layer, named
    ``C0``..``C5`` as in torchvision's comments. At width 1 and not dilated:

    ========  =====  =======  ======  ================================================
    name      layer  stride   chans   role
    ========  =====  =======  ======  ================================================
    ``C0``    0      2        16      stem
    ``C1``    2      4        24      low-level map at stride 4
    ``C2``    4      8        40      ``aux`` of ``deeplabv3_mobilenet_v3_large``
    ``C3``    7      16       80
    ``C4``    13     32 (16)  160
    ``C5``    16     32 (16)  960     ``out`` of ``deeplabv3_mobilenet_v3_large``
    ========  =====  =======  ======  ================================================

    (Strides in brackets: ``dilated=True``.) Note that ``C1``..``C4`` are the outputs of the
    *first* layer at their stride, not the last, as torchvision's ``stage_indices`` choose them.
    """

    def __init__(self, *args: nn.Module) -> None:
        super().__init__(*args)
        stride, strides = 1, []
        for layer in self:
            stride *= layer.stride
            strides.append(stride)
        stage_ends = sorted({0, len(self) - 1}
                            | {i for i, b in enumerate(self) if getattr(b, "_is_cn", False)})
        self._map_names = {i: f"C{k}" for k, i in enumerate(stage_ends)}
        self.feature_channels = {n: self[i].out_channels for i, n in self._map_names.items()}
        self.feature_strides = {n: strides[i] for i, n in self._map_names.items()}
        self.in_channels = next(m for m in self.modules() if isinstance(m, nn.Conv2d)).in_channels

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The maps ``C0``..``C5`` (see the class docstring for strides and channels)."""
        check_image_batch(x, self.in_channels)
        features: dict[str, torch.Tensor] = OrderedDict()
        for i, layer in enumerate(self):
            x = layer(x)
            if i in self._map_names:
                features[self._map_names[i]] = x
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, self.in_channels)
        return super().forward(x)


class MobileNetV3(nn.Module):
    """MobileNetV3-Large with torchvision's module names (``features``, ``avgpool``,
    ``classifier``), so torchvision's ``mobilenet_v3_large`` weights load strictly.

    ``dilated=True`` is torchvision's option for segmentation: the last stage (the 13th to 15th
    bnecks) trades its stride 2 for dilation 2 in its depthwise convs, so the network stops at
    output stride 16 (``C4``, ``C5``).

    Departures from the paper, all torchvision's: the head's two 1x1 convs on the pooled
    vector ("NBN" in Table 1) are ``nn.Linear`` layers (the same maths) with Dropout(0.2)
    between them; with ``width != 1`` the 1280-channel layer is scaled too.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        width: float = 1.0,
        dilated: bool = False,
        include_top: bool = True,
        in_channels: int = 3,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}.")
        self.in_channels = in_channels
        self.width = width
        channels = _make_divisible(16 * width)
        layers: list[nn.Module] = [  # stem: 3x3/2 conv, h-swish -> stride 2
            ConvBNActivation(in_channels, channels, 3, 2, activation=nn.Hardswish)
        ]
        last_stage = max(i for i, row in enumerate(MOBILENET_V3_LARGE_CONFIG) if row[-1] == 2)
        for i, (kernel, expanded, out, use_se, nl, stride) in enumerate(
            MOBILENET_V3_LARGE_CONFIG
        ):
            out = _make_divisible(out * width)
            layers.append(InvertedResidual(
                channels, kernel, _make_divisible(expanded * width), out, use_se,
                nn.Hardswish if nl == "HS" else nn.ReLU, stride,
                dilation=2 if dilated and i >= last_stage else 1,
            ))
            channels = out
        last_conv = 6 * channels  # 960 at width 1 (Table 1: "conv2d, 1x1", 960, HS)
        layers.append(ConvBNActivation(channels, last_conv, 1, activation=nn.Hardswish))
        self.features = MobileNetV3Features(*layers)
        self.feature_channels = self.features.feature_channels
        self.feature_strides = self.features.feature_strides
        if include_top:
            last_channel = _make_divisible(1280 * width)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(
                nn.Linear(last_conv, last_channel),
                nn.Hardswish(inplace=True),
                nn.Dropout(p=dropout, inplace=True),
                nn.Linear(last_channel, num_classes),
            )
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's initialisation.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The maps ``C0``..``C5`` of :class:`MobileNetV3Features`."""
        return self.features.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "classifier"):
            raise ValueError("this MobileNetV3 was built with include_top=False; "
                             "use forward_features(x) for feature maps.")
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v3_large(**kwargs) -> MobileNetV3:
    """MobileNetV3-Large (compatible with ``torchvision.models.mobilenet_v3_large`` at
    ``width=1``; ``dilated=True`` matches ``mobilenet_v3_large(dilated=True)``)."""
    return MobileNetV3(**kwargs)


# --------------------------------------------------------------------------------------------
# Aligned Xception-65 (Chollet, CVPR 2017; modified by DeepLab v3+, Chen et al., ECCV 2018,
# Sec. 3.2 and Fig. 4)
# --------------------------------------------------------------------------------------------


class SeparableConv2d(nn.Module):
    """Depthwise separable convolution (Xception Sec. 2; v3+ Sec. 3.1, Fig. 3): a 3x3
    *depthwise* conv (one filter per channel; ``stride``, and ``dilation`` for the *atrous*
    version) followed by a 1x1 *pointwise* conv that mixes the channels.

    v3+'s modification (3) in Sec. 3.2: BatchNorm and ReLU after the depthwise conv, "similar
    to MobileNet design". The pointwise conv is followed by BatchNorm, and by a ReLU only when
    ``relu_out`` (exit flow block 2); elsewhere the *next* separable conv starts with a ReLU
    (the pre-activation order of the original Xception, kept by v3+'s reference code).
    ``padding = dilation`` keeps the size at stride 1 and gives ``ceil(H / 2)`` at stride 2.

    Departure from the reference code: DeepLab's TensorFlow ``xception_65`` (and so its released
    checkpoints) has BatchNorm but *no* ReLU after the depthwise conv, except in exit block 2
    (``activation_fn_in_separable_conv=True``). We follow the paper's text; the parameter
    count is the same either way.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        dilation: int = 1,
        *,
        relu_out: bool = False,
    ) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=stride,
                                   padding=dilation, dilation=dilation, groups=in_channels,
                                   bias=False)
        self.bn_depthwise = nn.BatchNorm2d(in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.bn_pointwise = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.relu_out = relu_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn_depthwise(self.depthwise(x)))      # (N, C_in, H/s, W/s)
        x = self.bn_pointwise(self.pointwise(x))                 # (N, C_out, H/s, W/s)
        return self.relu(x) if self.relu_out else x


class XceptionBlock(nn.Module):
    """One Xception module (Fig. 4 of v3+): three separable convs with ``depths`` channels, the
    third one strided (it replaces the original's max-pool, so that it can be made atrous),
    plus a shortcut:

    * ``skip="conv"``: 1x1 conv (strided) + BatchNorm on the input (entry flow, exit block 1);
    * ``skip="sum"``: the identity (middle flow);
    * ``skip="none"``: no shortcut (exit block 2, whose convs end in ReLU: ``relu_out``).

    :meth:`forward_with_hidden` also returns the output of the second separable conv, which is
    still at the input's stride: v3+'s decoder takes its low-level features from there.
    """

    def __init__(
        self,
        in_channels: int,
        depths: Sequence[int],
        *,
        stride: int = 1,
        dilation: int = 1,
        skip: str = "conv",
        relu_out: bool = False,
    ) -> None:
        super().__init__()
        if len(depths) != 3:
            raise ValueError(f"an Xception block has 3 separable convs, got depths {depths}.")
        if skip not in ("conv", "sum", "none"):
            raise ValueError(f"skip must be 'conv', 'sum' or 'none', got {skip!r}.")
        if skip == "sum" and (stride != 1 or in_channels != depths[-1]):
            raise ValueError("an identity shortcut (skip='sum') needs stride 1 and "
                             f"in_channels == depths[-1]; got stride {stride}, "
                             f"{in_channels} -> {depths[-1]}. Use skip='conv'.")
        self.pre_activation = not relu_out
        self.sepconv1 = SeparableConv2d(in_channels, depths[0], 1, dilation, relu_out=relu_out)
        self.sepconv2 = SeparableConv2d(depths[0], depths[1], 1, dilation, relu_out=relu_out)
        self.sepconv3 = SeparableConv2d(depths[1], depths[2], stride, dilation,
                                        relu_out=relu_out)
        self.skip = skip
        if skip == "conv":
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, depths[2], kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(depths[2]),
            )
        self.out_channels = depths[2]
        self.stride = stride
        self.dilation = dilation

    def forward_with_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(block output, output of the second separable conv)."""
        h = x
        hidden = x
        for conv in (self.sepconv1, self.sepconv2, self.sepconv3):
            if self.pre_activation:
                # Not in place: x is still needed by the shortcut, and hidden may be returned.
                h = torch.relu(h)
            h = conv(h)
            if conv is self.sepconv2:
                hidden = h
        if self.skip == "conv":
            h = h + self.shortcut(x)
        elif self.skip == "sum":
            h = h + x
        return h, hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_hidden(x)[0]


class Xception(nn.Module):
    """Aligned Xception-65, the backbone of DeepLab v3+ (Sec. 3.2, Fig. 4).

    * entry flow: 3x3/2 conv 32, 3x3 conv 64 (each + BN + ReLU), then blocks of 128, 256 and
      728 channels, each ending in a stride-2 separable conv (stride 4, 8, 16);
    * middle flow: 16 blocks of three 728-channel separable convs with identity shortcuts
      ("more layers", v3+ modification (1); the original Xception has 8);
    * exit flow: block 728-1024-1024 with stride 2 (stride 32), then separable convs 1536,
      1536, 2048, each followed by ReLU.

    All max-pools are stride-2 separable convs (modification (2)), and every depthwise conv is
    followed by BN + ReLU (modification (3); see :class:`SeparableConv2d`).

    ``output_stride`` (8, 16 or 32) makes the network *atrous* as DeepLab's reference does
    (``stack_blocks_dense``): once the stride reaches ``output_stride``, each later stride-2
    block runs at stride 1 with the current dilation, and the dilation of everything after it
    is multiplied by 2. Output stride 16: exit block 1 at dilation 1, exit block 2 at 2;
    output stride 8: entry block 3 at 1, middle flow and exit block 1 at 2, exit block 2 at 4.

    ``forward_features`` returns, in this order (channels at width 1; strides at
    ``output_stride=16``, in brackets 8 and 32):

    ================  ===========  =====  ==============================================
    name              stride       chans  what
    ================  ===========  =====  ==============================================
    ``entry_block1``  4            128    output of entry block 1
    ``low_level``     4            256    entry block 2, 2nd separable conv: the decoder's
                                          low-level input in v3+'s reference code
    ``entry_block2``  8            256    output of entry block 2
    ``entry_block3``  16 (8, 16)   728    output of entry block 3
    ``middle_flow``   16 (8, 16)   728    output of the middle flow
    ``out``           16 (8, 32)   2048   output of the exit flow
    ================  ===========  =====  ==============================================

    Every convolution pads so that stride 2 gives ``ceil(H / 2)``: any input of at least 1x1
    works (the output is ``ceil(H / output_stride)``). No ImageNet weights exist in
    torchvision, so this network trains from scratch here.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        output_stride: int = 32,
        width: float = 1.0,
        include_top: bool = True,
        in_channels: int = 3,
        middle_blocks: int = 16,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}.")
        self.in_channels = in_channels
        self.width = width
        self.output_stride = output_stride
        c32, c64 = scaled(32, width), scaled(64, width)
        # Entry flow stem: two plain 3x3 convs (stride 2).
        self.conv1 = nn.Conv2d(in_channels, c32, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c32)
        self.conv2 = nn.Conv2d(c32, c64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c64)
        self.relu = nn.ReLU(inplace=True)

        self._stride, self._dilation, self._channels = 2, 1, c64
        self.entry_flow = nn.Sequential(*(
            self._make_block((d, d, d), 2, "conv") for d in (128, 256, 728)
        ))
        self.middle_flow = nn.Sequential(*(
            self._make_block((728, 728, 728), 1, "sum") for _ in range(middle_blocks)
        ))
        self.exit_flow = nn.Sequential(
            self._make_block((728, 1024, 1024), 2, "conv"),
            self._make_block((1536, 1536, 2048), 1, "none", relu_out=True),
        )
        entry = [b.out_channels for b in self.entry_flow]
        self.feature_channels = {
            "entry_block1": entry[0], "low_level": entry[1], "entry_block2": entry[1],
            "entry_block3": entry[2], "middle_flow": entry[2],
            "out": self.exit_flow[1].out_channels,
        }
        strides = [2]
        for block in (*self.entry_flow, *self.middle_flow, *self.exit_flow):
            strides.append(strides[-1] * block.stride)
        n_mid = len(self.middle_flow)
        self.feature_strides = {
            "entry_block1": strides[1], "low_level": strides[1], "entry_block2": strides[2],
            "entry_block3": strides[3], "middle_flow": strides[3 + n_mid], "out": strides[-1],
        }
        if include_top:  # Chollet Sec. 3: global average pooling, then logistic regression
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(self._channels, num_classes)
        del self._stride, self._dilation, self._channels  # build-time state only
        self._init_weights()

    def _make_block(self, depths: Sequence[int], stride: int, skip: str,
                    relu_out: bool = False) -> XceptionBlock:
        depths = [scaled(d, self.width) for d in depths]
        dilation = self._dilation
        if self._stride == self.output_stride:  # atrous from here: trade stride for dilation
            self._dilation *= stride
            stride = 1
        else:
            self._stride *= stride
        block = XceptionBlock(self._channels, depths, stride=stride, dilation=dilation,
                              skip=skip, relu_out=relu_out)
        self._channels = depths[-1]
        return block

    def _init_weights(self) -> None:
        # He initialisation (fan_out), as DeepLab v3+'s PyTorch ports do.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The six named maps of the class docstring."""
        check_image_batch(x, self.in_channels)
        x = self.relu(self.bn1(self.conv1(x)))                   # (N, 32, H/2, W/2)
        x = self.relu(self.bn2(self.conv2(x)))                   # (N, 64, H/2, W/2)
        features: dict[str, torch.Tensor] = OrderedDict()
        features["entry_block1"] = x = self.entry_flow[0](x)     # (N, 128, H/4, W/4)
        x, features["low_level"] = self.entry_flow[1].forward_with_hidden(x)  # 256, H/4
        features["entry_block2"] = x                             # (N, 256, H/8, W/8)
        features["entry_block3"] = x = self.entry_flow[2](x)     # (N, 728, H/16, W/16)
        features["middle_flow"] = x = self.middle_flow(x)        # (N, 728, H/16, W/16)
        features["out"] = self.exit_flow(x)                      # (N, 2048, H/os, W/os)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "fc"):
            raise ValueError("this Xception was built with include_top=False; "
                             "use forward_features(x) for feature maps.")
        x = self.avgpool(self.forward_features(x)["out"])
        return self.fc(torch.flatten(x, 1))


def xception65(*, pretrained: bool = False, **kwargs) -> Xception:
    """Aligned Xception-65 of DeepLab v3+ (16 middle-flow blocks).

    There are no ImageNet weights for it here: ``pretrained=True`` raises a ``ValueError``
    that says so (a segmentation builder passes its ``pretrained_backbone`` on to it).
    """
    if pretrained:
        raise ValueError(
            "No ImageNet weights for Xception-65: torchvision has no Xception, and DeepLab's "
            "TensorFlow checkpoints are not converted in this course. Train it from scratch "
            "(pretrained_backbone=False), or choose a backbone with torchvision weights "
            "('resnet50', 'resnet101', 'mobilenet_v3_large') for pretrained_backbone=True."
        )
    return Xception(middle_blocks=16, **kwargs)


# --------------------------------------------------------------------------------------------
# ImageNet weights from torchvision
# --------------------------------------------------------------------------------------------


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be downloaded (no network, or the host is down)."""


#: torchvision builder name -> name of its default ImageNet weights enum.
_IMAGENET_WEIGHTS = {
    "vgg16": "VGG16_Weights",
    "vgg16_bn": "VGG16_BN_Weights",
    "resnet50": "ResNet50_Weights",
    "resnet101": "ResNet101_Weights",
    "mobilenet_v3_large": "MobileNet_V3_Large_Weights",
}


def download_state_dict(weights_enum: str, variant: str = "DEFAULT",
                        progress: bool = True) -> dict[str, torch.Tensor]:
    """Fetch a torchvision weights file (cached in ``~/.cache/torch``) and return its state_dict.

    Raises:
        WeightsUnavailableError: with the reason and what to do, when the download fails.
    """
    import torchvision.models as tvm
    import torchvision.models.segmentation as tvs

    enum = getattr(tvm, weights_enum, None) or getattr(tvs, weights_enum)
    weights = enum[variant] if variant != "DEFAULT" else enum.DEFAULT
    try:
        return weights.get_state_dict(progress=progress)
    except Exception as err:  # URLError, HTTPError, OSError, hash mismatch ...
        raise WeightsUnavailableError(
            f"Could not download {weights} from {weights.url}: {type(err).__name__}: {err}. "
            "Pretrained weights need the internet (they work on Colab). Without them, train "
            "from scratch (the CPU profile does) or copy the file into ~/.cache/torch/hub/"
            "checkpoints/ on this machine."
        ) from err


def load_imagenet_weights(model: nn.Module, arch: str, progress: bool = True) -> nn.Module:
    """Load torchvision's ImageNet weights for ``arch`` into our from-scratch ``model``.

    ``arch`` is one of ``vgg16``, ``vgg16_bn``, ``resnet50``, ``resnet101``,
    ``mobilenet_v3_large``. A model built with ``include_top=False`` receives everything but
    the classifier; otherwise the load is strict.
    """
    if arch not in _IMAGENET_WEIGHTS:
        raise ValueError(f"no ImageNet weights for {arch!r}; choose one of "
                         f"{sorted(_IMAGENET_WEIGHTS)}.")
    if getattr(model, "width", 1.0) != 1.0:
        raise ValueError(f"ImageNet weights exist only for width=1, this model has width="
                         f"{model.width}. Build it with width=1.0 to load them.")
    state = download_state_dict(_IMAGENET_WEIGHTS[arch], progress=progress)
    own = model.state_dict().keys()
    dropped = [k for k in state if k not in own and k.split(".")[0] in ("fc", "classifier")]
    for k in dropped:  # the classifier of an include_top=False backbone
        del state[k]
    model.load_state_dict(state, strict=True)
    return model

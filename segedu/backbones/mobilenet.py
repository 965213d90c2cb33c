"""MobileNetV3-Large (Howard et al., "Searching for MobileNetV3", ICCV 2019, Table 1 and Sec. 5)
with torchvision's module names, and the dilated variant torchvision's DeepLab v3 uses.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..core.validation import check_image_batch
from .common import init_weights, require_top

__all__ = [
    "MOBILENET_V3_LARGE_CONFIG",
    "ConvBNActivation",
    "SqueezeExcitation",
    "InvertedResidual",
    "MobileNetV3Features",
    "MobileNetV3",
    "mobilenet_v3_large",
]


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
        init_weights(self)


    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The maps ``C0``..``C5`` of :class:`MobileNetV3Features`."""
        return self.features.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_top(self, "classifier")
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v3_large(**kwargs) -> MobileNetV3:
    """MobileNetV3-Large (compatible with ``torchvision.models.mobilenet_v3_large`` at
    ``width=1``; ``dilated=True`` matches ``mobilenet_v3_large(dilated=True)``)."""
    return MobileNetV3(**kwargs)

"""ResNet-50/101 (He et al., CVPR 2016, Sec. 3.3, Table 1, the bottleneck of Fig. 5) with
torchvision's module names and the dilation option (``replace_stride_with_dilation``) that
FCN-ResNet, PSPNet and DeepLab use; RefineNet uses it undilated.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from ..core.model import scaled
from ..core.validation import check_image_batch
from .common import init_weights, require_top

__all__ = [
    "Bottleneck",
    "ResNet",
    "resnet50",
    "resnet101",
    "RESNETS",
    "resnet_by_name",
]


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
        init_weights(self, linear=False)

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
        require_top(self, "fc")
        x = self.avgpool(self.forward_features(x)["layer4"])
        return self.fc(torch.flatten(x, 1))


def resnet50(**kwargs) -> ResNet:
    """ResNet-50: bottleneck blocks [3, 4, 6, 3] (compatible with torchvision's ``resnet50``)."""
    return ResNet([3, 4, 6, 3], **kwargs)


def resnet101(**kwargs) -> ResNet:
    """ResNet-101: bottleneck blocks [3, 4, 23, 3] (compatible with torchvision's ``resnet101``)."""
    return ResNet([3, 4, 23, 3], **kwargs)


#: The ResNets the chapters offer, by the name a factory's ``backbone=`` argument takes.
RESNETS = {"resnet50": resnet50, "resnet101": resnet101}


def resnet_by_name(name: str, **kwargs) -> ResNet:
    """``resnet50(**kwargs)`` or ``resnet101(**kwargs)`` by name, with a clear error otherwise
    (FCN-ResNet, PSPNet, DeepLab and RefineNet all take ``backbone="resnet50" | "resnet101"``)."""
    if name not in RESNETS:
        raise ValueError(f"backbone must be one of {sorted(RESNETS)}, got {name!r}.")
    return RESNETS[name](**kwargs)

"""Backbones written from scratch: VGG16 (Simonyan & Zisserman, 2015) and ResNet-50/101
(He et al., CVPR 2016), with the dilation option segmentation networks need.

Every network here has the same module names, and so the same ``state_dict`` keys and shapes,
as torchvision's model of the same name. That is how a learner gets real ImageNet weights into
code they can read: ``model.load_state_dict(torchvision_model.state_dict())`` with
``strict=True`` (see :func:`load_imagenet_weights`).

Segmentation networks use a backbone as a feature extractor. Each backbone has
``forward_features(x) -> dict[str, Tensor]`` returning named intermediate maps
(``pool1``..``pool5`` for VGG, ``layer1``..``layer4`` for ResNet) and ``feature_channels``,
the channel count of each. ``include_top=False`` drops the ImageNet classifier, as
torchvision's ``IntermediateLayerGetter`` does.

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

    ``arch`` is one of ``vgg16``, ``vgg16_bn``, ``resnet50``, ``resnet101``. A model built with
    ``include_top=False`` receives everything but the classifier; otherwise the load is strict.
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

"""VGG16 (Simonyan & Zisserman, ICLR 2015), configuration "D" of Table 1, with torchvision's
module names; ``batch_norm=True`` gives ``vgg16_bn`` (SegNet's encoder). FCN (chapter 1),
SegNet (chapter 2) and DeepLab v1 (chapter 5) are built on it.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..core.model import scaled
from ..core.validation import check_image_batch
from .common import init_weights, require_top

__all__ = [
    "VGG16_CONFIG",
    "VGG16",
    "vgg16",
    "vgg16_bn",
]


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
        init_weights(self)


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
        require_top(self, "classifier")
        x = self.forward_features(x)["pool5"]
        x = self.avgpool(x)
        return self.classifier(torch.flatten(x, 1))


def vgg16(**kwargs) -> VGG16:
    """VGG16 (state_dict-compatible with ``torchvision.models.vgg16`` at ``width=1``)."""
    return VGG16(batch_norm=False, **kwargs)


def vgg16_bn(**kwargs) -> VGG16:
    """VGG16 with BatchNorm (compatible with ``torchvision.models.vgg16_bn`` at ``width=1``)."""
    return VGG16(batch_norm=True, **kwargs)

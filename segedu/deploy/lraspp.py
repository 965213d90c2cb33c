"""LR-ASPP, the segmentation head of MobileNetV3 (Howard et al., "Searching for MobileNetV3",
ICCV 2019, Sec. 6.3 and Fig. 10) — the network a phone runs.

Read this next to Fig. 10 of the paper. The head has two branches on the last MobileNetV3 map
(``C5``, stride 16: the last stage is dilated instead of strided, as in DeepLab) and one skip:

1. ``cbr``: a 1x1 conv to 128 channels + BatchNorm + ReLU — the only conv on the deep map.
   DeepLab's ASPP runs five branches (four of them 3x3 at 256 channels) there instead.
2. ``scale``: global average pooling -> 1x1 conv -> sigmoid, a per-channel gate that multiplies
   branch 1 (:func:`lite_aspp`). It is squeeze-and-excitation used as the image-level context
   of DeepLab v3's "image pooling", at the price of one 1x1 conv and no upsampling of a map.
3. The gated map is upsampled to the stride-8 map ``C2`` and both are classified by 1x1 convs
   (``high_classifier``, ``low_classifier``) and **added** — a one-layer decoder (the skip
   "to capture more detailed information").

**Where we differ from the paper, and why** (torchvision's choices, kept so that
``torchvision.models.segmentation.lraspp_mobilenet_v3_large`` weights load strictly and give the
same outputs):

* the gate pools the whole map (``AdaptiveAvgPool2d(1)``); the paper pools with a 49x49 kernel
  at stride (16, 20) for 1024x2048 Cityscapes inputs, a size-specific choice;
* the low-level skip is ``C2`` (stride 8, 40 channels), and its classifier has a bias;
* BatchNorm in ``cbr`` uses PyTorch's defaults, not the TF reference's (eps 0.001).

``width`` multiplies every channel count (the CPU profile's 1/8-width networks); only
``width=1`` matches torchvision (3,221,538 parameters with 21 classes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import mobilenet_v3_large
from ..backbones.pretrained import load_backbone_weights
from ..core.model import SegmentationModel, scaled
from ..core.weights import download_state_dict

__all__ = ["lite_aspp", "LRASPPHead", "LRASPP", "lraspp_mobilenet_v3_large"]


def lite_aspp(high: torch.Tensor, cbr: nn.Module, scale: nn.Module) -> torch.Tensor:
    """The "Lite R-ASPP" of Fig. 10 on the deep map ``high`` (N, C, h, w): ``cbr(high)``, a
    1x1 conv-BN-ReLU, gated channel by channel by ``scale(high)`` (pool -> 1x1 -> sigmoid,
    shape (N, inter, 1, 1)) — global context for the cost of one 1x1 conv on a pooled vector."""
    return cbr(high) * scale(high)                      # (N, inter, h, w) * (N, inter, 1, 1)


class LRASPPHead(nn.Module):
    """The LR-ASPP head of Fig. 10, torchvision's module names (``cbr``, ``scale``,
    ``low_classifier``, ``high_classifier``). Called as ``head(high, low)``."""

    def __init__(self, low_channels: int, high_channels: int, num_classes: int,
                 inter_channels: int = 128) -> None:
        super().__init__()
        self.cbr = nn.Sequential(
            nn.Conv2d(high_channels, inter_channels, 1, bias=False),
            nn.BatchNorm2d(inter_channels),
            nn.ReLU(inplace=True),
        )
        self.scale = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(high_channels, inter_channels, 1, bias=False),
            nn.Sigmoid(),
        )
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter_channels, num_classes, 1)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        x = lite_aspp(high, self.cbr, self.scale)                   # (N, inter, H/16, W/16)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.low_classifier(low) + self.high_classifier(x)  # (N, C, H/8, W/8)


class LRASPP(SegmentationModel):
    """MobileNetV3 features + :class:`LRASPPHead` on ``C5`` (high) and ``C2`` (low), upsampled
    to the input. No auxiliary head (torchvision has none for LR-ASPP).

    Inputs must be at least 32 pixels a side (a deepest map of 2x2 cells at stride 16, the
    rule :class:`segedu.deeplab.DeepLab` uses: BatchNorm cannot train on one cell at batch 1).
    """

    min_input_size = 32

    def __init__(self, backbone: nn.Module, classifier: LRASPPHead, *, num_classes: int,
                 high_layer: str = "C5", low_layer: str = "C2", in_channels: int = 3) -> None:
        super().__init__(backbone, classifier, None, num_classes=num_classes,
                         out_layer=high_layer, aux_layer=low_layer, in_channels=in_channels)
        self.low_layer = low_layer

    def classifier_inputs(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The deep map ``C5`` and the stride-8 map ``C2``."""
        return features[self.out_layer], features[self.low_layer]


def lraspp_mobilenet_v3_large(num_classes: int = 21, *, width: float = 1.0,
                              pretrained: bool = False,
                              pretrained_backbone: bool | str = False) -> LRASPP:
    """torchvision's ``lraspp_mobilenet_v3_large``: the dilated MobileNetV3-Large (output
    stride 16) with :class:`LRASPPHead` (128 inner channels) on ``C5`` and ``C2``.

    Same state_dict and outputs as torchvision's (3,221,538 parameters with 21 classes, a
    third of ``deeplabv3_mobilenet_v3_large``'s). ``pretrained=True`` loads torchvision's
    COCO-trained weights (21 VOC classes; its published figure is 57.9 mIoU on COCO val2017)
    and ``pretrained_backbone=True`` the ImageNet MobileNetV3 — both need the internet.
    """
    net = mobilenet_v3_large(dilated=True, include_top=False, width=width)
    if pretrained_backbone and not pretrained:
        load_backbone_weights(net, "mobilenet_v3_large", pretrained_backbone)
    features = net.features
    head = LRASPPHead(features.feature_channels["C2"], features.feature_channels["C5"],
                      num_classes, scaled(128, width))
    model = LRASPP(features, head, num_classes=num_classes)
    if pretrained:
        if num_classes != 21 or width != 1.0:
            raise ValueError("torchvision's LR-ASPP weights have 21 classes at width 1; build "
                             f"with num_classes=21, width=1.0 (got {num_classes}, {width}).")
        model.load_state_dict(download_state_dict("LRASPP_MobileNet_V3_Large_Weights"),
                              strict=True)
    return model

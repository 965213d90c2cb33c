"""The base segmentation model and the helpers every network shares.

* :func:`scaled` — the width multiplier on channel counts.
* :func:`resize_to` — bilinear resize of logits to the input's size (the last step of
  every network that predicts at a lower resolution).
* :class:`SegmentationModel` — the composition every ResNet-based model in the course uses,
  as torchvision does (``torchvision/models/segmentation/_utils.py``): a backbone that
  returns named feature maps, a classifier head on the deepest one, an optional auxiliary
  head on an intermediate one, and both upsampled to the input size.

The model contract (the README's "How the pieces fit"): ``model(x)`` returns a dict with ``"out"``,
logits (N, num_classes, H, W) at the input's H, W; a model built with an auxiliary head
adds ``"aux"`` of the same shape.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .validation import check_image_batch

__all__ = ["scaled", "resize_to", "SegmentationModel"]


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1 — the width multiplier every network uses (the
    CPU profile builds the paper's architectures at ``width=0.125``)."""
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}.")
    return max(1, int(round(channels * width)))


def resize_to(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinearly resize a (N, C, h, w) map to ``size`` = (H, W), ``align_corners=False``."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class SegmentationModel(nn.Module):
    """Backbone + classifier (+ auxiliary classifier), upsampled to the input size.

    Args:
        backbone: a module with ``forward_features(x) -> dict[str, Tensor]``.
        classifier: head applied to ``features[out_layer]``; returns class logits.
        aux_classifier: optional head applied to ``features[aux_layer]`` (used only as an
            extra training loss, weight 0.4 in PSPNet and torchvision's recipes).
        num_classes: number of classes the heads predict (kept for checks and reporting).
        in_channels: channels the backbone expects (3 for RGB).

    The attribute names ``backbone``, ``classifier`` and ``aux_classifier`` are part of the
    state_dict and match torchvision's segmentation models, so their weights load strictly.

    A subclass sets ``min_input_size`` (the smallest input side its deepest map can take) and,
    for a head that reads more than one map (DeepLab v3+'s decoder), overrides
    :meth:`classifier_inputs`.
    """

    #: The smallest input side this network accepts; smaller inputs get a clear ValueError.
    min_input_size: int = 1

    def __init__(
        self,
        backbone: nn.Module,
        classifier: nn.Module,
        aux_classifier: nn.Module | None = None,
        *,
        num_classes: int,
        out_layer: str = "layer4",
        aux_layer: str = "layer3",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier
        self.aux_classifier = aux_classifier
        self.num_classes = num_classes
        self.out_layer = out_layer
        self.aux_layer = aux_layer
        self.in_channels = in_channels

    def classifier_inputs(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """What the classifier is called with: the deepest map, ``features[out_layer]``."""
        return (features[self.out_layer],)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_image_batch(x, self.in_channels, min_size=self.min_input_size)
        size = x.shape[-2:]
        features = self.backbone.forward_features(x)      # named maps, strides 4 .. 32
        result: dict[str, torch.Tensor] = OrderedDict()
        logits = self.classifier(*self.classifier_inputs(features))  # (N, C, h, w)
        result["out"] = resize_to(logits, size)                      # (N, C, H, W)
        if self.aux_classifier is not None:
            result["aux"] = resize_to(self.aux_classifier(features[self.aux_layer]), size)
        return result

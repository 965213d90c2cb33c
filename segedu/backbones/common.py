"""What every backbone family shares: torchvision's initialisation and the ``include_top`` guard."""

from __future__ import annotations

from torch import nn

__all__ = ["init_weights", "require_top"]


def init_weights(model: nn.Module, *, linear: bool = True) -> None:
    """torchvision's initialisation of its classification networks, so a from-scratch run starts
    where theirs does: He-normal convs (``fan_out``, ReLU gain), zero conv biases, BatchNorm at
    identity, and (``linear=True``) the classifier's linear layers N(0, 0.01) with zero bias.
    torchvision's ResNet keeps PyTorch's default for its ``fc``: pass ``linear=False``."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif linear and isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def require_top(model: nn.Module, classifier: str) -> None:
    """Raise a clear error when a backbone built with ``include_top=False`` is asked for
    ImageNet class scores (it has no ``classifier``; segmentation uses ``forward_features``)."""
    if not hasattr(model, classifier):
        raise ValueError(f"this {type(model).__name__} was built with include_top=False; "
                         "use forward_features(x) for feature maps.")

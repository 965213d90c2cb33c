"""Pretrained weights from torchvision, loaded by key into the course's from-scratch networks.

Two tables, one download path: ImageNet weights for the backbones
(:func:`load_imagenet_weights`) and trained segmentation weights for the networks torchvision
also ships (:func:`load_torchvision_weights`: ``fcn_resnet50``, ``deeplabv3_resnet50``,
``deeplabv3_mobilenet_v3_large``). Module attribute names are torchvision's, so loading needs
no mapping table: ``load_state_dict(state, strict=True)``.

Downloads need the internet (they work on Colab). Offline, :class:`WeightsUnavailableError`
says so and what to do instead; no notebook needs them to run.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "WeightsUnavailableError",
    "download_state_dict",
    "load_imagenet_weights",
    "load_torchvision_weights",
    "IMAGENET_WEIGHTS",
    "SEGMENTATION_WEIGHTS",
]


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be downloaded (no network, or the host is down)."""


#: torchvision builder name -> name of its default ImageNet weights enum.
IMAGENET_WEIGHTS = {
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
    # Imported here, not at the top: importing torchvision costs about as much as importing
    # torch (it pulls in torch._dynamo), and most programs never download weights.
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
    _check_known(arch, IMAGENET_WEIGHTS, "ImageNet weights")
    if getattr(model, "width", 1.0) != 1.0:
        raise ValueError(f"ImageNet weights exist only for width=1, this model has width="
                         f"{model.width}. Build it with width=1.0 to load them.")
    state = download_state_dict(IMAGENET_WEIGHTS[arch], progress=progress)
    own = model.state_dict().keys()
    dropped = [k for k in state if k not in own and k.split(".")[0] in ("fc", "classifier")]
    for k in dropped:  # the classifier of an include_top=False backbone
        del state[k]
    model.load_state_dict(state, strict=True)
    return model


#: Our model name -> torchvision's weights enum for it (chapter 1's FCN, chapter 5's DeepLabs).
SEGMENTATION_WEIGHTS = {
    "fcn_resnet50": "FCN_ResNet50_Weights",
    "deeplabv3_resnet50": "DeepLabV3_ResNet50_Weights",
    "deeplabv3_mobilenet_v3_large": "DeepLabV3_MobileNet_V3_Large_Weights",
}


def load_torchvision_weights(model: nn.Module, name: str, progress: bool = True) -> nn.Module:
    """Load torchvision's trained segmentation weights ``name`` into our from-scratch ``model``.

    The weights have 21 classes and an aux head; a model without ``aux`` ignores the latter.
    """
    _check_known(name, SEGMENTATION_WEIGHTS, "torchvision segmentation weights")
    if getattr(model, "num_classes", 21) != 21:
        raise ValueError(f"torchvision's {name} weights predict 21 classes; build the model "
                         f"with num_classes=21 (got {model.num_classes}).")
    state = download_state_dict(SEGMENTATION_WEIGHTS[name], progress=progress)
    if getattr(model, "aux_classifier", None) is None:
        state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
    model.load_state_dict(state, strict=True)
    return model


def _check_known(name: str, table: dict[str, str], what: str) -> None:
    if name not in table:
        raise ValueError(f"no {what} for {name!r}; choose one of {sorted(table)}.")

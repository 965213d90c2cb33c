"""Pretrained backbone weights from two sources, by the value of a builder's
``pretrained_backbone``:

* ``True`` or ``"imagenet"``: torchvision's ImageNet weights, full width only, downloaded
  (:func:`segedu.core.weights.load_imagenet_weights`; the GPU profile's choice, as in the papers);
* ``"shapes"``: the CPU profile's stand-in, shipped with the package: ResNet-50, ResNet-101,
  VGG16-BN and MobileNetV3-Large at width 1/8 (:data:`SHAPES_BACKBONES`), pretrained by
  ``benchmarks/pretrain_backbones.py`` on a class-agnostic objectness task over synthetic
  images no task uses (:mod:`segedu.train.pretext` has the recipe and why). No download: they
  work offline.

A file holds the backbone's ``state_dict`` (no classifier: load it into a backbone built with
``include_top=False``), the two 1x1 objectness scorers it was trained with, the recipe and its
held-out foreground IoU, so that a test can check the shipped weights really find objects.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..core.weights import load_imagenet_weights

__all__ = ["SHAPES_BACKBONES", "SHAPES_WEIGHTS_DIR", "SHAPES_WIDTH", "shapes_weights_path",
           "read_shapes_weights", "load_shapes_weights", "load_backbone_weights"]

#: Where the shipped files live (package data).
SHAPES_WEIGHTS_DIR = Path(__file__).with_name("shapes_weights")
#: The width the shipped weights are for: the CPU profile's.
SHAPES_WIDTH = 0.125
#: The backbones shipped with shape-pretrained weights. Xception-65 is not among them: with the
#: same recipe its held-out foreground IoU was still 0.13 after 6,000 iterations
#: (``benchmarks/results/pretrain_backbones_xception65.json``), so DeepLab v3+ on Xception
#: starts from random weights on a CPU.
SHAPES_BACKBONES = ("mobilenet_v3_large", "resnet101", "resnet50", "vgg16_bn")


def shapes_weights_path(arch: str) -> Path:
    """The shipped file for backbone ``arch`` (``resnet50``, ``vgg16_bn``, ...)."""
    return SHAPES_WEIGHTS_DIR / f"{arch}_w{SHAPES_WIDTH:g}_objectness.pt"


def read_shapes_weights(arch: str) -> dict:
    """The shipped file's contents: ``backbone``, ``head``, ``recipe``, ``val_foreground_iou``.

    Raises:
        ValueError: no shipped weights for ``arch`` (the message lists those there are).
    """
    path = shapes_weights_path(arch)
    if not path.exists():
        shipped = sorted(p.name.split("_w")[0] for p in SHAPES_WEIGHTS_DIR.glob("*.pt"))
        raise ValueError(
            f"no shape-pretrained weights for backbone {arch!r}: they are shipped for {shipped} "
            "(for VGG16, build it with batch_norm=True, as the CPU profile does). Choose one of "
            "those, or build the model with pretrained_backbone=False.")
    return torch.load(path, map_location="cpu", weights_only=True)


def load_shapes_weights(model: nn.Module, arch: str) -> nn.Module:
    """Load the shipped shape-pretrained weights of ``arch`` into ``model`` (strict).

    Raises:
        ValueError: ``model`` is not at width 1/8, or still has its classifier.
    """
    width = getattr(model, "width", None)
    if width != SHAPES_WIDTH:
        raise ValueError(f"shape-pretrained weights exist only for width={SHAPES_WIDTH:g} (the CPU "
                         f"profile's), this backbone has width={width}. Build it with "
                         f"width={SHAPES_WIDTH:g}, or use pretrained_backbone=True (ImageNet, "
                         "width 1).")
    if any(k.startswith(("fc.", "classifier.")) for k in model.state_dict()):
        raise ValueError(f"the shape-pretrained {arch} has no classifier: build the backbone "
                         "with include_top=False.")
    try:
        model.load_state_dict(read_shapes_weights(arch)["backbone"], strict=True)
    except RuntimeError as err:  # missing keys or other shapes: another kind of network
        raise ValueError(
            f"the shipped {arch} weights do not fit this backbone: they are for a {arch} with 3 "
            f"input channels at width {SHAPES_WIDTH:g}, as the pretext built it. Build the "
            f"model that way, or with pretrained_backbone=False. ({str(err)[:300]})") from err
    return model


def load_backbone_weights(model: nn.Module, arch: str, source: bool | str) -> nn.Module:
    """Load pretrained weights into backbone ``model`` from ``source``: ``True`` or
    ``"imagenet"`` (torchvision, width 1) or ``"shapes"`` (shipped, width 1/8)."""
    if source is True or source == "imagenet":
        return load_imagenet_weights(model, arch)
    if source == "shapes":
        return load_shapes_weights(model, arch)
    raise ValueError(f"pretrained_backbone must be False, True / 'imagenet' (ImageNet weights, "
                     f"width 1) or 'shapes' (shipped, width {SHAPES_WIDTH:g}); got {source!r}.")

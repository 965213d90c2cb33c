"""Input checks (and the conventions they check) shared by every model, metric and dataset.

A learner who passes the wrong thing should read what was expected, what came, and what
to do — not a shape error from deep inside a convolution. Every public entry point calls
one of these before doing any work.
"""

from __future__ import annotations

import torch

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IGNORE_INDEX",
    "check_num_classes",
    "check_image_batch",
    "check_mask",
    "check_logits_and_target",
]

#: Per-channel mean and std of ImageNet. Pretrained backbones expect inputs normalised with
#: these, so we use them everywhere (also for from-scratch models: one convention, no surprises).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Mask value meaning "no label here": losses and metrics skip these pixels. PASCAL VOC marks
#: object boundaries and ambiguous regions with 255, and so do we.
IGNORE_INDEX = 255


def check_num_classes(num_classes: object) -> int:
    """Check that ``num_classes`` is a positive int (not a bool, not a float) and return it.

    Every model factory, the zoo and the confusion matrix call this, so ``fcn8s(0)`` and
    ``ConfusionMatrix(2.5)`` fail with the same clear message.
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")
    return num_classes


def check_image_batch(
    x: object,
    in_channels: int | None = None,
    *,
    min_size: int = 1,
    name: str = "input",
) -> None:
    """Check that ``x`` is a float image batch of shape (N, C, H, W).

    Raises:
        ValueError: wrong type, dtype, rank, channel count, or a spatial size below
            ``min_size`` — with a message naming the expected and received values.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(
            f"{name} must be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}. "
            "Convert images with torchvision.transforms.v2.functional.to_image / to_dtype."
        )
    if x.dim() != 4:
        hint = " Add a batch dimension with x.unsqueeze(0)." if x.dim() == 3 else ""
        raise ValueError(
            f"{name} must have 4 dimensions (N, C, H, W), got {x.dim()} with shape "
            f"{tuple(x.shape)}.{hint}"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be a floating-point tensor (e.g. float32 in [0, 1], normalised), "
            f"got dtype {x.dtype}. Use x.float() / 255 for uint8 images."
        )
    if in_channels is not None and x.shape[1] != in_channels:
        raise ValueError(
            f"{name} must have {in_channels} channels (N, {in_channels}, H, W), got "
            f"{x.shape[1]} channels in shape {tuple(x.shape)}."
            + (" Is the image channels-last (N, H, W, C)? Use x.permute(0, 3, 1, 2)."
               if x.shape[-1] == in_channels else "")
        )
    h, w = x.shape[-2:]
    if h < min_size or w < min_size:
        raise ValueError(
            f"{name} is {h}x{w} but this network needs at least {min_size}x{min_size} pixels."
        )


def check_mask(
    target: object,
    num_classes: int,
    ignore_index: int | None = 255,
    *,
    name: str = "target",
) -> None:
    """Check that ``target`` holds class indices in ``[0, num_classes)`` or ``ignore_index``.

    A mask value of 7 with 3 classes is an error, not something to silently skip: it usually
    means an RGB palette mask was not converted to indices, or ``num_classes`` is wrong.
    """
    if not isinstance(target, torch.Tensor):
        raise ValueError(
            f"{name} must be a torch.Tensor of class indices, got {type(target).__name__}."
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(
            f"{name} must hold integer class indices (dtype torch.long), got {target.dtype}. "
            "Masks are not images: load them without normalisation and call .long()."
        )
    if target.numel() == 0:
        return
    valid = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        valid |= target == ignore_index
    if not bool(valid.all()):
        bad = torch.unique(target[~valid])
        shown = ", ".join(str(v) for v in bad[:8].tolist()) + (" ..." if bad.numel() > 8 else "")
        allowed = f"0..{num_classes - 1}" + (
            f" or {ignore_index} (ignore)" if ignore_index is not None else ""
        )
        raise ValueError(
            f"{name} has values {{{shown}}} outside the {num_classes} classes; expected "
            f"{allowed}. Was an RGB/palette mask left unconverted, or is num_classes wrong?"
        )


def check_logits_and_target(
    pred: torch.Tensor, target: torch.Tensor, *, name: str = "prediction"
) -> None:
    """Check that a prediction (N, C, H, W logits or N, H, W labels) matches a (N, H, W) target."""
    if not isinstance(pred, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(pred).__name__}.")
    if not isinstance(target, torch.Tensor):
        raise ValueError(f"target must be a torch.Tensor, got {type(target).__name__}.")
    if pred.dim() == 4:
        expected = (pred.shape[0], *pred.shape[-2:])
    elif pred.dim() == 3 and not pred.is_floating_point():
        expected = tuple(pred.shape)
    else:
        raise ValueError(
            f"{name} must be logits (N, C, H, W) or integer labels (N, H, W), got shape "
            f"{tuple(pred.shape)} ({pred.dtype}). For a single image add a batch dimension "
            "with .unsqueeze(0)."
        )
    if tuple(target.shape) != expected:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match {name} shape "
            f"{tuple(pred.shape)}: expected target {expected}. Resize predictions to the mask "
            "size (models in segedu already return logits at the input's H, W)."
        )

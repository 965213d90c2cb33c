"""Joint image + mask transforms built from ``torchvision.transforms.v2`` (chapter 0).

The image and its mask are transformed *together* (same crop, same flip); the mask is resized
with nearest-neighbour interpolation and padded with the ignore label.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..core.validation import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "Transforms",
    "JointCompose",
    "scale_crop",
    "train_transforms",
    "eval_transforms",
]


#: A joint transform: called as ``transforms(image, mask)``, returns the transformed pair.
Transforms = Callable[[tv_tensors.Image, tv_tensors.Mask], tuple]

# v2 transforms take the image and the mask in one call and apply the *same* random parameters
# to both. They dispatch on the tv_tensor type: geometric ops resize a Mask with nearest
# neighbour (no blended class indices), while photometric ops (ColorJitter, Normalize) and
# ToDtype(float32) touch only the Image. Padding uses a per-type fill: 0 for the image and the
# ignore label for the mask, so padded pixels never count in the loss.

_PAD_FILL = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}


class JointCompose(v2.Compose):
    """``v2.Compose`` that refuses a mask passed as a plain tensor.

    v2 decides what to transform by type: next to a ``tv_tensors.Image``, a plain
    ``torch.Tensor`` is passed through *untouched* — the image is cropped and flipped, the
    mask is not, and nothing complains. Every argument after the image must therefore be a
    ``tv_tensors.Mask`` (or another tv_tensor); a plain tensor is a ``ValueError``.
    """

    def forward(self, *inputs):
        for position, value in enumerate(inputs[1:], start=2):
            if isinstance(value, torch.Tensor) and not isinstance(value, tv_tensors.TVTensor):
                raise ValueError(
                    f"argument {position} is a plain torch.Tensor of shape {tuple(value.shape)}; "
                    "torchvision.transforms.v2 would leave it untransformed while the image is "
                    "scaled, cropped and flipped. Wrap a mask as tv_tensors.Mask(mask) "
                    "(and the image as tv_tensors.Image(image)).")
        return super().forward(*inputs)


def scale_crop(image: torch.Tensor, mask: torch.Tensor, scale: float, crop: int, top: int,
               left: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1-2 of :func:`train_transforms` with the random draws given: what the random
    transforms do to one image and its mask, written out (chapter 7's exercise).

    ``image`` (C, H, W) float and ``mask`` (H, W) long are resized by ``scale`` to
    ``(round(H * scale), round(W * scale))`` — the image bilinearly, the mask with nearest
    neighbour (bilinear would blend class 1 and 3 into a 2) — then padded at the bottom and right
    to at least ``crop`` x ``crop`` (image with 0, mask with 255), then cropped to ``crop`` x
    ``crop`` at row ``top``, column ``left`` of the padded pair.
    """
    h, w = image.shape[-2:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    image = F.interpolate(image[None].float(), size, mode="bilinear", align_corners=False)[0]
    mask = F.interpolate(mask[None, None].float(), size, mode="nearest")[0, 0].long()
    pad_h, pad_w = max(0, crop - size[0]), max(0, crop - size[1])
    image = F.pad(image, (0, pad_w, 0, pad_h), value=0.0)
    mask = F.pad(mask, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)
    if not (0 <= top <= image.shape[-2] - crop and 0 <= left <= image.shape[-1] - crop):
        raise ValueError(f"a {crop}x{crop} crop at ({top}, {left}) does not fit the "
                         f"{tuple(image.shape[-2:])} scaled and padded image.")
    return (image[:, top:top + crop, left:left + crop], mask[top:top + crop, left:left + crop])


def train_transforms(
    crop_size: int,
    scale: tuple[float, float] = (0.5, 2.0),
    hflip: float = 0.5,
    color_jitter: float | None = 0.2,
    normalize: bool = True,
) -> v2.Compose:
    """The standard segmentation training augmentation (as in FCN / DeepLab / PSPNet).

    1. random scale: ``v2.ScaleJitter((crop, crop), scale)`` resizes image and mask together
       by a random factor so that at factor 1 the image just fits the crop window. Relative to
       the crop, not to absolute pixels, so the same call works for 64-pixel synthetic images
       and 500-pixel VOC photos (``v2.RandomResize`` would need an absolute size per data set);
    2. random crop of ``crop_size``, padding first where the scaled image is smaller
       (image with 0, mask with 255 = ignore);
    3. horizontal flip with probability ``hflip``;
    4. to float32 in [0, 1]; colour jitter of brightness, contrast and saturation (image only;
       no hue jitter, since hue carries class information: sky is blue, in SyntheticShapes a
       circle is reddish);
    5. ``Normalize(IMAGENET_MEAN, IMAGENET_STD)`` if ``normalize``.

    Returns a :class:`JointCompose` (a ``v2.Compose``) to be called as
    ``image, mask = t(image, mask)`` with ``mask`` a ``tv_tensors.Mask``; the output image is
    (3, crop, crop) float32, the mask (crop, crop) long with 255 preserved. No label value
    appears that was not in the input (nearest-neighbour resizing, fill 255), except 255 itself
    where the crop needed padding.
    """
    crop_size = int(crop_size)
    steps: list = [
        v2.ScaleJitter((crop_size, crop_size), scale_range=tuple(scale)),
        v2.RandomCrop(crop_size, pad_if_needed=True, fill=_PAD_FILL),
    ]
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(hflip))
    steps.append(v2.ToDtype(torch.float32, scale=True))  # images only; masks stay long
    if color_jitter:
        steps.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter))
    if normalize:
        steps.append(v2.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return JointCompose(steps)


def eval_transforms(size: int | None = None, normalize: bool = True) -> v2.Compose:
    """Deterministic evaluation transforms: optional square resize, to float, normalise.

    With ``size`` the image (bilinear) and the mask (nearest) are resized to ``size x size``,
    which lets real photos of different shapes share a batch. That distorts the aspect ratio
    and scores the mask at the resized resolution — fine for a course; benchmark numbers are
    computed on the original masks.
    """
    steps: list = []
    if size is not None:
        steps.append(v2.Resize((int(size), int(size))))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if normalize:
        steps.append(v2.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return JointCompose(steps)

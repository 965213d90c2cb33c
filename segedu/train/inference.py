"""Evaluation-time inference as the papers report it: sliding windows and multi-scale + flip.

* **Sliding window** (PSPNet Sec. 5.1 and DeepLab's Cityscapes evaluation): a network trained
  on 713x713 crops is run on a 1024x2048 image in overlapping windows; the class
  probabilities of overlapping windows are averaged.
* **Multi-scale + flip** (DeepLab v2 Sec. 4.1 "MSC", v3 Sec. 4.4, PSPNet Table 4 "MS"): the image
  is resized by each scale (e.g. 0.5 ... 1.75) and flipped left-right; the probabilities,
  resized back to the input size, are averaged. It costs ``2 x len(scales)`` forward passes
  for typically +1 to +2 mIoU on VOC.

Both return averaged softmax probabilities (N, C, H, W); ``.argmax(1)`` gives labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["sliding_window_probs", "multiscale_probs"]


def _starts(size: int, window: int, stride: int) -> list[int]:
    """Window offsets covering ``size``; the last window ends at the border."""
    if size <= window:
        return [0]
    starts = list(range(0, size - window, stride))
    return starts + [size - window]


@torch.no_grad()
def sliding_window_probs(model: nn.Module, images: torch.Tensor, window: int,
                         stride: int | None = None) -> torch.Tensor:
    """Softmax probabilities from overlapping ``window`` x ``window`` crops (stride default
    2/3 of the window, as PSPNet). An image smaller than the window is zero-padded at the
    bottom/right and the padding cropped off again."""
    stride = stride or max(1, (2 * window) // 3)
    n, _, h, w = images.shape
    ph, pw = max(0, window - h), max(0, window - w)
    padded = F.pad(images, (0, pw, 0, ph)) if ph or pw else images
    hh, ww = padded.shape[-2:]
    total = counts = None
    for top in _starts(hh, window, stride):
        for left in _starts(ww, window, stride):
            crop = padded[..., top:top + window, left:left + window]
            probs = model(crop)["out"].float().softmax(1)
            if total is None:
                total = probs.new_zeros(n, probs.shape[1], hh, ww)
                counts = probs.new_zeros(1, 1, hh, ww)
            total[..., top:top + window, left:left + window] += probs
            counts[..., top:top + window, left:left + window] += 1
    return (total / counts)[..., :h, :w]


@torch.no_grad()
def multiscale_probs(model: nn.Module, images: torch.Tensor,
                     scales: Sequence[float] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75),
                     flip: bool = True, window: int | None = None) -> torch.Tensor:
    """Average of softmax probabilities over ``scales`` (and their left-right flips), each
    resized back to the input size (bilinear). With ``window``, every scale is itself
    evaluated by :func:`sliding_window_probs`."""
    h, w = images.shape[-2:]
    total = None
    for scale in scales:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        x = images if size == (h, w) else F.interpolate(images, size, mode="bilinear",
                                                        align_corners=False)
        for flipped in ((False, True) if flip else (False,)):
            xi = x.flip(-1) if flipped else x
            probs = (sliding_window_probs(model, xi, window) if window
                     else model(xi)["out"].float().softmax(1))
            if flipped:
                probs = probs.flip(-1)
            if probs.shape[-2:] != (h, w):
                probs = F.interpolate(probs, (h, w), mode="bilinear", align_corners=False)
            total = probs if total is None else total + probs
    return total / (len(scales) * (2 if flip else 1))

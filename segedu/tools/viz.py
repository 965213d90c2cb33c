"""Looking at masks: the VOC palette, coloured masks, overlays and prediction grids.

Everything here returns a NumPy array or a :class:`matplotlib.figure.Figure` and never calls
``plt.show()``. Figures are built with ``Figure()`` rather than ``plt.figure()``, so they do
not pile up in pyplot's global state and work on a headless machine (Agg backend); in a
notebook, a returned figure displays itself (importing this module inside IPython loads
pyplot's backend once, which installs the inline backend's PNG display for figures).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..core.validation import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    check_image_batch,
    check_logits_and_target,
    check_mask,
)

__all__ = ["VOC_PALETTE", "palette", "colorize", "denormalize", "overlay", "show_predictions"]

ArrayOrTensor = np.ndarray | torch.Tensor


def _display_figures_in_ipython() -> None:
    """A bare ``Figure`` shows as text in a notebook until pyplot has loaded the kernel's
    inline backend, which installs the formatter that displays figures as PNG."""
    ipython = sys.modules.get("IPython")
    if ipython is not None and getattr(ipython, "get_ipython", lambda: None)() is not None:
        import matplotlib.pyplot as plt

        plt.switch_backend(plt.get_backend())  # pyplot loads its backend lazily: load it now


_display_figures_in_ipython()


def _voc_palette(n: int = 256) -> np.ndarray:
    """PASCAL VOC's colour map: the bits of the class index, interleaved into R, G, B.

    Bit 0 of the index goes to the top bit of red, bit 1 to the top bit of green, bit 2 to the
    top bit of blue, bits 3-5 to the next bits down, and so on (VOCdevkit's ``labelcolormap``).
    """
    colors = np.zeros((n, 3), dtype=np.uint8)
    for index in range(n):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colors[index] = (r, g, b)
    return colors


#: (256, 3) uint8, read-only: class 0 black, 1 (128, 0, 0), ..., 255 (224, 224, 192).
VOC_PALETTE = _voc_palette()
VOC_PALETTE.setflags(write=False)


def palette(num_classes: int) -> np.ndarray:
    """The first ``num_classes`` VOC colours, a (num_classes, 3) uint8 array."""
    if not 1 <= num_classes <= len(VOC_PALETTE):
        raise ValueError(
            f"num_classes must be between 1 and {len(VOC_PALETTE)} for the VOC palette, "
            f"got {num_classes}."
        )
    return VOC_PALETTE[:num_classes].copy()


def colorize(
    mask: ArrayOrTensor,
    palette: ArrayOrTensor | None = None,
    ignore_index: int | None = 255,
    ignore_color: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Turn an (H, W) mask of class indices into an (H, W, 3) uint8 RGB image.

    Class ``k`` gets ``palette[k]`` (VOC colours by default); ``ignore_index`` pixels get
    ``ignore_color``: white, to stand out on screen. VOC's own files draw 255 as
    ``VOC_PALETTE[255]`` = (224, 224, 192), which is what ``segedu.data.mask_from_palette``
    expects; pass ``ignore_color=tuple(VOC_PALETTE[255])`` to round-trip through it.
    """
    colors = VOC_PALETTE if palette is None else np.asarray(palette, dtype=np.uint8)
    if colors.ndim != 2 or colors.shape[1] != 3:
        raise ValueError(f"palette must have shape (K, 3), got {colors.shape}.")
    mask = _as_cpu_tensor(mask)
    if mask.dim() != 2:
        hint = " Pick one mask from a batch, e.g. masks[0]." if mask.dim() == 3 else ""
        raise ValueError(
            f"mask must have 2 dimensions (H, W), got shape {tuple(mask.shape)}.{hint}"
        )
    check_mask(mask, len(colors), ignore_index, name="mask")
    mask = mask.long().numpy()
    ignored = mask == ignore_index if ignore_index is not None else np.zeros(mask.shape, bool)
    rgb = colors[np.where(ignored, 0, mask)]  # look up each pixel's colour: (H, W, 3)
    rgb[ignored] = ignore_color
    return rgb


def denormalize(
    image: ArrayOrTensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """Undo ``(x - mean) / std`` on a (3, H, W) image: an (H, W, 3) float array in [0, 1]."""
    image = _check_chw(image, channels=len(mean))
    mean_t = torch.as_tensor(mean, dtype=image.dtype).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=image.dtype).view(-1, 1, 1)
    return (image * std_t + mean_t).clamp(0, 1).permute(1, 2, 0).numpy()


def overlay(
    image: ArrayOrTensor,
    mask: ArrayOrTensor,
    alpha: float = 0.5,
    palette: ArrayOrTensor | None = None,
    ignore_index: int | None = 255,
    denorm: bool = True,
) -> np.ndarray:
    """Blend a coloured mask into an image: ``(1 - alpha) * image + alpha * colour``.

    ``image`` is a (3, H, W) tensor or array (undone with :func:`denormalize` when ``denorm``,
    else taken as values in [0, 1]), or an (H, W, 3) NumPy array in [0, 1] such as
    :func:`denormalize` returns. Pixels with ``ignore_index`` keep the image's colour.
    Returns an (H, W, 3) float array in [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    rgb = _to_display(image, denorm)
    mask = _as_cpu_tensor(mask)
    colors = colorize(mask, palette, ignore_index).astype(rgb.dtype) / 255
    if colors.shape != rgb.shape:
        raise ValueError(
            f"mask of size {colors.shape[:2]} does not match image of size {rgb.shape[:2]}."
        )
    blended = (1 - alpha) * rgb + alpha * colors
    if ignore_index is not None:
        ignored = (mask == ignore_index).numpy()
        blended[ignored] = rgb[ignored]  # ignored pixels show the image alone
    return blended


def show_predictions(
    images: torch.Tensor,
    targets: torch.Tensor,
    preds: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
    class_names: Sequence[str] | None = None,
    denorm: bool = True,
    max_rows: int = 8,
    ignore_index: int | None = 255,
) -> Figure:
    """A grid with one row per image: image | ground truth | prediction(s).

    Args:
        images: (N, 3, H, W) float batch (ImageNet-normalised when ``denorm``).
        targets: (N, H, W) integer masks.
        preds: optional logits (N, C, H, W) or labels (N, H, W); or a dict
            ``{title: preds}`` to compare several models, one column each.
        class_names: adds a legend with each class's colour.
        max_rows: show at most this many images.
    """
    check_image_batch(images, 3, name="images")
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}.")
    if preds is None:
        named_preds: dict[str, torch.Tensor] = {}
    elif isinstance(preds, Mapping):
        named_preds = dict(preds)
    else:
        named_preds = {"prediction": preds}
    for title, pred in named_preds.items():
        check_logits_and_target(pred, targets, name=f"preds[{title!r}]")
    logits = [p for p in named_preds.values() if p.dim() == 4]
    if class_names is not None:
        num_classes = len(class_names)
    elif logits:
        num_classes = logits[0].shape[1]
    else:
        num_classes = len(VOC_PALETTE)
    colors = palette(num_classes)
    check_mask(targets, num_classes, ignore_index, name="targets")
    expected = (images.shape[0], *images.shape[-2:])
    if tuple(targets.shape) != expected:
        raise ValueError(
            f"targets must have shape (N, H, W) = {expected} to match images of shape "
            f"{tuple(images.shape)}, got {tuple(targets.shape)}."
        )
    columns = [("image", images), ("ground truth", targets)]
    for title, pred in named_preds.items():
        if pred.dim() == 4:
            if pred.shape[1] != num_classes:
                raise ValueError(
                    f"preds have {pred.shape[1]} channels but there are {num_classes} "
                    "class names; expected logits (N, len(class_names), H, W)."
                )
            pred = pred.argmax(dim=1)
        check_mask(pred, num_classes, ignore_index=None, name="preds")
        columns.append((title, pred))

    rows = min(images.shape[0], max_rows)
    fig = Figure(figsize=(3 * len(columns), 3 * rows), layout="constrained")
    axes = fig.subplots(rows, len(columns), squeeze=False)
    for col, (title, batch) in enumerate(columns):
        axes[0, col].set_title(title)
        for row in range(rows):
            if col == 0:
                picture = _to_display(batch[row], denorm)
            else:
                picture = colorize(batch[row], colors, ignore_index)
            axes[row, col].imshow(picture, interpolation="nearest")  # no blended labels
    for ax in axes.flat:
        ax.set_axis_off()
    if class_names is not None:
        handles = [Patch(color=c / 255, label=n) for c, n in zip(colors, class_names, strict=True)]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6))
    return fig


def _as_cpu_tensor(x: ArrayOrTensor) -> torch.Tensor:
    """``x`` as a CPU tensor; NumPy integer masks become int64 (torch lacks uint16 ops)."""
    if isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.int64)
    return torch.as_tensor(x).detach().cpu()


def _check_chw(image: ArrayOrTensor, channels: int) -> torch.Tensor:
    """``image`` as a float (C, H, W) CPU tensor, or a ValueError that says what is wrong."""
    image = _as_cpu_tensor(image)
    if image.dim() != 3:
        hint = " Pick one image from a batch, e.g. images[0]." if image.dim() == 4 else ""
        raise ValueError(
            f"image must have 3 dimensions (C, H, W), got shape {tuple(image.shape)}.{hint}"
        )
    if not image.is_floating_point():
        raise ValueError(
            f"image must be a floating-point tensor, got {image.dtype}. "
            "Use image.float() / 255 for uint8 images."
        )
    if image.shape[0] != channels:
        hint = ""
        if image.shape[-1] == channels:
            hint = " Is it channels-last (H, W, C)? Use image.permute(2, 0, 1)."
        raise ValueError(
            f"image must have {channels} channels ({channels}, H, W), got shape "
            f"{tuple(image.shape)}.{hint}"
        )
    return image


def _to_display(image: ArrayOrTensor, denorm: bool) -> np.ndarray:
    """An (H, W, 3) float array in [0, 1] from a (3, H, W) or an (H, W, 3) display image."""
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[-1] == 3:
        if not np.issubdtype(image.dtype, np.floating):
            raise ValueError(
                f"an (H, W, 3) image must be float in [0, 1], got {image.dtype}; "
                "divide uint8 images by 255."
            )
        return np.clip(image, 0, 1)
    if denorm:
        return denormalize(image)
    return _check_chw(image, channels=3).clamp(0, 1).permute(1, 2, 0).numpy()

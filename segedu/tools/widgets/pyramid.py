"""The pyramid-pooling explorer (chapter 4): bins and map size -> the cells each level averages."""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.patches import Rectangle

from ...core.sizes import adaptive_pool_regions
from .. import receptive
from .base import STYLE, Explorer, as_image, control_width, parse_ints

__all__ = [
    "PPMExplorer",
    "ppm_explorer",
]


def _describe_axis(size: int, bins: int) -> tuple[str, int]:
    """Cell lengths along one axis ("10" or "10–11") and how many neighbours overlap."""
    regions = adaptive_pool_regions(size, bins)
    lengths = sorted({b - a for a, b in regions})
    overlaps = sum(1 for (_, b), (a, _) in zip(regions, regions[1:], strict=False) if a < b)
    return (f"{lengths[0]}" if len(lengths) == 1 else f"{lengths[0]}–{lengths[-1]}"), overlaps


def _describe_level(h: int, w: int, bins: int) -> str:
    (rows, row_overlaps), (cols, col_overlaps) = _describe_axis(h, bins), _describe_axis(w, bins)
    text = f"{bins}×{bins}: cells {rows} × {cols} px"
    shared = [f"{n} across the {axis}" for n, axis in ((row_overlaps, "height"),
                                                       (col_overlaps, "width")) if n]
    return text + (f", overlaps: {' and '.join(shared)}" if shared else "")


class PPMExplorer(Explorer):
    """Bins and map size -> the cells of each pyramid level on an image, and the pooled maps
    (adaptive average pooling, upsampled back bilinearly as PSPNet does)."""

    def __init__(self, image=None, bins: Sequence[int] = (1, 2, 3, 6), size: int = 60) -> None:
        self._image_source = image
        self._picture: np.ndarray | None = None
        controls = {
            "height": widgets.IntSlider(value=size, min=1, max=96, description="map height",
                                        style=STYLE, layout=control_width(),
                                        continuous_update=False),
            "width": widgets.IntSlider(value=size, min=1, max=96, description="map width",
                                       style=STYLE, layout=control_width(),
                                        continuous_update=False),
            "bins": widgets.Text(value=", ".join(map(str, bins)), description="bins",
                                 style=STYLE, layout=control_width(),
                                        continuous_update=False),
            "level": widgets.Dropdown(options=list(bins), value=bins[-1],
                                      description="draw cells of", style=STYLE,
                                      layout=control_width()),
        }
        super().__init__("Pyramid pooling explorer", controls, figsize=(9.5, 2.5))
        self.update()

    def _compute(self):
        h, w = self.controls["height"].value, self.controls["width"].value
        bins = parse_ints(self.controls["bins"].value, "bins")
        level = self.controls["level"]
        if list(level.options) != bins:
            with self.silently():
                current = level.value
                level.options = bins
                level.value = current if current in bins else bins[-1]
        cells = receptive.ppm_cells(h, w, level.value)
        if self._picture is None:
            self._picture = as_image(self._image_source, 96, 96)
        source = torch.from_numpy(self._picture).permute(2, 0, 1)[None]
        feature = F.interpolate(source, size=(h, w), mode="area")  # the "feature map"
        pooled = {b: F.interpolate(F.adaptive_avg_pool2d(feature, b), size=(h, w),
                                   mode="bilinear", align_corners=False) for b in bins}
        parts = [_describe_level(h, w, b) for b in bins]
        text = f"{h}×{w} map — " + "; ".join(parts) + "."
        return {"size": (h, w), "bins": bins, "level": level.value, "cells": cells,
                "feature": feature, "pooled": pooled}, text

    def _draw(self, r) -> None:
        fig = self.figure
        fig.clear()
        axes = fig.subplots(1, 1 + len(r["bins"]))
        h, w = r["size"]
        extent = (-0.5, w - 0.5, h - 0.5, -0.5)
        axes[0].imshow(r["feature"][0].permute(1, 2, 0).clamp(0, 1).numpy(), extent=extent,
                       interpolation="nearest")
        colours = matplotlib.colormaps["tab10"].colors
        for i, (t, b, l, rr) in enumerate(r["cells"]):
            axes[0].add_patch(Rectangle((l - 0.5, t - 0.5), rr - l, b - t, fill=True,
                                        fc=(*colours[i % 10], 0.12), ec=colours[i % 10],
                                        lw=1.5))
        axes[0].set_title(f"{r['level']}×{r['level']} cells on the {h}×{w} map", fontsize=9)
        for ax, b in zip(axes[1:], r["bins"], strict=True):
            ax.imshow(r["pooled"][b][0].permute(1, 2, 0).clamp(0, 1).numpy(), extent=extent,
                      interpolation="nearest")
            ax.set_title(f"pooled to {b}×{b}, upsampled", fontsize=9)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])


def ppm_explorer(image=None, bins: Sequence[int] = (1, 2, 3, 6), size: int = 60) -> PPMExplorer:
    """Pyramid pooling explorer: bins and map size -> each bin's cells drawn on an image
    (overlapping where the bins do not divide the size) and the pooled maps. PSPNet's defaults:
    bins 1, 2, 3, 6 on a 60×60 map (473×473 input at stride 8)."""
    return PPMExplorer(image, bins, size)

"""The dilation explorer (chapter 5): stacked dilation rates -> the sampling grid, and gridding."""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import numpy as np

from .. import receptive
from .base import STYLE, Explorer, control_width

__all__ = [
    "DilationExplorer",
    "dilation_explorer",
]


_DILATION_PRESETS = {
    "custom": None,
    "2-2-2 (gridding)": (2, 2, 2),
    "1-2-5 (hybrid, Wang et al.)": (1, 2, 5),
    "1-2-3": (1, 2, 3),
    "2-4-8": (2, 4, 8),
    "1-1-1-1 (plain 3x3 stack)": (1, 1, 1, 1),
}


class DilationExplorer(Explorer):
    """Rates of a stack of dilated convolutions -> which input pixels the centre unit reaches."""

    def __init__(self, rates: Sequence[int] = (2, 2, 2), kernel_size: int = 3,
                 max_layers: int = 4) -> None:
        if not 1 <= len(rates) <= max_layers:
            raise ValueError(f"give 1..{max_layers} rates, got {list(rates)}.")
        controls: dict[str, widgets.Widget] = {
            "preset": widgets.Dropdown(options=list(_DILATION_PRESETS), value="custom",
                                       description="preset", style=STYLE, layout=control_width()),
            "layers": widgets.IntSlider(value=len(rates), min=1, max=max_layers,
                                        description="layers", style=STYLE, layout=control_width()),
            "kernel_size": widgets.Dropdown(options=[2, 3, 5], value=kernel_size,
                                            description="kernel", style=STYLE,
                                            layout=control_width()),
        }
        for i in range(max_layers):
            controls[f"rate{i + 1}"] = widgets.IntSlider(
                value=rates[i] if i < len(rates) else 1, min=1, max=12,
                description=f"rate {i + 1}", style=STYLE, layout=control_width())
        super().__init__("Dilation explorer", controls, figsize=(9.5, 3.8),
                         own_handlers=["preset"])
        controls["preset"].observe(self._preset, names="value")
        self.update()

    def _preset(self, change) -> None:
        rates = _DILATION_PRESETS[change["new"]]
        if rates is None:
            return
        with self.batch():
            self.controls["layers"].value = len(rates)
            for i, rate in enumerate(rates):
                self.controls[f"rate{i + 1}"].value = rate

    def rates(self) -> list[int]:
        return [self.controls[f"rate{i + 1}"].value
                for i in range(self.controls["layers"].value)]

    def _compute(self):
        rates, k = self.rates(), self.controls["kernel_size"].value
        preset = self.controls["preset"]
        if _DILATION_PRESETS[preset.value] not in (None, tuple(rates)):
            with self.silently():  # a rate was moved by hand
                preset.value = "custom"
        for i in range(self.controls["layers"].max):  # show only the sliders in use
            self.controls[f"rate{i + 1}"].layout.display = "" if i < len(rates) else "none"
        counts = receptive.dilated_sampling(rates, k)
        coverage = receptive.dilated_coverage(rates, k)
        verdict = ("<b style='color:#b00'>gridding: holes</b> — the unit never sees "
                   f"{coverage.total - coverage.reached} pixels inside its field"
                   if coverage.holes else "<b style='color:#070'>no holes</b>")
        text = (f"rates {'-'.join(map(str, rates))}, {k}×{k} kernels: field "
                f"<b>{coverage.size}×{coverage.size} px</b>, reached <b>{coverage.reached} of "
                f"{coverage.total}</b> pixels ({coverage.fraction:.0%}), largest gap "
                f"{coverage.largest_gap} px — {verdict}.")
        return {"rates": rates, "kernel_size": k, "counts": counts, "coverage": coverage}, text

    def _draw(self, r) -> None:
        fig = self.figure
        fig.clear()
        strips, grid = fig.subplots(1, 2, width_ratios=[1.2, 1])
        rates, k, counts = r["rates"], r["kernel_size"], r["counts"]
        size = counts.shape[0]
        # Left: the 1-D pattern after each layer (rows), aligned on the centre.
        rows = []
        for i in range(1, len(rates) + 1):
            line = receptive.sampling_profile(rates[:i], k).numpy()
            pad = (size - len(line)) // 2
            rows.append(np.pad(line, (pad, size - len(line) - pad)))
        strip = np.array(rows, dtype=float)
        strips.imshow(np.ma.masked_equal(strip, 0), cmap="viridis", aspect="auto",
                      interpolation="nearest")
        for y, line in enumerate(rows):
            holes = [x for x in range(size) if line[x] == 0
                     and line[:x].any() and line[x + 1:].any()]
            strips.plot(holes, [y] * len(holes), "x", color="#b00", ms=5)
        strips.set_yticks(range(len(rates)),
                          [f"after layer {i + 1} (rate {q})" for i, q in enumerate(rates)])
        strips.set_xticks([0, size // 2, size - 1], [f"-{size // 2}", "0", f"+{size // 2}"])
        strips.set_title("one axis, layer by layer (x = hole inside the field)", fontsize=9)
        # Right: the 2-D pattern of the whole stack.
        shown = grid.imshow(np.ma.masked_equal(counts.numpy(), 0), cmap="viridis",
                            interpolation="nearest")
        grid.set_facecolor("#f3d6d6")  # holes
        grid.set_title(f"paths from the centre unit ({r['coverage'].fraction:.0%} reached)",
                       fontsize=9)
        grid.set_xticks([])
        grid.set_yticks([])
        fig.colorbar(shown, ax=grid, shrink=0.8, label="paths")


def dilation_explorer(rates: Sequence[int] = (2, 2, 2), kernel_size: int = 3,
                      max_layers: int = 4) -> DilationExplorer:
    """Dilation explorer: one slider per layer's rate -> sampling grid and coverage (gridding
    for 2-2-2, none for 1-2-5). Try the presets."""
    return DilationExplorer(rates, kernel_size, max_layers)

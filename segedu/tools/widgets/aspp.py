"""The ASPP explorer (chapter 5): input size, output stride and rates -> which taps of each atrous
branch fall on the feature map."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib
import numpy as np
from matplotlib.patches import Rectangle

from .. import receptive
from .base import STYLE, Explorer, control_width, parse_ints

__all__ = [
    "ASPPExplorer",
    "aspp_explorer",
]


@functools.lru_cache(maxsize=16)
def _valid_weight_curve(size: int) -> np.ndarray:
    """:func:`segedu.tools.receptive.aspp_valid_fraction` for rates 1..2*size (3x3 kernel)."""
    return np.array([receptive.aspp_valid_fraction(size, rate) for rate in range(1, 2 * size + 1)])


class ASPPExplorer(Explorer):
    """Input size, output stride and rates -> the feature map's size and which taps of each
    atrous branch fall on it (DeepLab v3, Sec. 3.3 and Fig. 4)."""

    def __init__(self, input_size: int = 513, output_stride: int = 16,
                 rates: Sequence[int] = (6, 12, 18)) -> None:
        controls = {
            "input_size": widgets.IntSlider(value=input_size, min=65, max=1025, step=8,
                                            description="input size", style=STYLE,
                                            layout=control_width(),
                                            continuous_update=False),
            "output_stride": widgets.ToggleButtons(options=[8, 16, 32], value=output_stride,
                                                   description="output stride",
                                                   style={**STYLE, "button_width": "48px"}),
            "rates": widgets.Text(value=", ".join(map(str, rates)), description="rates",
                                  style=STYLE, layout=control_width(), continuous_update=False),
            "unit": widgets.Dropdown(options=["centre", "edge", "corner"], value="centre",
                                     description="unit", style=STYLE, layout=control_width()),
        }
        super().__init__("ASPP explorer", controls, figsize=(9.5, 4.0))
        self.update()

    def _compute(self):
        n, stride = self.controls["input_size"].value, self.controls["output_stride"].value
        rates = parse_ints(self.controls["rates"].value, "rates")
        branches = receptive.aspp_taps(n, stride, rates)
        size = branches[0].map_size
        centre = (size - 1) // 2
        unit = {"centre": (centre, centre), "edge": (centre, 0),
                "corner": (0, 0)}[self.controls["unit"].value]
        taps = {b.rate: [(unit[0] + dy * b.rate, unit[1] + dx * b.rate)
                         for dy in (-1, 0, 1) for dx in (-1, 0, 1)] for b in branches}
        inside = {q: sum(0 <= y < size and 0 <= x < size for y, x in t) for q, t in taps.items()}
        def cells(values, tag="td"):
            return "".join(f"<{tag} style='padding:0 14px 0 0;text-align:left'>{v}</{tag}>"
                           for v in values)

        rows = "".join(
            "<tr>" + cells([b.rate, b.span, f"{inside[b.rate]} of 9", f"{b.valid_fraction:.0%}",
                            "acts as 1×1 at the centre" if b.degenerate else ""]) + "</tr>"
            for b in branches)
        unit = self.controls["unit"].value
        header = cells(["rate", "span (map cells)", f"taps on the map ({unit} unit)",
                        "valid weights, all positions", ""], tag="th")
        text = (f"{n} px input at output stride {stride} → <b>{size}×{size}</b> feature map."
                f"<table><tr>{header}</tr>{rows}</table>")
        return {"map_size": size, "unit": unit, "branches": branches, "taps": taps,
                "inside": inside}, text

    def _draw(self, r) -> None:
        fig = self.figure
        fig.clear()
        ax, curve = fig.subplots(1, 2, width_ratios=[1.1, 1])
        size, colours = r["map_size"], matplotlib.colormaps["tab10"].colors
        ax.add_patch(Rectangle((-0.5, -0.5), size, size, fc="0.92", ec="0.3"))
        lo, hi = -0.5, size - 0.5
        for i, (rate, taps) in enumerate(r["taps"].items()):
            for y, x in taps:
                on_map = 0 <= y < size and 0 <= x < size
                ax.plot(x, y, "o" if on_map else "x", color=colours[i % 10], ms=7,
                        mfc=colours[i % 10] if on_map else "none",
                        label=f"rate {rate}" if (y, x) == taps[4] else None)  # centre tap
                lo, hi = min(lo, x - 1, y - 1), max(hi, x + 1, y + 1)
        ax.plot(r["unit"][1], r["unit"][0], "k+", ms=12, mew=2)
        ax.set_xlim(lo, hi)
        ax.set_ylim(hi, lo)
        ax.set_aspect("equal")
        ax.set_title(f"taps on the {size}×{size} map (o on it, x in the padding)", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        # Right: DeepLab v3 Fig. 4 for this map size.
        rates = np.arange(1, 2 * size + 1)
        curve.plot(rates, _valid_weight_curve(size), color="0.4", lw=1.2)
        for i, b in enumerate(r["branches"]):
            curve.plot([b.rate], [b.valid_fraction], "o", color=colours[i % 10])
        curve.axvline(size, color="0.6", ls="--", lw=1)
        curve.text(size, 0.95, " map size", fontsize=7, color="0.4")
        curve.set_ylim(0, 1.02)
        curve.set_xlabel("rate")
        curve.set_ylabel("share of the 9 weights on the map")
        curve.set_title("valid weights, averaged over positions", fontsize=9)


def aspp_explorer(input_size: int = 513, output_stride: int = 16,
                  rates: Sequence[int] = (6, 12, 18)) -> ASPPExplorer:
    """ASPP explorer: output stride and rates -> map size, taps inside/outside the map, and the
    share of valid weights per rate (at rate >= map size a 3x3 branch is a 1x1)."""
    return ASPPExplorer(input_size, output_stride, rates)

"""The receptive-field explorer (chapters 1 and 6): a network and a layer -> the theoretical field
on an image, and the effective field measured by gradients."""

from __future__ import annotations

import html
from collections.abc import Callable

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.patches import Rectangle
from torch import nn

from ...backbones import resnet50, resnet101, vgg16
from ...fcn import fcn8s
from .. import receptive
from .base import STYLE, Explorer, as_image, control_width

__all__ = [
    "ReceptiveFieldExplorer",
    "receptive_field_explorer",
]


def _builtin_models() -> dict[str, Callable[[], nn.Module]]:
    """Narrow networks: the geometry does not depend on the width, and the ERF is fast."""
    return {
        "VGG16": lambda: vgg16(width=0.125, include_top=False),
        "FCN-8s (VGG16 to score_fr)": lambda: _scorers_randomised(
            fcn8s(num_classes=21, width=0.125)),
        "ResNet-50": lambda: resnet50(width=0.125, include_top=False),
        "ResNet-50, dilated (output stride 8)": lambda: resnet50(
            width=0.125, include_top=False, replace_stride_with_dilation=[False, True, True]),
        "ResNet-101": lambda: resnet101(width=0.125, include_top=False),
    }


def _scorers_randomised(model: nn.Module) -> nn.Module:
    """FCN zero-initialises its class scorers (Sec. 4.1), so at init no score depends on the
    input and the measured field would be empty; give them small random weights."""
    with torch.no_grad():
        for name in ("score_fr", "score_pool4", "score_pool3"):
            if hasattr(model, name):
                getattr(model, name).weight.normal_(std=0.1)
    return model


def _layer_choices(rows: list[receptive.RFRow]) -> list[tuple[str, int]]:
    """One entry per VGG layer, per ResNet block (``layer3.2``) or per top-level module."""
    last: dict[str, int] = {}
    for i, row in enumerate(rows):
        parts = row.name.split(".")
        key = row.label if row.label != row.name else ".".join(parts[:2])
        last[key] = i
    return [(f"{key}  ({rows[i].size:g} px)", i) for key, i in last.items()]


class ReceptiveFieldExplorer(Explorer):
    """Pick a model and a layer: the theoretical field of the centre unit on an image, the grid
    of unit centres (the stride), the field size against depth, and on demand the effective
    field measured by gradients (random weights)."""

    picture_format = "jpeg"

    def __init__(self, model: nn.Module | str | None = None, image=None, input_size: int = 224,
                 samples: int = 2) -> None:
        self._builders = _builtin_models()
        if isinstance(model, str):  # one of the built-in models, shown first
            if model not in self._builders:
                raise ValueError(f"unknown model {model!r}; choose one of "
                                 f"{list(self._builders)} or pass an nn.Module.")
            self._builders = {model: self._builders[model], **self._builders}
        elif model is not None:
            self._builders = {"your model": lambda: model, **self._builders}
        self._models: dict[str, nn.Module] = {}
        self._rows: dict[str, list[receptive.RFRow]] = {}
        self._image_source, self.samples = image, samples
        self._picture: np.ndarray | None = None  # the image at the current input size
        self._erf: tuple | None = None
        names = list(self._builders)
        rows = self._rows_of(names[0])
        controls = {
            "model": widgets.Dropdown(options=names, value=names[0], description="model",
                                      style=STYLE, layout=control_width()),
            "layer": widgets.Dropdown(options=_layer_choices(rows), value=len(rows) - 1,
                                      description="layer", style=STYLE, layout=control_width()),
            "input_size": widgets.IntSlider(value=input_size, min=64, max=512, step=32,
                                            description="input size", style=STYLE,
                                            layout=control_width(),
                                            continuous_update=False),
        }
        self.erf_button = widgets.Button(description="measure effective field",
                                         icon="crosshairs", layout=widgets.Layout(width="auto"))
        self.erf_button.on_click(lambda _b: self.measure_effective_field())
        super().__init__("Receptive field explorer", controls, figsize=(9.5, 4.2),
                         extra=[self.erf_button], own_handlers=["model"])
        controls["model"].observe(self._model_changed, names="value")
        self.update()

    def _rows_of(self, name: str) -> list[receptive.RFRow]:
        if name not in self._rows:
            self._models[name] = self._builders[name]().eval()
            self._rows[name] = receptive.receptive_field(self._models[name])
        return self._rows[name]

    def _model_changed(self, change) -> None:
        rows = self._rows_of(change["new"])
        with self.batch():
            self.controls["layer"].options = _layer_choices(rows)
            self.controls["layer"].value = len(rows) - 1

    @staticmethod
    def _centre_unit(row: receptive.RFRow, n: int) -> int:
        """The unit whose field is centred nearest the image's centre."""
        return max(0, int(round(((n - 1) / 2 - row.centre) / row.jump)))

    def measure_effective_field(self) -> None:
        """Gradient of the centre unit w.r.t. the input (a backward pass, so on demand)."""
        name, index = self.controls["model"].value, self.controls["layer"].value
        n = self.controls["input_size"].value
        row = self._rows_of(name)[index]
        try:
            unit = self._centre_unit(row, n)
            erf = receptive.effective_receptive_field(self._models[name], n, row.name,
                                                      unit=(unit, unit), samples=self.samples)
        except Exception as err:
            self.last_error = err
            self.summary.value = f"<span style='color:#b00'>⚠ {html.escape(str(err))}</span>"
            return
        self._erf = ((name, index, n), erf)
        self.update()

    def _compute(self):
        name, index = self.controls["model"].value, self.controls["layer"].value
        n = self.controls["input_size"].value
        rows = self._rows_of(name)
        row = rows[min(index, len(rows) - 1)]
        unit = self._centre_unit(row, n)
        erf = self._erf[1] if self._erf and self._erf[0] == (name, index, n) else None
        first, last = row.field(unit)
        result = {"model": name, "row": row, "rows": rows, "index": rows.index(row),
                  "input_size": n, "unit": unit, "field": (first, last), "erf": erf}
        covered = (min(last, n - 1) - max(first, 0) + 1) / n
        text = (f"<b>{html.escape(row.label)}</b> ({html.escape(row.name)}): theoretical field "
                f"<b>{row.size:g} px</b>, effective stride <b>{row.jump:g}</b>; the centre unit "
                f"sees pixels {first:g}..{last:g} of a {n} px input "
                f"({min(covered, 1):.0%} of its width"
                f"{', and zero padding beyond it' if first < 0 or last > n - 1 else ''}).")
        if erf is not None:
            text += (f"<br>Effective field (random weights, {self.samples} inputs): 90% of the "
                     f"gradient within <b>{erf.mass_extent(0.9)} px</b>; every pixel it touches "
                     f"spans {erf.support()[3] - erf.support()[2] + 1} px.")
        else:
            text += "<br><i>Press “measure effective field” for the gradient-based field.</i>"
        return result, text

    def _draw(self, r) -> None:
        fig = self.figure
        fig.clear()
        ax, curve = fig.subplots(1, 2, width_ratios=[1.1, 1])
        n, row = r["input_size"], r["row"]
        if self._picture is None or self._picture.shape[0] != n:
            self._picture = as_image(self._image_source, n, n)
        ax.imshow(self._picture, extent=(-0.5, n - 0.5, n - 0.5, -0.5))
        if r["erf"] is not None:
            g = r["erf"].gradient.numpy()
            ax.imshow(np.ma.masked_less_equal(g, 0), cmap="magma", alpha=0.65,
                      extent=(-0.5, n - 0.5, n - 0.5, -0.5))
        first, last = r["field"]
        ax.add_patch(Rectangle((first - 0.5, first - 0.5), row.size, row.size, fill=False,
                               lw=2, ec="#00e5ff", label=f"field {row.size:g} px"))
        centres = row.centre + row.jump * np.arange(0, max(1, int(n // row.jump) + 2))
        centres = centres[(centres >= -0.5) & (centres <= n - 0.5)]
        yy, xx = np.meshgrid(centres, centres)
        ax.plot(xx.ravel(), yy.ravel(), ".", ms=2, color="white", alpha=0.8,
                label=f"unit centres (every {row.jump:g} px)")
        mid = (first + last) / 2
        ax.plot([mid], [mid], "+", color="#00e5ff", ms=10, mew=2)
        lo, hi = min(-0.5, first - 1), max(n - 0.5, last + 1)
        ax.set_xlim(lo, hi)
        ax.set_ylim(hi, lo)
        ax.add_patch(Rectangle((-0.5, -0.5), n, n, fill=False, lw=1, ec="0.3", ls="--"))
        ax.set_title(f"{r['model']}: {row.label}", fontsize=9)
        ax.legend(loc="lower left", fontsize=7, framealpha=0.7)
        ax.set_xticks([])
        ax.set_yticks([])

        rows = r["rows"]
        sizes = [x.size for x in rows]
        curve.plot(range(len(rows)), sizes, "-", color="tab:blue", lw=1.5)
        curve.plot([r["index"]], [row.size], "o", color="tab:red")
        curve.axhline(n, color="0.5", ls="--", lw=1)
        curve.text(0, n, f" input {n} px", va="bottom", fontsize=7, color="0.4")
        curve.set_xlabel("layer (conv / pool, forward order)")
        curve.set_ylabel("field size (px)", color="tab:blue")
        twin = curve.twinx()
        twin.step(range(len(rows)), [x.jump for x in rows], where="post", color="tab:green",
                  lw=1)
        twin.set_yscale("log", base=2)
        twin.set_ylabel("effective stride", color="tab:green")
        curve.set_title("receptive field vs depth", fontsize=9)


def receptive_field_explorer(model: nn.Module | str | None = None, image=None,
                             input_size: int = 224) -> ReceptiveFieldExplorer:
    """Receptive-field explorer: model and layer -> the field drawn on an image, the field-size
    curve and, with the button, the effective field.

    ``model`` is the name of a built-in network to start with ("VGG16", "FCN-8s (VGG16 to
    score_fr)", "ResNet-50", "ResNet-50, dilated (output stride 8)", "ResNet-101"; built at
    width 0.125 — the field does not depend on the width) or your own ``nn.Module`` (any model
    :func:`segedu.tools.receptive.receptive_field` can walk). ``image``: (3, H, W) in [0, 1] or
    (H, W, 3); default a photo from matplotlib's sample data."""
    return ReceptiveFieldExplorer(model, image, input_size)

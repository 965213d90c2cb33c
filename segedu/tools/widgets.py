"""Interactive explorers for receptive fields, dilation, pyramid pooling and ASPP.

Each is one call in a notebook and returns an ``ipywidgets`` box::

    from segedu.tools.widgets import receptive_field_explorer
    receptive_field_explorer()                 # chapters 1 and 6

    dilation_explorer()                        # chapter 5: rates -> sampling grid, gridding
    aspp_explorer()                            # chapter 5: output stride and rates -> taps
    ppm_explorer()                             # chapter 4: bins and map size -> cells

The arithmetic is :mod:`segedu.tools.receptive` (pure functions, tested on their own); this
module only draws it. How it draws: each explorer owns one matplotlib ``Figure`` (not pyplot,
so nothing is displayed twice or leaked) and, on every change, redraws its axes and swaps the
PNG shown by an ``ipywidgets.Image``. Swapping an image's bytes does not flicker and needs
neither ipympl nor a particular matplotlib backend, so the same code runs in JupyterLab,
classic Notebook, VS Code and Colab (whose ``%matplotlib widget`` needs extra setup). An error
in a callback is shown in the explorer (and kept in ``.last_error``) instead of vanishing into
the kernel log.

For tests and for curious learners, every explorer exposes ``.controls`` (name -> widget),
``.figure``, ``.image``, ``.summary`` (an HTML widget), ``.last_result`` and ``.renders``.
"""

from __future__ import annotations

import functools
import html
import io
import re
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import ipywidgets as widgets
import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import cbook
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image
from torch import nn

from ..backbones import resnet50, resnet101, vgg16
from ..core.sizes import adaptive_pool_regions
from ..data import SyntheticShapes
from ..fcn import fcn8s
from . import receptive

__all__ = [
    "receptive_field_explorer",
    "dilation_explorer",
    "ppm_explorer",
    "aspp_explorer",
    "sample_image",
]

_STYLE = {"description_width": "initial"}
def _width() -> widgets.Layout:
    """Equal widths, so the controls wrap into tidy columns (one Layout per widget: a shared
    one would hide every slider when one is hidden)."""
    return widgets.Layout(width="310px")


def sample_image(size: int | tuple[int, int] = 224) -> np.ndarray:
    """An offline photo (Grace Hopper, from matplotlib's sample data) as an (H, W, 3) float array
    in [0, 1], centre-cropped and resized to ``size``; a synthetic-shapes image if it is missing."""
    h, w = (size, size) if isinstance(size, int) else size
    try:
        photo = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
        array = np.asarray(photo.convert("RGB"), dtype=np.float32) / 255
    except (OSError, ValueError):
        array = SyntheticShapes("val", size=max(h, w, 16))[0][0].permute(1, 2, 0).numpy()
    return _resize(_centre_crop(array, w / h), h, w)


def _centre_crop(array: np.ndarray, aspect: float) -> np.ndarray:
    h, w = array.shape[:2]
    if w / h > aspect:
        keep = int(round(h * aspect))
        return array[:, (w - keep) // 2:(w - keep) // 2 + keep]
    keep = int(round(w / aspect))
    return array[(h - keep) // 2:(h - keep) // 2 + keep]


def _resize(array: np.ndarray, h: int, w: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(h, w), mode="area" if t.shape[-1] > w else "bilinear",
                      align_corners=None if t.shape[-1] > w else False)
    return t[0].permute(1, 2, 0).clamp(0, 1).numpy()


def _as_image(image, h: int, w: int) -> np.ndarray:
    """``image`` ((3, H, W) tensor/array in [0, 1], (H, W, 3) array, or None) at (h, w)."""
    if image is None:
        return sample_image((h, w))
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] == 3 and array.shape[-1] != 3:
        array = array.transpose(1, 2, 0)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"image must be (3, H, W) or (H, W, 3), got shape {array.shape}.")
    array = array.astype(np.float32)
    if array.max() > 1.0:
        array = array / 255
    return _resize(_centre_crop(array, w / h), h, w)


def _parse_ints(text: str, what: str, low: int = 1) -> list[int]:
    try:
        values = [int(v) for v in text.replace(";", ",").replace(" ", ",").split(",") if v]
    except ValueError:
        raise ValueError(f"{what} must be whole numbers separated by commas, got {text!r}.") \
            from None
    if not values or min(values) < low:
        raise ValueError(f"{what} must list at least one number >= {low}, got {text!r}.")
    return values


class _Explorer(widgets.VBox):
    """A title, controls, a summary line and a figure rendered into an ``Image`` widget.

    Each explorer below subclasses it with two methods: ``_compute()`` returns
    ``(result, summary_html)`` from the controls' values (the pure functions of
    :mod:`segedu.tools.receptive`), and ``_draw(result)`` draws it on ``self.figure``.
    """

    #: PNG keeps lines and text sharp; an explorer that shows a photo uses JPEG (a quarter of
    #: the bytes, which matters because a saved notebook stores the last picture).
    picture_format = "png"

    def __init__(self, title: str, controls: dict[str, widgets.Widget],
                 figsize: tuple[float, float], dpi: int = 80, extra: Sequence = (),
                 own_handlers: Sequence[str] = ()) -> None:
        self.controls = controls
        self.figure = Figure(figsize=figsize, dpi=dpi, layout="constrained")
        self.image = widgets.Image(format=self.picture_format,
                                   layout=widgets.Layout(max_width="100%"))
        self.summary = widgets.HTML()
        self.last_result = None
        self.last_error: Exception | None = None
        self.renders = 0
        self._quiet = False
        boxes = [widgets.HTML(f"<b>{html.escape(title)}</b>"),
                 widgets.HBox(list(controls.values()) + list(extra),
                              layout=widgets.Layout(flex_flow="row wrap")),
                 self.summary, self.image]
        super().__init__(boxes)
        for name, control in controls.items():  # ``own_handlers`` redraw by themselves
            if name not in own_handlers:
                control.observe(self._changed, names="value")

    def __repr__(self) -> str:
        # The default widget repr lists every child, the PNG's bytes included, and a notebook
        # saves it as the cell's text/plain output: keep it to the summary.
        text = re.sub(r"<br>|<tr>|</t[dh]>", " ", self.summary.value)
        text = " ".join(re.sub(r"<[^>]*>", "", text).split())
        return f"<{type(self).__name__}: {html.unescape(text)}>"

    @contextmanager
    def batch(self):
        """Change several controls and redraw once at the end."""
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False
        self.update()

    @contextmanager
    def silently(self):
        """Change controls without redrawing (inside an update)."""
        quiet, self._quiet = self._quiet, True
        try:
            yield
        finally:
            self._quiet = quiet

    def _changed(self, _change=None) -> None:
        if not self._quiet:
            self.update()

    def update(self) -> None:
        """Recompute, redraw the figure and swap the PNG; an error is shown, not raised."""
        try:
            self.last_result, text = self._compute()
            self._draw(self.last_result)
            buffer = io.BytesIO()
            options = {"pil_kwargs": {"quality": 90}} if self.picture_format == "jpeg" else {}
            with matplotlib.rc_context({"font.size": 9}):
                self.figure.savefig(buffer, format=self.picture_format, **options)
            self.image.value = buffer.getvalue()
            self.summary.value = text
            self.last_error = None
            self.renders += 1
        except Exception as err:  # show it where the learner looks
            self.last_error = err
            self.summary.value = (f"<span style='color:#b00'>⚠ {html.escape(type(err).__name__)}:"
                                  f" {html.escape(str(err))}</span>")


# --------------------------------------------------------------------------------------------
# Receptive-field explorer (chapters 1 and 6)
# --------------------------------------------------------------------------------------------


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


class ReceptiveFieldExplorer(_Explorer):
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
                                      style=_STYLE, layout=_width()),
            "layer": widgets.Dropdown(options=_layer_choices(rows), value=len(rows) - 1,
                                      description="layer", style=_STYLE, layout=_width()),
            "input_size": widgets.IntSlider(value=input_size, min=64, max=512, step=32,
                                            description="input size", style=_STYLE,
                                            layout=_width(),
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
            self._picture = _as_image(self._image_source, n, n)
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


# --------------------------------------------------------------------------------------------
# Dilation explorer (chapter 5)
# --------------------------------------------------------------------------------------------

_DILATION_PRESETS = {
    "custom": None,
    "2-2-2 (gridding)": (2, 2, 2),
    "1-2-5 (hybrid, Wang et al.)": (1, 2, 5),
    "1-2-3": (1, 2, 3),
    "2-4-8": (2, 4, 8),
    "1-1-1-1 (plain 3x3 stack)": (1, 1, 1, 1),
}


class DilationExplorer(_Explorer):
    """Rates of a stack of dilated convolutions -> which input pixels the centre unit reaches."""

    def __init__(self, rates: Sequence[int] = (2, 2, 2), kernel_size: int = 3,
                 max_layers: int = 4) -> None:
        if not 1 <= len(rates) <= max_layers:
            raise ValueError(f"give 1..{max_layers} rates, got {list(rates)}.")
        controls: dict[str, widgets.Widget] = {
            "preset": widgets.Dropdown(options=list(_DILATION_PRESETS), value="custom",
                                       description="preset", style=_STYLE, layout=_width()),
            "layers": widgets.IntSlider(value=len(rates), min=1, max=max_layers,
                                        description="layers", style=_STYLE, layout=_width()),
            "kernel_size": widgets.Dropdown(options=[2, 3, 5], value=kernel_size,
                                            description="kernel", style=_STYLE, layout=_width()),
        }
        for i in range(max_layers):
            controls[f"rate{i + 1}"] = widgets.IntSlider(
                value=rates[i] if i < len(rates) else 1, min=1, max=12,
                description=f"rate {i + 1}", style=_STYLE, layout=_width())
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


# --------------------------------------------------------------------------------------------
# Pyramid pooling explorer (chapter 4)
# --------------------------------------------------------------------------------------------


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


class PPMExplorer(_Explorer):
    """Bins and map size -> the cells of each pyramid level on an image, and the pooled maps
    (adaptive average pooling, upsampled back bilinearly as PSPNet does)."""

    def __init__(self, image=None, bins: Sequence[int] = (1, 2, 3, 6), size: int = 60) -> None:
        self._image_source = image
        self._picture: np.ndarray | None = None
        controls = {
            "height": widgets.IntSlider(value=size, min=1, max=96, description="map height",
                                        style=_STYLE, layout=_width(), continuous_update=False),
            "width": widgets.IntSlider(value=size, min=1, max=96, description="map width",
                                       style=_STYLE, layout=_width(), continuous_update=False),
            "bins": widgets.Text(value=", ".join(map(str, bins)), description="bins",
                                 style=_STYLE, layout=_width(), continuous_update=False),
            "level": widgets.Dropdown(options=list(bins), value=bins[-1],
                                      description="draw cells of", style=_STYLE, layout=_width()),
        }
        super().__init__("Pyramid pooling explorer", controls, figsize=(9.5, 2.5))
        self.update()

    def _compute(self):
        h, w = self.controls["height"].value, self.controls["width"].value
        bins = _parse_ints(self.controls["bins"].value, "bins")
        level = self.controls["level"]
        if list(level.options) != bins:
            with self.silently():
                current = level.value
                level.options = bins
                level.value = current if current in bins else bins[-1]
        cells = receptive.ppm_cells(h, w, level.value)
        if self._picture is None:
            self._picture = _as_image(self._image_source, 96, 96)
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


# --------------------------------------------------------------------------------------------
# ASPP explorer (chapter 5)
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _valid_weight_curve(size: int) -> np.ndarray:
    """:func:`segedu.tools.receptive.aspp_valid_fraction` for rates 1..2*size (3x3 kernel)."""
    return np.array([receptive.aspp_valid_fraction(size, rate) for rate in range(1, 2 * size + 1)])


class ASPPExplorer(_Explorer):
    """Input size, output stride and rates -> the feature map's size and which taps of each
    atrous branch fall on it (DeepLab v3, Sec. 3.3 and Fig. 4)."""

    def __init__(self, input_size: int = 513, output_stride: int = 16,
                 rates: Sequence[int] = (6, 12, 18)) -> None:
        controls = {
            "input_size": widgets.IntSlider(value=input_size, min=65, max=1025, step=8,
                                            description="input size", style=_STYLE,
                                            layout=_width(),
                                            continuous_update=False),
            "output_stride": widgets.ToggleButtons(options=[8, 16, 32], value=output_stride,
                                                   description="output stride",
                                                   style={**_STYLE, "button_width": "48px"}),
            "rates": widgets.Text(value=", ".join(map(str, rates)), description="rates",
                                  style=_STYLE, layout=_width(), continuous_update=False),
            "unit": widgets.Dropdown(options=["centre", "edge", "corner"], value="centre",
                                     description="unit", style=_STYLE, layout=_width()),
        }
        super().__init__("ASPP explorer", controls, figsize=(9.5, 4.0))
        self.update()

    def _compute(self):
        n, stride = self.controls["input_size"].value, self.controls["output_stride"].value
        rates = _parse_ints(self.controls["rates"].value, "rates")
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
        header = cells(["rate", "span (px)", f"taps on the map ({self.controls['unit'].value} "
                        "unit)", "valid weights, all positions", ""], tag="th")
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

"""What every explorer shares: the :class:`Explorer` base (controls, a summary line, a figure
swapped as an image on every change) and the helpers for controls and pictures."""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Sequence
from contextlib import contextmanager

import ipywidgets as widgets
import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import cbook
from matplotlib.figure import Figure
from PIL import Image

from ...data import SyntheticShapes

__all__ = [
    "STYLE",
    "control_width",
    "sample_image",
    "as_image",
    "parse_ints",
    "Explorer",
]


STYLE = {"description_width": "initial"}
def control_width() -> widgets.Layout:
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
    return resize_image(centre_crop(array, w / h), h, w)


def centre_crop(array: np.ndarray, aspect: float) -> np.ndarray:
    h, w = array.shape[:2]
    if w / h > aspect:
        keep = int(round(h * aspect))
        return array[:, (w - keep) // 2:(w - keep) // 2 + keep]
    keep = int(round(w / aspect))
    return array[(h - keep) // 2:(h - keep) // 2 + keep]


def resize_image(array: np.ndarray, h: int, w: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(h, w), mode="area" if t.shape[-1] > w else "bilinear",
                      align_corners=None if t.shape[-1] > w else False)
    return t[0].permute(1, 2, 0).clamp(0, 1).numpy()


def as_image(image, h: int, w: int) -> np.ndarray:
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
    return resize_image(centre_crop(array, w / h), h, w)


def parse_ints(text: str, what: str, low: int = 1) -> list[int]:
    try:
        values = [int(v) for v in text.replace(";", ",").replace(" ", ",").split(",") if v]
    except ValueError:
        raise ValueError(f"{what} must be whole numbers separated by commas, got {text!r}.") \
            from None
    if not values or min(values) < low:
        raise ValueError(f"{what} must list at least one number >= {low}, got {text!r}.")
    return values


class Explorer(widgets.VBox):
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

    def _repr_mimebundle_(self, **kwargs):
        # The widget's view, and the picture it shows now as a plain image beside it: a
        # notebook saved with this output shows the figure where widgets are not rendered
        # (GitHub, nbviewer, a notebook opened without its kernel); a live notebook shows the
        # widget, which front ends prefer to an image.
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is not None and self.image.value:
            bundle[f"image/{self.picture_format}"] = base64.b64encode(
                self.image.value).decode("ascii")
        return bundle

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

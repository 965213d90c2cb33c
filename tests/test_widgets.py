"""The explorers, driven from Python as a learner would drive them with the mouse.

nbval never moves a slider, so these tests do: set ``.controls[...].value`` and check that the
result, the summary and the rendered figure follow.
"""

import pytest
import torch
from torch import nn

from segedu.tools import widgets
from segedu.tools.receptive import effective_receptive_field
from segedu.tools.widgets.aspp import _valid_weight_curve
from segedu.tools.widgets.base import as_image

SIGNATURES = {"png": b"\x89PNG", "jpeg": b"\xff\xd8\xff"}


def _changed(explorer, control, value):
    """Set a control; return (new renders - old renders, whether the picture changed)."""
    renders, picture = explorer.renders, explorer.image.value
    explorer.controls[control].value = value
    assert explorer.last_error is None, explorer.summary.value
    return explorer.renders - renders, explorer.image.value != picture


def test_every_explorer_renders_a_png_and_a_summary_on_creation():
    for make in (widgets.receptive_field_explorer, widgets.dilation_explorer,
                 widgets.ppm_explorer, widgets.aspp_explorer):
        explorer = make()
        assert explorer.last_error is None, explorer.summary.value
        assert explorer.renders == 1
        assert bytes(explorer.image.value).startswith(SIGNATURES[explorer.image.format])
        assert repr(explorer).startswith(f"<{type(explorer).__name__}: ")  # short, no bytes
        assert len(repr(explorer)) < 1000
        assert explorer.summary.value
        assert explorer.figure.axes  # a persistent matplotlib figure


def test_a_displayed_explorer_carries_its_current_picture_as_a_static_image():
    # where widgets are not rendered (GitHub, nbviewer) the saved output still shows the figure
    import base64

    for make in (widgets.receptive_field_explorer, widgets.ppm_explorer):  # a JPEG, a PNG
        explorer = make()
        bundle = explorer._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle  # still the live widget
        mime = f"image/{explorer.picture_format}"
        assert base64.b64decode(bundle[mime]) == bytes(explorer.image.value)
    _changed(explorer, "height", 45)  # the PPM explorer after a change: the new picture
    assert base64.b64decode(explorer._repr_mimebundle_()[mime]) == bytes(explorer.image.value)
    assert explorer._repr_mimebundle_()[mime] != bundle[mime]


def test_explorers_redraw_one_figure_in_place():
    explorer = widgets.dilation_explorer()
    figure, image = explorer.figure, explorer.image
    for rate in (3, 4, 5):
        _changed(explorer, "rate1", rate)
    assert explorer.figure is figure and explorer.image is image  # same objects, new pixels
    assert explorer.renders == 4


def test_receptive_field_explorer_follows_model_and_layer():
    explorer = widgets.receptive_field_explorer()
    assert explorer.last_result["row"].label == "pool5"
    assert "212 px" in explorer.summary.value and "stride <b>32</b>" in explorer.summary.value

    conv4_3 = dict(explorer.controls["layer"].options)["conv4_3  (92 px)"]
    renders, changed = _changed(explorer, "layer", conv4_3)
    assert (renders, changed) == (1, True)
    assert "92 px" in explorer.summary.value

    _changed(explorer, "model", "ResNet-50")
    labels = [label for label, _ in explorer.controls["layer"].options]
    assert labels[-1] == "layer4.2  (427 px)" and "layer3.5  (267 px)" in labels
    assert explorer.last_result["row"].size == 427
    assert "zero padding beyond it" in explorer.summary.value  # 427 px > the 224 px input

    _changed(explorer, "model", "ResNet-50, dilated (output stride 8)")
    assert (explorer.last_result["row"].size, explorer.last_result["row"].jump) == (427, 8)


def test_receptive_field_explorer_measures_the_effective_field_on_demand():
    explorer = widgets.receptive_field_explorer(input_size=128)
    assert explorer.last_result["erf"] is None
    picture = explorer.image.value
    explorer.erf_button.click()
    erf = explorer.last_result["erf"]
    assert explorer.last_error is None
    unit = explorer.last_result["unit"]
    assert (erf.unit, erf.output_size[0] > unit) == ((unit, unit), True)  # the centre unit
    assert erf.gradient.shape == (128, 128)
    assert "Effective field" in explorer.summary.value and explorer.image.value != picture
    top, bottom, left, right = erf.support()
    first, last = explorer.last_result["field"]
    assert max(first, 0) <= left and right <= min(last, 127)  # inside the theoretical field
    _changed(explorer, "input_size", 160)  # a new size: the old measurement no longer applies
    assert explorer.last_result["erf"] is None


def test_receptive_field_explorer_starts_with_a_named_model():
    explorer = widgets.receptive_field_explorer("ResNet-101")
    assert explorer.controls["model"].value == "ResNet-101"
    # layer3 has 23 blocks: 91 + 2*8 + 22*2*16 = 811; layer4: 811 + 2*16 + 2*2*32 = 971
    assert explorer.last_result["row"].size == 971
    with pytest.raises(ValueError, match="unknown model"):
        widgets.receptive_field_explorer("ResNet-152")
    fcn = widgets.receptive_field_explorer("FCN-8s (VGG16 to score_fr)", input_size=96)
    assert fcn.last_result["row"].size == 404  # pool5's 212 + fc6's 7x7 at stride 32
    fcn.measure_effective_field()  # FCN zero-initialises score_fr: the explorer randomises it
    assert fcn.last_error is None
    assert fcn.last_result["erf"].gradient.abs().sum() > 0  # so the gradient is not zero


def test_receptive_field_explorer_takes_your_model():
    mine = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 4, 3, padding=2, dilation=2))
    explorer = widgets.receptive_field_explorer(model=mine, input_size=64)
    assert explorer.controls["model"].value == "your model"
    assert explorer.last_result["row"].size == 3 + 1 + 2 * 2 * 2
    explorer.measure_effective_field()
    assert explorer.last_error is None
    # the same measurement as effective_receptive_field on the model, at the centre unit
    unit = explorer.last_result["unit"]
    expected = effective_receptive_field(mine, 64, "3", unit=(unit, unit), samples=2)
    torch.testing.assert_close(explorer.last_result["erf"].gradient, expected.gradient)
    assert expected.gradient.abs().sum() > 0


def test_dilation_explorer_shows_gridding_and_its_cure():
    explorer = widgets.dilation_explorer()
    coverage = explorer.last_result["coverage"]
    assert (coverage.reached, coverage.total) == (49, 169)
    assert "gridding" in explorer.summary.value

    renders, changed = _changed(explorer, "preset", "1-2-5 (hybrid, Wang et al.)")
    assert renders == 1 and changed  # four controls changed, one redraw
    assert explorer.rates() == [1, 2, 5]
    assert explorer.last_result["coverage"].fraction == 1.0
    assert "no holes" in explorer.summary.value

    _changed(explorer, "rate3", 9)
    assert explorer.controls["preset"].value == "custom"  # moved by hand
    assert explorer.last_result["coverage"].holes and explorer.last_result["counts"].shape == (
        25, 25)
    _changed(explorer, "layers", 2)
    assert explorer.rates() == [1, 2]
    assert explorer.controls["rate3"].layout.display == "none"  # one slider per layer in use
    assert explorer.controls["rate2"].layout.display == ""
    _changed(explorer, "kernel_size", 5)
    assert explorer.last_result["counts"].shape == (1 + 4 * 1 + 4 * 2,) * 2


def test_ppm_explorer_draws_one_rectangle_per_cell_and_shows_overlaps():
    explorer = widgets.ppm_explorer()
    assert len(explorer.figure.axes[0].patches) == 36  # 6 x 6 cells of the chosen level
    assert len(explorer.figure.axes) == 5  # the map and four pooled levels
    assert "overlaps" not in explorer.summary.value  # 6 divides 60

    _changed(explorer, "width", 61)
    # 6 bins over 61 columns: every cell 11 wide, neighbours sharing a column (10..20, 20..30)
    assert "6×6: cells 10 × 11 px, overlaps: 5 across the width" in explorer.summary.value
    _changed(explorer, "height", 4)  # more bins than rows: cells of 1 or 2 rows, repeated
    assert "6×6: cells 1–2 × 11 px" in explorer.summary.value
    _changed(explorer, "level", 3)
    assert len(explorer.figure.axes[0].patches) == 9
    _changed(explorer, "bins", "1, 4")
    assert list(explorer.controls["level"].options) == [1, 4]
    assert len(explorer.figure.axes) == 3
    pooled = explorer.last_result["pooled"][4]
    assert pooled.shape[-2:] == (4, 61)  # upsampled back to the map, as PSPNet does


def test_explorer_errors_are_shown_and_cleared():
    explorer = widgets.ppm_explorer()
    explorer.controls["bins"].value = "two"
    assert isinstance(explorer.last_error, ValueError)
    assert "⚠" in explorer.summary.value and "whole numbers" in explorer.summary.value
    explorer.controls["bins"].value = "2"
    assert explorer.last_error is None and "⚠" not in explorer.summary.value


def test_aspp_explorer_follows_output_stride_rates_and_unit():
    explorer = widgets.aspp_explorer()
    assert explorer.last_result["map_size"] == 33
    assert [b.rate for b in explorer.last_result["branches"]] == [6, 12, 18]
    assert "acts as 1×1" in explorer.summary.value  # rate 18 on a 33x33 map

    _changed(explorer, "output_stride", 8)
    assert explorer.last_result["map_size"] == 65 and "65×65" in explorer.summary.value
    assert "acts as 1×1" not in explorer.summary.value
    _changed(explorer, "rates", "12, 24, 36")
    # torchvision's rates at output stride 8: on a 65x65 map, rate 36 already misses
    assert [b.taps_at_centre_2d for b in explorer.last_result["branches"]] == [9, 9, 1]
    _changed(explorer, "unit", "corner")
    assert explorer.last_result["inside"] == {12: 4, 24: 4, 36: 4}  # a corner sees 2 x 2


def test_widgets_accept_an_image_tensor_and_reject_a_bad_one():
    image = torch.rand(3, 40, 50)
    explorer = widgets.ppm_explorer(image=image)
    assert explorer.last_error is None
    with pytest.raises(ValueError, match="image must be"):
        as_image(torch.rand(2, 40, 50), 8, 8)
    assert widgets.sample_image(32).shape == (32, 32, 3)


def test_aspp_explorer_curve_is_the_share_of_kernel_weights_that_land_on_the_map():
    # Counted independently: a dilated 3x3 conv of ones over a map of ones, zero-padded, gives at
    # each position the number of taps on the map.
    size = 33
    curve = _valid_weight_curve(size)
    ones = torch.ones(1, 1, size, size)
    for rate in (1, 6, 12, 16, 17, 32, 33, 66):
        taps = torch.nn.functional.conv2d(ones, torch.ones(1, 1, 3, 3), padding=rate,
                                          dilation=rate)
        assert curve[rate - 1] == pytest.approx(taps.mean().item() / 9)
    assert curve[-1] == pytest.approx(1 / 9)  # rate >= map size: only the centre weight

"""segedu.tools.viz: palette, coloured masks, overlays and prediction grids (headless, Agg)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from segedu.data import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from segedu.tools.viz import (  # noqa: E402
    VOC_PALETTE,
    colorize,
    denormalize,
    overlay,
    palette,
    show_predictions,
)


def normalize(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> ImageNet-normalised, as the data pipeline does."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image - mean) / std


def batch(n: int = 3, num_classes: int = 4, size: tuple[int, int] = (6, 7)):
    """Normalised images (n, 3, H, W), targets (n, H, W) with ignore pixels, logits."""
    gen = torch.Generator().manual_seed(0)
    images = normalize(torch.rand(n, 3, *size, generator=gen))
    targets = torch.randint(0, num_classes, (n, *size), generator=gen)
    targets[:, 0, 0] = 255
    logits = torch.randn(n, num_classes, *size, generator=gen)
    return images, targets, logits


@pytest.mark.parametrize(
    ("index", "color"),
    [
        (0, (0, 0, 0)),
        (1, (128, 0, 0)),
        (2, (0, 128, 0)),
        (15, (192, 128, 128)),
        (255, (224, 224, 192)),
    ],
)
def test_voc_palette_has_the_known_voc_colours(index: int, color: tuple[int, int, int]) -> None:
    assert tuple(VOC_PALETTE[index]) == color


def test_voc_palette_is_256_distinct_read_only_uint8_colours() -> None:
    assert VOC_PALETTE.shape == (256, 3) and VOC_PALETTE.dtype == np.uint8
    assert len({tuple(c) for c in VOC_PALETTE}) == 256
    assert not VOC_PALETTE.flags.writeable


def test_palette_returns_the_first_voc_colours_as_a_copy() -> None:
    colors = palette(21)
    assert colors.shape == (21, 3) and colors.dtype == np.uint8
    np.testing.assert_array_equal(colors, VOC_PALETTE[:21])
    colors[0] = 7  # a copy: the shared palette is unchanged
    assert tuple(VOC_PALETTE[0]) == (0, 0, 0)
    with pytest.raises(ValueError, match="257"):
        palette(257)


def test_colorize_maps_classes_to_palette_colours_and_255_to_the_ignore_colour() -> None:
    mask = np.array([[0, 1], [15, 255]], dtype=np.uint8)
    rgb = colorize(mask)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [0, 0, 0]
    assert rgb[0, 1].tolist() == [128, 0, 0]
    assert rgb[1, 0].tolist() == [192, 128, 128]
    assert rgb[1, 1].tolist() == [255, 255, 255]
    assert colorize(mask, ignore_color=(1, 2, 3))[1, 1].tolist() == [1, 2, 3]


def test_colorize_gives_the_same_result_for_torch_and_numpy_masks() -> None:
    mask = torch.tensor([[0, 3], [255, 2]])
    np.testing.assert_array_equal(colorize(mask), colorize(mask.numpy().astype(np.uint16)))


def test_colorize_uses_a_custom_palette() -> None:
    custom = np.array([[10, 20, 30], [40, 50, 60]])
    rgb = colorize(torch.tensor([[1, 0]]), palette=custom)
    assert rgb.tolist() == [[[40, 50, 60], [10, 20, 30]]]


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (torch.zeros(2, 4, 4, dtype=torch.long), "masks\\[0\\]"),
        (torch.zeros(4), "2 dimensions"),
        (torch.zeros(4, 4), "integer"),
        (np.zeros((4, 4), dtype=np.float32), "integer"),
        (torch.full((2, 2), -1), "-1"),
    ],
    ids=["batch", "1d", "float-tensor", "float-array", "negative"],
)
def test_colorize_rejects_bad_masks_with_value_error(mask, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        colorize(mask)


def test_colorize_rejects_classes_beyond_the_palette() -> None:
    with pytest.raises(ValueError, match="5"):
        colorize(torch.tensor([[0, 5]]), palette=palette(3))


def test_denormalize_undoes_imagenet_normalisation() -> None:
    image = torch.rand(3, 5, 4, generator=torch.Generator().manual_seed(0))
    shown = denormalize(normalize(image))
    assert isinstance(shown, np.ndarray) and shown.shape == (5, 4, 3)
    np.testing.assert_allclose(shown, image.permute(1, 2, 0).numpy(), atol=1e-6)


def test_denormalize_clips_to_the_unit_range_and_detaches() -> None:
    image = torch.full((3, 2, 2), 100.0, requires_grad=True)
    shown = denormalize(image)
    assert shown.max() == 1.0 and shown.min() == 1.0


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (torch.zeros(1, 3, 4, 4), "images\\[0\\]"),
        (torch.zeros(4, 4, 3), "permute"),
        (torch.zeros(3, 4, 4, dtype=torch.uint8), "floating"),
    ],
    ids=["batch", "channels-last", "uint8"],
)
def test_denormalize_rejects_bad_images_with_value_error(image, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        denormalize(image)


def test_overlay_blends_labelled_pixels_and_leaves_ignored_pixels_as_the_image() -> None:
    images, targets, _ = batch()
    image, mask = images[0], targets[0]
    plain = denormalize(image)
    blended = overlay(image, mask, alpha=0.5)
    assert blended.shape == (6, 7, 3)
    assert blended.min() >= 0 and blended.max() <= 1
    np.testing.assert_allclose(blended[0, 0], plain[0, 0])  # mask is 255 there
    colours = colorize(mask) / 255
    np.testing.assert_allclose(blended[1:], 0.5 * plain[1:] + 0.5 * colours[1:], atol=1e-6)
    np.testing.assert_allclose(overlay(image, mask, alpha=1.0)[1:], colours[1:], atol=1e-6)


def test_overlay_with_ignore_index_none_colours_every_pixel() -> None:
    images, targets, _ = batch()
    mask = targets[0].clamp(max=3)
    blended = overlay(images[0], mask, alpha=1.0, ignore_index=None)
    np.testing.assert_allclose(blended, colorize(mask, ignore_index=None) / 255, atol=1e-6)


def test_overlay_accepts_an_already_denormalised_hwc_image() -> None:
    images, targets, _ = batch()
    np.testing.assert_allclose(
        overlay(denormalize(images[0]), targets[0]), overlay(images[0], targets[0]), atol=1e-6
    )


def test_overlay_rejects_a_mask_of_another_size_and_alpha_outside_0_1() -> None:
    images, targets, _ = batch()
    with pytest.raises(ValueError, match="does not match"):
        overlay(images[0], targets[0, :5])
    with pytest.raises(ValueError, match="alpha"):
        overlay(images[0], targets[0], alpha=1.5)


def test_show_predictions_makes_a_rows_by_three_grid_and_accepts_logits() -> None:
    images, targets, logits = batch(n=3)
    fig = show_predictions(images, targets, logits)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 * 3
    assert [ax.get_title() for ax in fig.axes[:3]] == ["image", "ground truth", "prediction"]
    assert all(ax.get_title() == "" for ax in fig.axes[3:])
    predicted = fig.axes[2].get_images()[0].get_array()
    np.testing.assert_array_equal(predicted, colorize(logits[0].argmax(0)))
    fig.canvas.draw()  # renders headless


def test_show_predictions_with_labels_matches_show_predictions_with_logits() -> None:
    images, targets, logits = batch(n=2)
    a = show_predictions(images, targets, logits).axes[5].get_images()[0].get_array()
    b = show_predictions(images, targets, logits.argmax(1)).axes[5].get_images()[0].get_array()
    np.testing.assert_array_equal(a, b)


def test_show_predictions_without_preds_has_two_columns_and_caps_rows() -> None:
    images, targets, _ = batch(n=5)
    assert len(show_predictions(images, targets).axes) == 5 * 2
    assert len(show_predictions(images, targets, max_rows=2).axes) == 2 * 2


def test_show_predictions_adds_a_legend_with_the_class_names() -> None:
    images, targets, logits = batch(n=2, num_classes=3)
    names = ["background", "cat", "dog"]
    fig = show_predictions(images, targets, logits, class_names=names)
    assert len(fig.axes) == 2 * 3
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == names
    assert not show_predictions(images, targets, logits).legends


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("image-3d", "4 dimensions"),
        ("target-size", "targets must have shape"),
        ("logits-vs-names", "5 channels but there are 4 class names"),
        ("target-class", "outside the 4 classes"),
        ("pred-shape", "does not match preds"),
    ],
)
def test_show_predictions_rejects_bad_inputs_with_value_error(case: str, message: str) -> None:
    images, targets, logits = batch(n=2, num_classes=4)
    names = ["a", "b", "c", "d"]
    kwargs = {
        "image-3d": dict(images=images[0], targets=targets),
        "target-size": dict(images=images, targets=targets[:, :5]),
        "logits-vs-names": dict(
            images=images, targets=targets, preds=torch.randn(2, 5, 6, 7), class_names=names
        ),
        "target-class": dict(images=images, targets=targets + 1, class_names=names),
        "pred-shape": dict(images=images, targets=targets, preds=logits[:, :, :5]),
    }[case]
    with pytest.raises(ValueError, match=message):
        show_predictions(**kwargs)


def test_show_predictions_compares_several_models_one_column_each():
    images = torch.rand(3, 3, 16, 16)
    targets = torch.randint(0, 3, (3, 16, 16))
    preds = {"FCN-32s": torch.randint(0, 3, (3, 16, 16)), "FCN-8s": torch.randn(3, 3, 16, 16)}
    fig = show_predictions(images, targets, preds, class_names=["a", "b", "c"], denorm=False)
    titles = [ax.get_title() for ax in fig.axes[:4]]
    assert titles == ["image", "ground truth", "FCN-32s", "FCN-8s"]
    assert len(fig.axes) == 3 * 4

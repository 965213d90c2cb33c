"""Specification of ShapeScenes (the set where shape, not colour, decides the class) and of the
registry of diagnostic tasks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.colors import rgb_to_hsv

from segedu.core.validation import IGNORE_INDEX
from segedu.data import SHAPE_CLASSES, TASKS, ShapeScenes, SyntheticShapes, get_task, list_tasks
from segedu.data.scenes import textured_paint


def test_a_sample_is_the_same_whatever_the_order_and_the_instance():
    a = ShapeScenes("train", length=8, cache=False)
    b = ShapeScenes("train", length=8, cache=True)
    for i in (5, 0, 5, 3):
        image_a, mask_a = a[i]
        image_b, mask_b = b[i]
        assert torch.equal(image_a, image_b) and torch.equal(mask_a, mask_b)
    assert torch.equal(b[5][0], b[5][0])  # a cached read equals the first


def test_splits_and_seeds_give_different_images():
    base = ShapeScenes("train", length=2)[1][0]
    assert not torch.equal(base, ShapeScenes("val", length=2)[1][0])
    assert not torch.equal(base, ShapeScenes("train", length=2, seed=1)[1][0])


def test_images_are_floats_in_0_1_and_masks_hold_only_the_classes_or_ignore():
    data = ShapeScenes("val", size=48, length=24)
    seen = set()
    for image, mask in data:
        assert image.shape == (3, 48, 48) and image.dtype == torch.float32
        assert 0 <= image.min() and image.max() <= 1
        assert mask.shape == (48, 48) and mask.dtype == torch.long
        values = set(mask.unique().tolist())
        assert values <= set(range(len(SHAPE_CLASSES))) | {IGNORE_INDEX}
        seen |= values
    assert seen == set(range(len(SHAPE_CLASSES))) | {IGNORE_INDEX}  # every class shows up


def test_without_the_ignore_band_every_pixel_has_a_class():
    mask = ShapeScenes("train", length=1, ignore_boundary=False)[0][1]
    assert int(mask.max()) < len(SHAPE_CLASSES)


def test_layout_names_the_objects_that_are_drawn():
    data = ShapeScenes("train", length=4, ignore_boundary=False)
    for i in range(4):
        labels = {shape.label for shape in data.layout(i)}
        visible = set(data[i][1].unique().tolist()) - {0}
        assert visible <= labels  # an object may be hidden by a later one, never invented


def test_object_sizes_follow_scale_range():
    data = ShapeScenes("train", size=64, length=64, scale_range=(0.1, 0.2))
    radii = [s.radius for i in range(len(data)) for s in data.layout(i) if s.label != 4]
    assert 6.4 <= min(radii) and max(radii) <= 12.8
    assert max(radii) / min(radii) > 1.6  # several scales, not one


def test_bad_arguments_raise_with_what_was_expected():
    with pytest.raises(ValueError, match="max_shapes must be at least 1"):
        ShapeScenes(max_shapes=0)
    with pytest.raises(ValueError, match="scale_range .* got"):
        ShapeScenes(scale_range=(0.3, 0.1))
    with pytest.raises(ValueError, match="at least 32"):
        ShapeScenes(size=16)


def test_textured_paint_uses_the_hue_it_is_given():
    rng = np.random.default_rng(0)
    _, colour = textured_paint(rng, 32, hue=400.0)
    assert colour[0] == pytest.approx(40.0)


def _hsv_spread(dataset, samples: int = 200, bins: int = 8) -> np.ndarray:
    """For hue, saturation and value: the largest total-variation distance between the pixel
    histograms of two classes (0: identical distributions, 1: disjoint), over ``samples``."""
    pixels = {c: [] for c in range(len(SHAPE_CLASSES))}
    for i in range(samples):
        image, mask = dataset[i]
        hsv, mask = rgb_to_hsv(image.permute(1, 2, 0).numpy()), mask.numpy()
        for c in pixels:
            pixels[c].append(hsv[mask == c])
    spread = []
    for k in range(3):
        hists = [np.histogram(np.concatenate(p)[:, k], bins=bins, range=(0, 1))[0] for p in
                 pixels.values()]
        hists = [h / h.sum() for h in hists]
        spread.append(max(0.5 * np.abs(a - b).sum() for a in hists for b in hists))
    return np.array(spread)


def test_colour_is_independent_of_the_class_unlike_synthetic_shapes():
    # Pixels of one object share its colour, so 200 images hold only ~150 objects per class:
    # histograms of the same distribution still differ by up to ~0.3 (measured over seeds 0-2:
    # hue 0.21-0.31, saturation 0.10-0.14, value 0.14-0.21). SyntheticShapes, where each class
    # has its own hue sector, is at 1.0 for hue: the statistic tells the two sets apart.
    scenes = _hsv_spread(ShapeScenes("val", length=200))
    shapes = _hsv_spread(SyntheticShapes("val", length=200))
    assert scenes[0] < 0.35 and scenes[1] < 0.25 and scenes[2] < 0.25, scenes
    assert shapes[0] > 0.9, shapes


def test_every_task_builds_train_and_val_sets_of_its_classes():
    assert list_tasks() == list(TASKS)
    for name in ("shapes", "touching", "context", "imbalance", "few-images", "scale-range",
                 "resolution"):
        task = get_task(name)
        assert task.isolates, name
        train, val = task.train_set(length=2), task.val_set(length=2)
        image, mask = train[0][:2]
        assert image.shape == (3, task.size, task.size)
        assert val[0][0].shape[-1] == (task.val_size or task.size)
        assert int(mask[mask != IGNORE_INDEX].max()) < task.num_classes
    assert len(get_task("few-images").train_set()) == 32
    assert get_task("resolution").val_set(length=1)[0][0].shape[-1] == 96


def test_an_unknown_task_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown task 'cats'.*shapes"):
        get_task("cats")

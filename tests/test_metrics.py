"""segedu.core.metrics: the confusion matrix and the metrics read off it."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from segedu.core.metrics import ConfusionMatrix, format_report


def random_batch(
    gen: torch.Generator, num_classes: int, shape=(2, 13, 17), ignore_frac: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random labels (pred, target); about ``ignore_frac`` of the target pixels are 255."""
    pred = torch.randint(0, num_classes, shape, generator=gen)
    target = torch.randint(0, num_classes, shape, generator=gen)
    target[torch.rand(shape, generator=gen) < ignore_frac] = 255
    return pred, target


def hand_worked_example() -> tuple[torch.Tensor, torch.Tensor]:
    """A 4x4 mask with 3 classes and one ignored pixel (bottom right)."""
    target = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 2, 255]])
    pred = torch.tensor([[0, 0, 0, 1], [0, 1, 1, 1], [2, 2, 1, 2], [2, 2, 2, 0]])
    return pred[None], target[None]


@pytest.mark.parametrize("num_classes", [2, 5, 21])
def test_confusion_matrix_matches_sklearn_on_random_masks(num_classes: int) -> None:
    gen = torch.Generator().manual_seed(num_classes)
    cm = ConfusionMatrix(num_classes)
    preds, targets = [], []
    for _ in range(3):  # several batches accumulate into one matrix
        pred, target = random_batch(gen, num_classes)
        cm.update(pred, target)
        keep = target != 255
        preds.append(pred[keep].numpy())
        targets.append(target[keep].numpy())
    y_pred, y_true = np.concatenate(preds), np.concatenate(targets)
    labels = list(range(num_classes))

    expected = skm.confusion_matrix(y_true, y_pred, labels=labels)
    np.testing.assert_array_equal(cm.matrix.numpy(), expected)
    assert cm.matrix.dtype == torch.int64

    results = cm.compute()
    expected_iou = skm.jaccard_score(y_true, y_pred, labels=labels, average=None)
    np.testing.assert_allclose(results["iou"], expected_iou)
    assert results["miou"] == pytest.approx(expected_iou.mean())
    np.testing.assert_allclose(
        results["acc"], skm.recall_score(y_true, y_pred, labels=labels, average=None)
    )
    assert results["pixel_acc"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert results["mean_acc"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    # Dice is the F1 score of each class
    np.testing.assert_allclose(
        results["dice"], skm.f1_score(y_true, y_pred, labels=labels, average=None)
    )


def test_hand_worked_example_gives_the_expected_matrix_and_metrics() -> None:
    # Rows = ground truth, columns = prediction; the ignored pixel (predicted 0) is not counted.
    #   class 0: 4 GT pixels, 3 predicted 0, 1 predicted 1  -> row [3, 1, 0]
    #   class 1: 4 GT pixels, 1 predicted 0, 3 predicted 1  -> row [1, 3, 0]
    #   class 2: 7 GT pixels, 1 predicted 1, 6 predicted 2  -> row [0, 1, 6]
    # Column sums (predicted pixels): 4, 5, 6.
    #   IoU = n_ii / (t_i + p_i - n_ii):
    #   IoU_0 = 3 / (4 + 4 - 3) = 0.6,  IoU_1 = 3 / (4 + 5 - 3) = 0.5,
    #   IoU_2 = 6 / (7 + 6 - 6) = 6/7
    #   mIoU = (0.6 + 0.5 + 6/7) / 3;  pixel acc = 12 / 15 = 0.8
    #   acc = [3/4, 3/4, 6/7];  fwIoU = (4 * 0.6 + 4 * 0.5 + 7 * 6/7) / 15 = 10.4 / 15
    #   Dice = [6/8, 6/9, 12/13]
    cm = ConfusionMatrix(3).update(*hand_worked_example())
    assert cm.matrix.tolist() == [[3, 1, 0], [1, 3, 0], [0, 1, 6]]
    r = cm.compute()
    assert r["iou"] == pytest.approx([0.6, 0.5, 6 / 7])
    assert r["miou"] == pytest.approx((0.6 + 0.5 + 6 / 7) / 3)
    assert r["pixel_acc"] == pytest.approx(0.8)
    assert r["acc"] == pytest.approx([0.75, 0.75, 6 / 7])
    assert r["mean_acc"] == pytest.approx((0.75 + 0.75 + 6 / 7) / 3)
    assert r["fw_iou"] == pytest.approx(10.4 / 15)
    assert r["dice"] == pytest.approx([6 / 8, 6 / 9, 12 / 13])
    assert r["mean_dice"] == pytest.approx((6 / 8 + 6 / 9 + 12 / 13) / 3)


def test_logits_give_the_same_matrix_as_their_argmax_labels() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 9, 11, generator=gen)
    _, target = random_batch(gen, 5, shape=(2, 9, 11))
    from_logits = ConfusionMatrix(5).update(logits, target)
    from_labels = ConfusionMatrix(5).update(logits.argmax(1), target)
    assert from_logits.matrix.sum() > 0
    assert torch.equal(from_logits.matrix, from_labels.matrix)


def test_pixels_marked_ignore_index_are_not_counted() -> None:
    target = torch.tensor([[[0, 1], [255, 255]]])
    pred = torch.tensor([[[0, 1], [1, 0]]])
    cm = ConfusionMatrix(2).update(pred, target)
    assert cm.matrix.tolist() == [[1, 0], [0, 1]]


def test_a_custom_ignore_index_is_skipped_like_255() -> None:
    target = torch.tensor([[[0, 1], [-100, -100]]])
    pred = torch.tensor([[[0, 1], [1, 0]]])
    cm = ConfusionMatrix(2, ignore_index=-100).update(pred, target)
    assert cm.matrix.tolist() == [[1, 0], [0, 1]]


def test_uint8_targets_do_not_overflow_when_indexing_the_matrix() -> None:
    # 20 * 21 + 20 = 440 does not fit in uint8
    target = torch.full((1, 2, 2), 20, dtype=torch.uint8)
    cm = ConfusionMatrix(21).update(target.clone(), target)
    assert cm.matrix[20, 20] == 4
    assert cm.matrix.sum() == 4


def test_classes_absent_from_pred_and_target_get_nan_iou_and_are_left_out_of_miou() -> None:
    target = torch.tensor([[[0, 0, 1, 1]]])
    pred = torch.tensor([[[0, 1, 1, 1]]])
    r = ConfusionMatrix(4).update(pred, target).compute()
    assert r["iou"][:2] == pytest.approx([1 / 2, 2 / 3])
    assert math.isnan(r["iou"][2]) and math.isnan(r["iou"][3])
    assert math.isnan(r["acc"][2]) and math.isnan(r["dice"][3])
    assert r["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert r["mean_acc"] == pytest.approx((1 / 2 + 1) / 2)


def test_a_class_predicted_but_absent_from_the_target_has_zero_iou_and_nan_accuracy() -> None:
    target = torch.tensor([[[0, 0]]])
    pred = torch.tensor([[[0, 1]]])
    r = ConfusionMatrix(2).update(pred, target).compute()
    assert r["iou"] == pytest.approx([0.5, 0.0])
    assert math.isnan(r["acc"][1])
    assert r["miou"] == pytest.approx(0.25)
    assert r["fw_iou"] == pytest.approx(0.5)  # weighted by GT frequency: class 1 has weight 0


def test_an_empty_matrix_gives_nan_everywhere() -> None:
    r = ConfusionMatrix(3).compute()
    assert all(math.isnan(r[k]) for k in ("pixel_acc", "mean_acc", "miou", "fw_iou"))


def test_compute_returns_plain_python_numbers_that_serialise_to_json() -> None:
    r = ConfusionMatrix(3).update(*hand_worked_example()).compute()
    assert set(r) == {"pixel_acc", "mean_acc", "acc", "iou", "miou", "fw_iou", "dice", "mean_dice"}
    for key, value in r.items():
        if isinstance(value, list):
            assert all(type(v) is float for v in value), key
        else:
            assert type(value) is float, key
    assert json.loads(json.dumps(r))["miou"] == pytest.approx(r["miou"])


def test_update_detaches_tensors_that_require_grad_and_works_under_no_grad() -> None:
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    cm = ConfusionMatrix(3)
    assert cm.update(logits, target) is cm
    with torch.no_grad():
        cm.update(logits, target)
    assert cm.matrix.sum() == 32
    assert not cm.matrix.requires_grad


def test_reset_clears_the_counts() -> None:
    cm = ConfusionMatrix(3).update(*hand_worked_example())
    cm.reset()
    assert cm.matrix.sum() == 0


def test_adding_matrices_equals_updating_one_matrix_with_all_batches() -> None:
    gen = torch.Generator().manual_seed(1)
    a_batch, b_batch = random_batch(gen, 4), random_batch(gen, 4)
    a, b = ConfusionMatrix(4).update(*a_batch), ConfusionMatrix(4).update(*b_batch)
    both = ConfusionMatrix(4).update(*a_batch).update(*b_batch)
    assert torch.equal((a + b).matrix, both.matrix)
    assert torch.equal(a.merge(b).matrix, both.matrix)
    with pytest.raises(ValueError, match="num_classes=5"):
        a.merge(ConfusionMatrix(5))


def test_repr_names_classes_and_counted_pixels() -> None:
    cm = ConfusionMatrix(3).update(*hand_worked_example())
    assert repr(cm) == "ConfusionMatrix(num_classes=3, ignore_index=255, pixels=15)"


def test_target_value_outside_the_classes_raises_with_the_value_and_allowed_range() -> None:
    target = torch.tensor([[[0, 1], [2, 7]]])
    with pytest.raises(ValueError, match=r"\{7\}.*0\.\.2"):
        ConfusionMatrix(3).update(torch.zeros_like(target), target)


def test_with_ignore_index_none_255_is_an_error() -> None:
    target = torch.tensor([[[0, 255]]])
    ConfusionMatrix(3).update(torch.zeros_like(target), target)  # fine with the default
    with pytest.raises(ValueError, match="255"):
        ConfusionMatrix(3, ignore_index=None).update(torch.zeros_like(target), target)


def test_predicted_labels_outside_the_classes_raise() -> None:
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="prediction.*3"):
        ConfusionMatrix(3).update(torch.full_like(target, 3), target)


def test_logits_with_the_wrong_channel_count_raise_naming_both_numbers() -> None:
    with pytest.raises(ValueError, match=r"4 channels.*num_classes=3"):
        ConfusionMatrix(3).update(torch.randn(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


@pytest.mark.parametrize(
    ("pred", "target", "message"),
    [
        (torch.zeros(1, 3, 3, dtype=torch.long), torch.zeros(1, 3, 4, dtype=torch.long), "shape"),
        (torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2, dtype=torch.long), "shape"),
        (torch.zeros(3, 2, 2), torch.zeros(2, 2, dtype=torch.long), "unsqueeze"),
        (torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long), "unsqueeze"),
        (torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2), "integer"),
        (torch.zeros(1, 2, 2, dtype=torch.long), np.zeros((1, 2, 2), dtype=np.int64), "Tensor"),
    ],
    ids=[
        "spatial-mismatch",
        "4d-target",
        "single-image-logits",
        "2d-masks",
        "float-target",
        "numpy-target",
    ],
)
def test_wrong_shapes_dtypes_and_types_raise_value_error(pred, target, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ConfusionMatrix(3).update(pred, target)


def test_num_classes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)


def test_format_report_lists_each_class_and_the_summary() -> None:
    r = ConfusionMatrix(4).update(*hand_worked_example()).compute()
    report = format_report(r, ["background", "cat", "dog", "bird"])
    lines = report.splitlines()
    assert lines[0].split() == ["class", "IoU", "%", "Acc", "%"]
    assert lines[1].split() == ["background", "60.00", "75.00"]
    assert lines[3].split() == ["dog", "85.71", "85.71"]
    assert lines[4].split() == ["bird", "-", "-"]  # absent class: nan shown as "-"
    assert lines[-1] == "pixel acc 80.00  mean acc 78.57  mIoU 65.24"
    assert len({len(line) for line in lines[:-1]}) == 1  # fixed-width table
    assert format_report(r).splitlines()[1].split() == ["0", "60.00", "75.00"]


def test_format_report_rejects_the_wrong_number_of_class_names() -> None:
    r = ConfusionMatrix(3).update(*hand_worked_example()).compute()
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        format_report(r, ["a", "b"])


def _square(shift: int = 0) -> torch.Tensor:
    mask = torch.zeros(1, 32, 32, dtype=torch.long)
    mask[:, 8:24, 8 + shift : 24 + shift] = 1
    return mask


def test_boundary_f1_is_one_for_a_perfect_or_within_tolerance_prediction():
    from segedu.core.metrics import boundary_f1

    assert boundary_f1(_square(), _square()) == 1.0
    assert boundary_f1(_square(shift=2), _square(), tolerance=2) == 1.0
    assert boundary_f1(_square(shift=2), _square(), tolerance=1) < 1.0


def test_boundary_f1_falls_as_the_boundary_moves_away():
    from segedu.core.metrics import boundary_f1

    # Shifted right, the left and right edges leave the 2-px tolerance; top and bottom stay.
    scores = [boundary_f1(_square(shift=s), _square(), tolerance=2) for s in (0, 3, 6)]
    assert scores[0] > scores[1] > scores[2]
    assert boundary_f1(torch.zeros(1, 32, 32, dtype=torch.long), _square()) == 0.0
    empty = torch.zeros(1, 8, 8, dtype=torch.long)
    assert math.isnan(boundary_f1(empty, empty))


def test_boundary_f1_accepts_logits_and_skips_ignore_pixels():
    from segedu.core.metrics import boundary_f1

    target = _square()
    target[:, 8, 8:24] = 255  # an ignore band on the top edge
    logits = torch.nn.functional.one_hot(_square(), 2).permute(0, 3, 1, 2).float()
    assert boundary_f1(logits, target) == 1.0
    with pytest.raises(ValueError):
        boundary_f1(logits, target[0])


def test_boundary_band_marks_pixels_near_label_changes_but_not_ignore_pixels():
    from segedu.core.metrics import boundary_band

    target = _square()
    band = boundary_band(target, radius=1)
    assert band[0, 16, 16] == 0 and band[0, 0, 0] == 0  # deep inside / far outside
    assert band[0, 8, 16] and band[0, 7, 16] and band[0, 6, 16] and not band[0, 5, 16]
    target[:, 8, 8:24] = 255
    assert not boundary_band(target, radius=1)[0, 8, 16]  # ignore pixels are never scored


def test_a_predicted_label_equal_to_the_ignore_index_is_an_error_not_skipped() -> None:
    # 255 means "no label" in the ground truth only; a model never predicts it
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"prediction has values \{255\}"):
        ConfusionMatrix(3).update(torch.full_like(target, 255), target)


def _edges_by_hand(labels: torch.Tensor) -> torch.Tensor:
    """Pixels with a 4-neighbour of another label, one pixel at a time."""
    n, h, w = labels.shape
    edge = torch.zeros(n, h, w, dtype=torch.bool)
    for b, y, x in itertools.product(range(n), range(h), range(w)):
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            if 0 <= y + dy < h and 0 <= x + dx < w and labels[b, y + dy, x + dx] != labels[b, y, x]:
                edge[b, y, x] = True
    return edge


def _near(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Pixels within ``radius`` (in each direction) of a True pixel of ``mask``, by hand."""
    near = torch.zeros_like(mask)
    for b, y, x in torch.nonzero(mask).tolist():
        near[b, max(y - radius, 0):y + radius + 1, max(x - radius, 0):x + radius + 1] = True
    return near


def _random_masks(seed: int, shape=(2, 9, 11)) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 3, (shape[0], 3, 4), generator=gen)  # blobs, not noise
    masks = torch.nn.functional.interpolate(coarse[:, None].float(), size=shape[1:])[:, 0].long()
    masks[torch.rand(shape, generator=gen) < 0.05] = 255
    return masks


def test_boundary_band_of_radius_0_is_both_sides_of_every_label_change() -> None:
    from segedu.core.metrics import boundary_band

    target = torch.tensor([[[0, 0, 1, 1],
                            [0, 0, 1, 1],
                            [2, 2, 2, 2]]])
    assert boundary_band(target, radius=0).long().tolist() == [[[0, 1, 1, 0],
                                                                [1, 1, 1, 1],
                                                                [1, 1, 1, 1]]]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("radius", [0, 1, 3])
def test_boundary_band_is_every_labelled_pixel_within_radius_of_a_label_change(seed, radius):
    from segedu.core.metrics import boundary_band

    target = _random_masks(seed)
    expected = _near(_edges_by_hand(target), radius) & (target != 255)
    assert torch.equal(boundary_band(target, radius=radius), expected)
    # without an ignore index, 255 is a label like any other and its pixels are scored
    assert torch.equal(boundary_band(target, radius, ignore_index=None),
                       _near(_edges_by_hand(target), radius))


def _boundary_f1_by_hand(pred, target, tolerance):
    true_edge = _edges_by_hand(target) & (target != 255)
    pred_edge = _edges_by_hand(pred) & (target != 255)
    precision = (pred_edge & _near(true_edge, tolerance)).sum() / pred_edge.sum()
    recall = (true_edge & _near(pred_edge, tolerance)).sum() / true_edge.sum()
    return float(2 * precision * recall / (precision + recall))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tolerance", [0, 1, 2])
def test_boundary_f1_is_the_f_score_of_boundary_pixels_within_tolerance(seed, tolerance):
    from segedu.core.metrics import boundary_f1

    target, pred = _random_masks(seed), _random_masks(seed + 100)
    pred[pred == 255] = 0
    expected = _boundary_f1_by_hand(pred, target, tolerance)
    assert expected > 0 and (expected < 1 or tolerance == 2)  # not a trivial example
    assert boundary_f1(pred, target, tolerance) == pytest.approx(expected)


def _ignored_strip_example() -> tuple[torch.Tensor, torch.Tensor]:
    """An object and, in an ignored strip (columns 0-3), a spurious predicted one."""
    target = torch.zeros(1, 12, 12, dtype=torch.long)
    target[:, 4:9, 7:11] = 1
    target[:, :, :4] = 255
    pred = target.clone()
    pred[:, 2:10, 1:3] = 1
    return pred, target


@pytest.mark.parametrize("tolerance", [0, 2])
def test_boundary_f1_does_not_score_predicted_boundaries_on_ignore_pixels(tolerance) -> None:
    from segedu.core.metrics import boundary_f1

    pred, target = _ignored_strip_example()
    assert boundary_f1(pred, target, tolerance) == 1.0
    # with no ignore index, the spurious object's boundary counts against the prediction
    assert boundary_f1(pred, target, tolerance, ignore_index=None) < 1.0


def test_boundary_f1_is_0_when_only_one_side_has_boundaries_and_nan_when_neither() -> None:
    from segedu.core.metrics import boundary_f1

    flat = torch.zeros(1, 32, 32, dtype=torch.long)
    assert boundary_f1(flat, _square()) == 0.0  # no predicted boundary: recall 0
    assert boundary_f1(_square(), flat) == 0.0  # no true boundary: precision 0
    assert math.isnan(boundary_f1(flat, flat))


def test_boundary_f1_rejects_a_negative_tolerance() -> None:
    from segedu.core.metrics import boundary_f1

    with pytest.raises(ValueError, match="tolerance must be >= 0 pixels, got -1"):
        boundary_f1(_square(), _square(), tolerance=-1)


def test_format_report_pads_short_class_names_to_the_header_width() -> None:
    r = ConfusionMatrix(3).update(*hand_worked_example()).compute()
    assert format_report(r) == (
        "class    IoU %    Acc %\n"
        "0        60.00    75.00\n"
        "1        50.00    75.00\n"
        "2        85.71    85.71\n"
        "-----------------------\n"
        "pixel acc 80.00  mean acc 78.57  mIoU 65.24"
    )


def test_the_matrix_is_created_on_the_requested_device() -> None:
    assert ConfusionMatrix(3, device="meta").matrix.device.type == "meta"
    assert ConfusionMatrix(3).matrix.device.type == "cpu"


def test_prediction_and_target_on_different_devices_raise_naming_both() -> None:
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="prediction is on meta but target is on cpu"):
        ConfusionMatrix(3).update(torch.zeros(1, 3, 2, 2, device="meta"), target)


def test_merging_matrices_with_another_ignore_index_raises() -> None:
    with pytest.raises(ValueError, match="ignore_index=None into one with num_classes=3, "
                                         "ignore_index=255"):
        ConfusionMatrix(3).merge(ConfusionMatrix(3, ignore_index=None))


def test_the_sum_of_two_matrices_lives_on_their_device() -> None:
    total = ConfusionMatrix(3, device="meta") + ConfusionMatrix(3, device="meta")
    assert total.matrix.device.type == "meta" and total.matrix.shape == (3, 3)


def test_format_report_refuses_per_class_lists_of_different_lengths() -> None:
    r = ConfusionMatrix(3).update(*hand_worked_example()).compute()
    with pytest.raises(ValueError):
        format_report({**r, "acc": r["acc"][:2]})


# --------------------------------------------------------------------------- what mutation found

def test_boundary_band_names_its_argument_when_the_target_is_not_a_label_map():
    from segedu.core.metrics import boundary_band

    with pytest.raises(ValueError, match=r"^target must be .*got shape \(4, 4\)"):
        boundary_band(torch.zeros(4, 4, dtype=torch.long))


def test_boundary_f1_tolerates_two_pixels_by_default():
    from segedu.core.metrics import boundary_f1

    target = torch.zeros(1, 16, 16, dtype=torch.long)
    target[:, :, 8:] = 1                        # a vertical edge between columns 7 and 8
    pred = torch.zeros_like(target)
    pred[:, :, 12:] = 1  # the same edge 4 columns to the right (edges mark both sides: 2 px)
    assert boundary_f1(pred, target) == boundary_f1(pred, target, tolerance=2) == 0.0
    assert boundary_f1(pred, target, tolerance=3) > 0.0


# ----------------------------------------------------------------------------------------------
# Trimap mIoU (DeepLab v3+ Fig. 5): mIoU in a band around the true boundaries
# ----------------------------------------------------------------------------------------------


def _trimap_miou_by_hand(pred, target, num_classes, width):
    """Per class, intersection and union counted over the band pixels one class at a time."""
    band = _near(_edges_by_hand(target), width) & (target != 255)
    ious = []
    for c in range(num_classes):
        inter = ((pred == c) & (target == c) & band).sum().item()
        union = (((pred == c) | (target == c)) & band).sum().item()
        if union:
            ious.append(inter / union)
    return sum(ious) / len(ious)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("width", [0, 1, 3])
def test_trimap_miou_is_the_miou_of_the_pixels_within_width_of_a_true_boundary(seed, width):
    from segedu.core.metrics import trimap_miou

    target = _random_masks(seed)
    pred = torch.randint(0, 3, target.shape, generator=torch.Generator().manual_seed(seed + 10))
    expected = _trimap_miou_by_hand(pred, target, 3, width)
    assert trimap_miou(pred, target, 3, width) == pytest.approx(expected)


def _square_scene():
    target = torch.zeros(1, 20, 20, dtype=torch.long)
    target[0, 4:16, 4:16] = 1  # a 12 x 12 object: its interior lies > 2 pixels from the edge
    return target


def test_trimap_wider_than_the_image_is_plain_miou():
    from segedu.core.metrics import trimap_miou

    target = _square_scene()
    pred = torch.randint(0, 2, target.shape, generator=torch.Generator().manual_seed(0))
    plain = ConfusionMatrix(2).update(pred, target).compute()["miou"]
    assert trimap_miou(pred, target, 2, width=40) == pytest.approx(plain)


def test_trimap_band_excludes_interior_pixels_and_ignore_pixels():
    from segedu.core.metrics import trimap_confusion, trimap_miou

    target = _square_scene()
    pred = target.clone()
    pred[0, 8:12, 8:12] = 0  # wrong, but deep inside the object: not in a 2-pixel band
    pred[0, 0, 0] = 1  # wrong, but far outside: not in the band either
    assert trimap_miou(pred, target, 2, width=2) == 1.0
    assert ConfusionMatrix(2).update(pred, target).compute()["miou"] < 1.0
    pred[0, 4, 8] = 0  # on the edge: the band sees it
    assert trimap_miou(pred, target, 2, width=2) < 1.0
    ignored = target.clone()
    ignored[0, 4, 4:16] = 255  # the top edge ignored: never counted, still marks a boundary
    counted = trimap_confusion(pred, ignored, 2, width=0).matrix.sum().item()
    assert counted == _near(_edges_by_hand(ignored), 0)[ignored != 255].sum().item()


def test_trimap_of_a_mask_without_boundaries_is_nan_and_bad_widths_raise():
    from segedu.core.metrics import trimap_miou

    flat = torch.zeros(1, 8, 8, dtype=torch.long)
    assert math.isnan(trimap_miou(flat, flat, 2, width=3))
    with pytest.raises(ValueError, match="width must be a whole number of pixels >= 0, got -1"):
        trimap_miou(flat, flat, 2, width=-1)
    with pytest.raises(ValueError, match=r"expected target \(1, 8, 8\)"):
        trimap_miou(torch.zeros(1, 2, 8, 8), flat[None], 2, width=1)

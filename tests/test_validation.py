"""segedu.core.validation: what every entry point accepts, and what it tells a learner otherwise.

One test per rule. Messages are checked for the words a learner needs (what was expected, what
came, what to do), not character by character.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segedu.core.validation import (
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    check_image_batch,
    check_logits_and_target,
    check_mask,
    check_num_classes,
)

# --------------------------------------------------------------------------- conventions


def test_the_conventions_are_voc_and_imagenet() -> None:
    assert IGNORE_INDEX == 255
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert IMAGENET_STD == (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- check_num_classes


@pytest.mark.parametrize("n", [1, 2, 21])
def test_check_num_classes_returns_a_positive_int_unchanged(n) -> None:
    assert check_num_classes(n) == n


@pytest.mark.parametrize("bad", [0, -3, 2.5, 2.0, True, "3", None])
def test_check_num_classes_rejects_zero_negatives_floats_bools_and_strings(bad) -> None:
    with pytest.raises(ValueError, match=rf"num_classes must be a positive int, got {bad!r}\."):
        check_num_classes(bad)


# --------------------------------------------------------------------------- check_image_batch


def test_check_image_batch_accepts_a_float_nchw_batch() -> None:
    assert check_image_batch(torch.zeros(2, 3, 5, 7), 3, min_size=5) is None
    check_image_batch(torch.zeros(1, 5, 1, 1, dtype=torch.float64))  # any channels by default


def test_check_image_batch_rejects_a_non_tensor_naming_its_type() -> None:
    with pytest.raises(ValueError, match=r"input must be a torch.Tensor .*got ndarray\..*to_image"):
        check_image_batch(np.zeros((1, 3, 4, 4), dtype=np.float32))


def test_check_image_batch_on_a_single_image_suggests_unsqueeze() -> None:
    with pytest.raises(ValueError, match=r"4 dimensions \(N, C, H, W\), got 3 .*\(3, 4, 4\)\. "
                                         r"Add a batch dimension with x.unsqueeze\(0\)"):
        check_image_batch(torch.zeros(3, 4, 4))


@pytest.mark.parametrize("shape", [(4, 4), (1, 1, 3, 4, 4)])
def test_check_image_batch_rejects_other_ranks_without_the_unsqueeze_hint(shape) -> None:
    shown = ", ".join(map(str, shape))
    with pytest.raises(ValueError, match=rf"got {len(shape)} with shape \({shown}\)\.$") as info:
        check_image_batch(torch.zeros(shape))
    assert "unsqueeze" not in str(info.value)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
def test_check_image_batch_rejects_integer_images_and_says_how_to_convert(dtype) -> None:
    message = rf"floating-point .*got dtype {dtype}\..*x.float\(\) / 255"
    with pytest.raises(ValueError, match=message):
        check_image_batch(torch.zeros(1, 3, 4, 4, dtype=dtype))


def test_check_image_batch_rejects_the_wrong_channel_count_naming_both() -> None:
    with pytest.raises(ValueError, match=r"must have 3 channels \(N, 3, H, W\), got 1 channels "
                                         r"in shape \(1, 1, 4, 4\)\.$"):
        check_image_batch(torch.zeros(1, 1, 4, 4), 3)


def test_check_image_batch_recognises_a_channels_last_batch() -> None:
    with pytest.raises(ValueError, match=r"channels-last .*x.permute\(0, 3, 1, 2\)"):
        check_image_batch(torch.zeros(1, 4, 4, 3), 3)


@pytest.mark.parametrize("shape", [(1, 3, 7, 8), (1, 3, 8, 7), (1, 3, 2, 2)])
def test_check_image_batch_rejects_a_side_below_min_size(shape) -> None:
    h, w = shape[-2:]
    with pytest.raises(ValueError, match=rf"input is {h}x{w} but this network needs at least 8x8"):
        check_image_batch(torch.zeros(shape), min_size=8)


def test_check_image_batch_names_the_argument_in_its_messages() -> None:
    with pytest.raises(ValueError, match=r"^image must have 4 dimensions"):
        check_image_batch(torch.zeros(4, 4), name="image")


# --------------------------------------------------------------------------- check_mask


def test_check_mask_accepts_class_indices_and_the_default_ignore_index_255() -> None:
    check_mask(torch.tensor([[0, 1, 2, 255]]), 3)
    check_mask(torch.tensor([[0, 1, 2, 255]], dtype=torch.uint8), 3, IGNORE_INDEX)
    check_mask(torch.tensor([[0, -100]]), 3, ignore_index=-100)


def test_check_mask_accepts_an_empty_mask() -> None:
    check_mask(torch.zeros(0, 4, dtype=torch.long), 3)


@pytest.mark.parametrize("mask, bad", [([[3]], "3"), ([[0, -1]], "-1"), ([[0, 1, 7, 7]], "7")])
def test_check_mask_rejects_values_outside_the_classes_listing_them(mask, bad) -> None:
    with pytest.raises(ValueError, match=rf"^target has values \{{{bad}\}} outside the 3 classes; "
                                         r"expected 0..2 or 255 \(ignore\)\. .*RGB/palette"):
        check_mask(torch.tensor(mask), 3)


def test_check_mask_without_ignore_index_rejects_255_and_does_not_offer_it() -> None:
    message = r"\{255\} outside the 3 classes; expected 0..2\. "
    with pytest.raises(ValueError, match=message) as info:
        check_mask(torch.tensor([[0, 255]]), 3, ignore_index=None)
    assert "ignore" not in str(info.value)


def test_check_mask_lists_at_most_eight_bad_values_in_order() -> None:
    with pytest.raises(ValueError, match=r"\{2, 3, 4, 5, 6, 7, 8, 9\} outside"):
        check_mask(torch.arange(10), 2)  # eight bad values: all shown, no ellipsis
    with pytest.raises(ValueError, match=r"\{2, 3, 4, 5, 6, 7, 8, 9 \.\.\.\} outside"):
        check_mask(torch.arange(11), 2)  # nine: the first eight and "..."


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64, torch.bool])
def test_check_mask_rejects_float_complex_and_bool_masks(dtype) -> None:
    with pytest.raises(ValueError, match=rf"integer class indices \(dtype torch.long\), "
                                         rf"got {dtype}\..*call .long\(\)"):
        check_mask(torch.zeros(1, 2, 2, dtype=dtype), 3)


def test_check_mask_rejects_a_non_tensor_naming_its_type_and_the_argument() -> None:
    with pytest.raises(ValueError, match=r"^label must be a torch.Tensor .*got list\.$"):
        check_mask([[0, 1]], 3, name="label")


def test_check_mask_checks_a_single_pixel_mask_too() -> None:
    with pytest.raises(ValueError, match=r"\{5\}"):
        check_mask(torch.tensor([5]), 3)


# ---------------------------------------------------------------- check_logits_and_target


def test_check_logits_and_target_accepts_logits_or_integer_labels_of_the_target_size() -> None:
    target = torch.zeros(2, 5, 7, dtype=torch.long)
    check_logits_and_target(torch.zeros(2, 3, 5, 7), target)
    check_logits_and_target(torch.zeros(2, 5, 7, dtype=torch.long), target)
    check_logits_and_target(torch.zeros(2, 5, 7, dtype=torch.uint8), target)


@pytest.mark.parametrize("pred_shape, target_shape", [
    ((2, 3, 5, 7), (2, 5, 8)),   # spatial size
    ((2, 3, 5, 7), (1, 5, 7)),   # batch size
    ((2, 3, 5, 7), (2, 3, 5)),   # channels taken for the batch
])
def test_check_logits_and_target_rejects_a_target_of_another_size(pred_shape, target_shape):
    expected = (pred_shape[0], *pred_shape[-2:])
    with pytest.raises(ValueError, match=rf"target shape \({', '.join(map(str, target_shape))}\) "
                                         rf"does not match prediction shape .*expected target "
                                         rf"\({', '.join(map(str, expected))}\)"):
        check_logits_and_target(torch.zeros(pred_shape), torch.zeros(target_shape).long())


def test_check_logits_and_target_rejects_single_image_logits_suggesting_unsqueeze() -> None:
    with pytest.raises(ValueError, match=r"^prediction must be logits \(N, C, H, W\) or integer "
                                         r"labels \(N, H, W\), got shape \(3, 5, 7\) "
                                         r"\(torch.float32\).*unsqueeze\(0\)"):
        check_logits_and_target(torch.zeros(3, 5, 7), torch.zeros(3, 5, 7).long())


@pytest.mark.parametrize("shape", [(5, 7), (1, 1, 1, 5, 7)])
def test_check_logits_and_target_rejects_integer_predictions_of_other_ranks(shape) -> None:
    labels = torch.zeros(shape, dtype=torch.long)
    with pytest.raises(ValueError, match="must be logits"):
        check_logits_and_target(labels, labels.clone())


def test_check_logits_and_target_rejects_non_tensors_naming_which_one() -> None:
    t = torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"^scores must be a torch.Tensor, got list\.$"):
        check_logits_and_target([[0]], t, name="scores")
    with pytest.raises(ValueError, match=r"^target must be a torch.Tensor, got ndarray\.$"):
        check_logits_and_target(t, t.numpy())

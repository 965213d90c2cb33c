"""segedu.losses against independent references, and the known bugs of other libraries as cases.

References (none of them calls segedu.losses):
* cross-entropy: a NumPy log-softmax written here, and ``torch.nn.functional.cross_entropy``;
* Dice: a NumPy soft Dice written here from V-Net's formula, fed a one-hot target;
* focal: the same NumPy log-softmax with the focal factor; gamma = 0 against F.cross_entropy;
* OHEM: NumPy sort of per-pixel losses;
* Lovász-Softmax: the Lovász extension as a Choquet integral, ``int_0^1 Delta({m >= t}) dt``
  with ``Delta`` the Jaccard loss set function, integrated exactly between the breakpoints
  (a different formula from the sorted-gradient one in the module), and on 0/1 error vectors
  the set function itself (1 - IoU of hard predictions).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segedu.losses import (
    SegmentationLoss,
    check_loss_inputs,
    cross_entropy,
    dice_loss,
    focal_loss,
    lovasz_softmax,
    ohem_cross_entropy,
)

ALL = [cross_entropy, dice_loss, focal_loss, ohem_cross_entropy, lovasz_softmax]


def _case(seed=0, n=2, c=4, h=5, w=7, ignore_frac=0.2):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    target = torch.randint(0, c, (n, h, w), generator=g)
    target[torch.rand(n, h, w, generator=g) < ignore_frac] = 255
    return logits, target


def _np_log_softmax(logits):
    x = logits - logits.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def _np_true_class(a, target):
    """(N, H, W) entries of a (N, C, H, W) array at the target's class (target valid)."""
    return np.take_along_axis(a, target[:, None], axis=1)[:, 0]


# --- cross-entropy -------------------------------------------------------------------------

def test_cross_entropy_matches_numpy_and_torch_with_ignore_and_class_weights():
    logits, target = _case()
    weights = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64)
    t = target.numpy()
    valid = t != 255
    safe = np.where(valid, t, 0)
    nll = -_np_true_class(_np_log_softmax(logits.numpy()), safe)
    w = weights.numpy()[safe]
    expected = (nll * w)[valid].sum() / w[valid].sum()
    ours = cross_entropy(logits, target, class_weights=weights)
    assert ours.item() == pytest.approx(expected, rel=1e-12)
    torch.testing.assert_close(ours, F.cross_entropy(logits, target, weight=weights,
                                                     ignore_index=255))


@pytest.mark.parametrize("loss", ALL, ids=lambda f: f.__name__)
def test_a_batch_where_every_pixel_is_ignored_gives_zero_loss_and_zero_gradients(loss):
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.full((2, 4, 4), 255)
    value = loss(logits, target)
    assert value.item() == 0.0  # F.cross_entropy gives nan here; some Dice losses 0.5 or 1
    value.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("loss", ALL, ids=lambda f: f.__name__)
def test_ignored_pixels_change_neither_the_loss_nor_get_a_gradient(loss):
    logits, target = _case(seed=1)
    logits.requires_grad_(True)
    value = loss(logits, target)
    value.backward()
    ignored = (target == 255)[:, None].expand_as(logits)
    assert torch.all(logits.grad[ignored] == 0)
    # Whatever the logits say at ignored pixels, the loss is the same.
    other = logits.detach().clone()
    other[ignored] = 100 * torch.randn(int(ignored.sum()), dtype=other.dtype)
    torch.testing.assert_close(loss(other, target), value.detach())


# --- Dice ----------------------------------------------------------------------------------

def _np_dice_loss(logits, onehot, valid, smooth):
    """V-Net's soft Dice per class over the batch, from a one-hot target and a validity mask."""
    x = np.exp(_np_log_softmax(logits)) * valid[:, None]
    g = onehot * valid[:, None]
    inter = (x * g).sum(axis=(0, 2, 3))
    card = x.sum(axis=(0, 2, 3)) + g.sum(axis=(0, 2, 3))
    return 1 - ((2 * inter + smooth) / (card + smooth)).mean()


@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_dice_with_index_targets_equals_numpy_dice_with_one_hot_targets(smooth):
    logits, target = _case(seed=2)
    t = target.numpy()
    valid = t != 255
    onehot = np.stack([(t == c) for c in range(4)], axis=1).astype(np.float64)
    expected = _np_dice_loss(logits.numpy(), onehot, valid, smooth)
    assert dice_loss(logits, target, smooth=smooth).item() == pytest.approx(expected, rel=1e-12)


def test_dice_ignore_applies_to_numerator_and_denominator():
    # Two pixels, one ignored: the ignored pixel's probabilities must not enter sum(p).
    logits = torch.tensor([[[[4.0, -4.0]], [[-4.0, 4.0]]]])  # pixel 0 says class 0, pixel 1 class 1
    target = torch.tensor([[[0, 255]]])
    # Only pixel 0 counts; it is nearly right, so the loss is nearly 0 (with smooth = 0, both
    # classes: class 1 has neither true nor -- after ignoring -- much predicted mass).
    only_first = dice_loss(logits[..., :1], target[..., :1], smooth=1.0)
    torch.testing.assert_close(dice_loss(logits, target, smooth=1.0), only_first)


def test_dice_absent_classes_smooth_counts_them_skip_leaves_them_out():
    logits, _ = _case(seed=3)
    target = torch.zeros(2, 5, 7, dtype=torch.long)  # only class 0 present
    target[:, :2] = 1
    smooth, skip = dice_loss(logits, target), dice_loss(logits, target, absent="skip")
    p = logits.softmax(1)
    g = F.one_hot(target, 4).permute(0, 3, 1, 2).double()
    per_class = (2 * (p * g).sum((0, 2, 3)) + 1) / (p.sum((0, 2, 3)) + g.sum((0, 2, 3)) + 1)
    torch.testing.assert_close(smooth, 1 - per_class.mean())
    torch.testing.assert_close(skip, 1 - per_class[:2].mean())


def test_a_perfect_prediction_has_dice_loss_near_zero():
    target = torch.randint(0, 3, (1, 8, 8))
    logits = 50 * F.one_hot(target, 3).permute(0, 3, 1, 2).float()
    assert dice_loss(logits, target, smooth=0.0).item() < 1e-6


# --- focal ---------------------------------------------------------------------------------

def test_focal_with_gamma_zero_is_cross_entropy():
    logits, target = _case(seed=4)
    torch.testing.assert_close(focal_loss(logits, target, gamma=0.0),
                               F.cross_entropy(logits, target, ignore_index=255))


def test_focal_matches_numpy_softmax_focal_with_alpha():
    logits, target = _case(seed=5)
    alpha = [0.25, 1.0, 2.0, 0.5]
    t = target.numpy()
    valid = t != 255
    safe = np.where(valid, t, 0)
    log_p = _np_true_class(_np_log_softmax(logits.numpy()), safe)
    per_pixel = -np.asarray(alpha)[safe] * (1 - np.exp(log_p)) ** 2 * log_p
    expected = per_pixel[valid].mean()
    assert focal_loss(logits, target, gamma=2.0, alpha=alpha).item() == pytest.approx(
        expected, rel=1e-12)


def test_focal_is_softmax_not_per_class_sigmoid():
    # torchvision's sigmoid_focal_loss treats each class as its own binary problem; with
    # 3 classes that is a different number. Ours is the softmax form.
    from torchvision.ops import sigmoid_focal_loss

    logits, target = _case(seed=6, c=3, ignore_frac=0.0)
    onehot = F.one_hot(target, 3).permute(0, 3, 1, 2).double()
    sigmoid = sigmoid_focal_loss(logits, onehot, alpha=-1, gamma=2.0, reduction="sum")
    sigmoid = sigmoid / target.numel()
    ours = focal_loss(logits, target, gamma=2.0)
    assert abs(ours.item() - sigmoid.item()) > 1e-3
    # ... and the softmax form down-weights confident right pixels: gamma=2 < gamma=0.
    assert ours < focal_loss(logits, target, gamma=0.0)


# --- OHEM ----------------------------------------------------------------------------------

@pytest.mark.parametrize("threshold,min_kept", [(0.7, 5), (0.99, 5), (0.05, 20), (0.7, 10_000)])
def test_ohem_averages_the_hardest_pixels(threshold, min_kept):
    logits, target = _case(seed=7)
    t = target.numpy()
    valid = t != 255
    nll = -_np_true_class(_np_log_softmax(logits.numpy()), np.where(valid, t, 0))[valid]
    hard = int((np.exp(-nll) < threshold).sum())
    keep = min(max(hard, min_kept), nll.size)
    expected = np.sort(nll)[::-1][:keep].mean()
    ours = ohem_cross_entropy(logits, target, threshold=threshold, min_kept=min_kept)
    assert ours.item() == pytest.approx(expected, rel=1e-12)


# --- Lovász-Softmax ------------------------------------------------------------------------

def _jaccard_set_loss(errors_set, fg):
    """Delta_J(M) = |M| / |fg ∪ M| (Berman et al., Eq. 3 rewritten); 0 for the empty set."""
    union = np.logical_or(fg, errors_set).sum()
    return errors_set.sum() / union if union else 0.0


def _choquet_lovasz(m, fg):
    """Lovász extension as int_0^1 Delta({i: m_i >= t}) dt, exact on the breakpoints."""
    levels = np.unique(np.concatenate([[0.0], m]))
    total = 0.0
    for lo, hi in zip(levels[:-1], levels[1:], strict=True):
        total += (hi - lo) * _jaccard_set_loss(m >= hi, fg)
    return total


@pytest.mark.parametrize("seed", range(4))
def test_lovasz_softmax_equals_the_choquet_integral_of_the_jaccard_loss(seed):
    logits, target = _case(seed=10 + seed, n=1, c=3, h=3, w=4)
    t = target.numpy()
    valid = t != 255
    p = np.exp(_np_log_softmax(logits.numpy())).transpose(0, 2, 3, 1)[valid]  # (P, C)
    labels = t[valid]
    per_class = [_choquet_lovasz(np.abs((labels == c) - p[:, c]), labels == c)
                 for c in range(3) if (labels == c).any()]
    ours = lovasz_softmax(logits, target)
    assert ours.item() == pytest.approx(np.mean(per_class), rel=1e-10)


def test_lovasz_on_hard_predictions_is_one_minus_iou():
    target = torch.tensor([[[0, 0, 1, 1, 1, 0]]])
    pred = torch.tensor([[[0, 1, 1, 1, 0, 0]]])
    logits = 1e4 * F.one_hot(pred, 2).permute(0, 3, 1, 2).double()  # softmax = exact one-hot
    iou = [((pred == c) & (target == c)).sum() / ((pred == c) | (target == c)).sum()
           for c in range(2)]
    expected = 1 - torch.stack(iou).double().mean()
    torch.testing.assert_close(lovasz_softmax(logits, target), expected)


# --- the input convention ------------------------------------------------------------------

@pytest.mark.parametrize("loss", ALL, ids=lambda f: f.__name__)
def test_common_target_mistakes_are_clear_errors(loss):
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    with pytest.raises(ValueError, match="one-hot"):
        loss(logits, F.one_hot(target, 3).permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match="integer class indices"):
        loss(logits, target.float())
    with pytest.raises(ValueError, match="another size"):
        loss(logits, torch.randint(0, 3, (2, 8, 8)))
    with pytest.raises(ValueError, match="outside the 3 classes"):
        loss(logits, torch.full((2, 4, 4), 3))
    with pytest.raises(ValueError, match="ignore_index=255"):
        loss(logits, torch.full((2, 4, 4), 255), ignore_index=None)


def test_class_weights_of_the_wrong_length_are_refused():
    with pytest.raises(ValueError, match="2 class weights for 3 classes"):
        check_loss_inputs(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long),
                          class_weights=[1.0, 2.0])


# --- weighted sums -------------------------------------------------------------------------

def test_segmentation_loss_is_the_weighted_sum_plus_the_aux_term():
    logits, target = _case(seed=20)
    aux = torch.randn_like(logits)
    loss = SegmentationLoss({"ce": 1.0, "dice": 0.5, "focal": 2.0}, aux_weight=0.4,
                            options={"focal": {"gamma": 1.0}})
    value = loss({"out": logits, "aux": aux}, target)

    def part(x):
        return (cross_entropy(x, target) + 0.5 * dice_loss(x, target)
                + 2.0 * focal_loss(x, target, gamma=1.0))

    torch.testing.assert_close(value, part(logits) + 0.4 * part(aux))
    assert set(loss.last) == {"ce", "dice", "focal", "aux_ce", "aux_dice", "aux_focal"}
    assert SegmentationLoss("ce+dice").terms == {"ce": 1.0, "dice": 1.0}
    with pytest.raises(ValueError, match="unknown loss"):
        SegmentationLoss("cross_entropy")


# --- what mutation testing found missing ----------------------------------------------------

def test_half_precision_logits_are_scored_in_float32():
    logits, target = _case(seed=30)
    half = logits.to(torch.bfloat16)
    for loss in (dice_loss, focal_loss, lovasz_softmax):
        value = loss(half, target)
        assert value.dtype == torch.float32, loss.__name__
        torch.testing.assert_close(value, loss(half.float(), target), msg=loss.__name__)


def test_the_size_hint_says_how_to_fix_it():
    with pytest.raises(ValueError, match=r"The target is at another size than the logits: "
                                         r"upsample the logits with F\.interpolate\(\.\.\., "
                                         r"mode='bilinear'\) or resize the mask with nearest"):
        cross_entropy(torch.randn(1, 3, 4, 4), torch.zeros(1, 8, 8, dtype=torch.long))


def test_out_of_range_labels_are_listed_up_to_eight():
    target = torch.arange(3, 13).reshape(1, 2, 5)  # ten bad labels: 3 .. 12
    with pytest.raises(ValueError, match=r"\[3, 4, 5, 6, 7, 8, 9, 10\]") as info:
        cross_entropy(torch.randn(1, 3, 2, 5), target)
    assert "11" not in str(info.value)


def test_integer_logits_are_refused_even_when_four_dimensional():
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="logits"):
        cross_entropy(torch.zeros(1, 3, 4, 4, dtype=torch.long), target)


def test_focal_defaults_to_gamma_two():
    logits, target = _case(seed=31)
    torch.testing.assert_close(focal_loss(logits, target), focal_loss(logits, target, gamma=2.0))
    assert not torch.allclose(focal_loss(logits, target), focal_loss(logits, target, gamma=3.0))


def test_focal_alpha_keeps_the_logits_precision():
    logits, target = _case(seed=32, c=3)
    alpha = [0.1, 0.3, 0.6]  # not exact in float32
    exact = focal_loss(logits, target, alpha=torch.tensor(alpha, dtype=torch.float64))
    assert focal_loss(logits, target, alpha=alpha).item() == pytest.approx(exact.item(),
                                                                           rel=1e-14)


def test_lovasz_present_leaves_out_absent_classes_and_all_keeps_them():
    logits, target = _case(seed=33, n=1, c=4, h=4, w=4, ignore_frac=0.0)
    target[target == 0] = 1  # class 0 absent, and the first one the loop meets
    present, every = (lovasz_softmax(logits, target, classes=k) for k in ("present", "all"))
    t, p = target.numpy()[0].ravel(), np.exp(_np_log_softmax(logits.numpy()))[0]
    p = p.reshape(4, -1).T
    per_class = {c: _choquet_lovasz(np.abs((t == c) - p[:, c]), t == c) for c in range(4)}
    assert present.item() == pytest.approx(np.mean([per_class[c] for c in (1, 2, 3)]), rel=1e-10)
    assert every.item() == pytest.approx(np.mean(list(per_class.values())), rel=1e-10)
    with pytest.raises(ValueError, match="'present' or 'all'"):
        lovasz_softmax(logits, target, classes="ALL")


def test_segmentation_loss_defaults_and_class_weights():
    logits, target = _case(seed=34)
    aux = torch.randn_like(logits)
    torch.testing.assert_close(SegmentationLoss()({"out": logits, "aux": aux}, target),
                               cross_entropy(logits, target) + 0.4 * cross_entropy(aux, target))
    torch.testing.assert_close(SegmentationLoss()(logits, target), cross_entropy(logits, target))
    weights = [1.0, 2.0, 0.5, 3.0]
    torch.testing.assert_close(SegmentationLoss("ce", class_weights=weights)(logits, target),
                               cross_entropy(logits, target, class_weights=weights))
    torch.testing.assert_close(SegmentationLoss("focal", class_weights=weights)(logits, target),
                               focal_loss(logits, target, alpha=weights))

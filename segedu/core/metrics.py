"""Segmentation metrics, all read off one confusion matrix.

The confusion matrix
--------------------
For ``C`` classes, ``n[i, j]`` counts the pixels whose ground truth is class ``i`` and whose
prediction is class ``j`` (rows = ground truth, columns = prediction). The diagonal ``n[i, i]``
holds the correct pixels. Pixels labelled ``ignore_index`` (255 in VOC: object borders and
"void") are not counted at all. Every metric below is a few sums over this matrix, so we
accumulate the matrix over a whole validation set and compute the metrics once at the end;
averaging per-image scores instead would weight small images like large ones.

Notation (Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015, Sec. 5, where the first four metrics are defined):

* ``t_i = sum_j n[i, j]``  pixels of class ``i`` in the ground truth (row sum),
* ``p_i = sum_j n[j, i]``  pixels predicted as class ``i`` (column sum).

Metrics (FCN calls IoU "IU", intersection over union):

* pixel accuracy      ``sum_i n[i, i] / sum_i t_i``
* class accuracy      ``acc_i = n[i, i] / t_i``  (the recall of class ``i``)
* mean accuracy       ``mean_i acc_i``
* IoU                 ``iou_i = n[i, i] / (t_i + p_i - n[i, i])``  (intersection / union)
* mean IoU            ``mean_i iou_i``
* frequency-weighted  ``sum_i t_i * iou_i / sum_k t_k``  (IoU weighted by class frequency)
* Dice                ``dice_i = 2 n[i, i] / (t_i + p_i)``  (the F1 score of class ``i``)

A class with no pixels in the ground truth *and* none in the prediction has an undefined
IoU and Dice (0 / 0); a class with no ground-truth pixels has an undefined accuracy. These
are ``nan`` and the means skip them (``nanmean``), as FCN's reference evaluation code does:
the paper's formulas divide by ``n_cl``, the number of classes, which assumes every class
occurs in the evaluation set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .validation import check_logits_and_target, check_mask, check_num_classes

__all__ = ["ConfusionMatrix", "format_report", "boundary_f1", "boundary_band", "trimap_confusion",
           "trimap_miou"]


class ConfusionMatrix:
    """Accumulates a (C, C) confusion matrix over batches and computes the metrics from it.

    Example::

        cm = ConfusionMatrix(num_classes=21)
        with torch.no_grad():
            for images, targets in loader:
                cm.update(model(images)["out"], targets)
        print(format_report(cm.compute()))
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = 255,
        device: torch.device | str | None = None,
    ) -> None:
        self.num_classes = check_num_classes(num_classes)
        self.ignore_index = ignore_index
        # rows = ground-truth class, columns = predicted class
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred_or_logits: torch.Tensor, target: torch.Tensor) -> ConfusionMatrix:
        """Add one batch: logits (N, C, H, W) or labels (N, H, W), and a target (N, H, W).

        Pixels where ``target == ignore_index`` are skipped. Returns ``self``.
        """
        pred = pred_or_logits
        if isinstance(pred, torch.Tensor) and pred.dim() == 3 and pred.is_floating_point():
            raise ValueError(
                f"a 3-D prediction must hold integer labels (N, H, W), got {pred.dtype} with "
                f"shape {tuple(pred.shape)}. Logits must be (N, C, H, W): for a single image "
                "pass logits.unsqueeze(0) and target.unsqueeze(0)."
            )
        check_logits_and_target(pred, target)
        if target.dim() != 3:
            raise ValueError(
                f"target must be a batch of masks (N, H, W), got shape {tuple(target.shape)}. "
                "For a single image add a batch dimension with .unsqueeze(0)."
            )
        check_mask(target, self.num_classes, self.ignore_index)
        if pred.device != target.device:
            raise ValueError(
                f"prediction is on {pred.device} but target is on {target.device}; "
                "move them to the same device first."
            )
        pred = pred.detach()
        if pred.dim() == 4:
            if pred.shape[1] != self.num_classes:
                raise ValueError(
                    f"logits have {pred.shape[1]} channels but the confusion matrix has "
                    f"num_classes={self.num_classes}; expected (N, {self.num_classes}, H, W)."
                )
            pred = pred.argmax(dim=1)  # (N, C, H, W) scores -> (N, H, W) labels
        else:
            check_mask(pred, self.num_classes, ignore_index=None, name="prediction")

        t, p = target.flatten().long(), pred.flatten().long()  # long: t * C overflows uint8
        if self.ignore_index is not None:
            keep = t != self.ignore_index
            t, p = t[keep], p[keep]
        # pixel (t, p) lands in bin t * C + p, i.e. cell [t, p] of the flattened matrix
        counts = torch.bincount(t * self.num_classes + p, minlength=self.num_classes**2)
        if self.matrix.device != counts.device:
            self.matrix = self.matrix.to(counts.device)
        self.matrix += counts.reshape(self.num_classes, self.num_classes)
        return self

    def reset(self) -> None:
        """Set every count back to zero (e.g. before the next validation epoch)."""
        self.matrix.zero_()

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add the counts of ``other`` (from another loader or process) into ``self``."""
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(
                f"cannot merge a ConfusionMatrix with num_classes={other.num_classes}, "
                f"ignore_index={other.ignore_index} into one with "
                f"num_classes={self.num_classes}, ignore_index={self.ignore_index}."
            )
        self.matrix += other.matrix.to(self.matrix.device)
        return self

    def __add__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        result = ConfusionMatrix(self.num_classes, self.ignore_index, self.matrix.device)
        return result.merge(self).merge(other)

    def compute(self) -> dict[str, float | list[float]]:
        """All metrics as plain Python floats and lists (``nan`` where undefined)."""
        n = self.matrix.double().cpu()
        correct = n.diagonal()  # n[i, i]
        t = n.sum(dim=1)  # t_i: ground-truth pixels of class i
        p = n.sum(dim=0)  # p_i: pixels predicted as class i
        total = t.sum()
        # 0 / 0 = nan marks the undefined cases: a class with no pixels at all
        acc = correct / t
        iou = correct / (t + p - correct)
        dice = 2 * correct / (t + p)
        return {
            "pixel_acc": (correct.sum() / total).item(),
            "mean_acc": acc.nanmean().item(),
            "acc": acc.tolist(),
            "iou": iou.tolist(),
            "miou": iou.nanmean().item(),
            # classes absent from the ground truth have t_i = 0 and add nothing
            "fw_iou": ((t * iou).nansum() / total).item(),
            "dice": dice.tolist(),
            "mean_dice": dice.nanmean().item(),
        }

    def __repr__(self) -> str:
        return (
            f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
            f"pixels={int(self.matrix.sum())})"
        )


def format_report(results: dict, class_names: Sequence[str] | None = None) -> str:
    """A fixed-width table of per-class IoU and accuracy (in %) and a summary line.

    ``results`` is the dict from :meth:`ConfusionMatrix.compute`; undefined (nan) entries
    are shown as ``-``.
    """
    num_classes = len(results["iou"])
    if class_names is None:
        class_names = [str(i) for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(
            f"got {len(class_names)} class names for {num_classes} classes in the results."
        )

    def pct(x: float) -> str:
        return "-" if math.isnan(x) else f"{100 * x:.2f}"

    width = max(len("class"), *(len(name) for name in class_names))
    lines = [f"{'class':<{width}}  {'IoU %':>7}  {'Acc %':>7}"]
    for name, iou, acc in zip(class_names, results["iou"], results["acc"], strict=True):
        lines.append(f"{name:<{width}}  {pct(iou):>7}  {pct(acc):>7}")
    lines.append("-" * len(lines[0]))
    lines.append(
        f"pixel acc {pct(results['pixel_acc'])}  mean acc {pct(results['mean_acc'])}  "
        f"mIoU {pct(results['miou'])}"
    )
    return "\n".join(lines)


def _boundaries(labels: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool: pixels with a 4-neighbour of a different label."""
    edge = torch.zeros_like(labels, dtype=torch.bool)
    diff_v = labels[:, 1:, :] != labels[:, :-1, :]
    diff_h = labels[:, :, 1:] != labels[:, :, :-1]
    edge[:, 1:, :] |= diff_v
    edge[:, :-1, :] |= diff_v
    edge[:, :, 1:] |= diff_h
    edge[:, :, :-1] |= diff_h
    return edge


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Grow a (N, H, W) bool mask by ``radius`` pixels (a square neighbourhood)."""
    if radius == 0:
        return mask
    grown = torch.nn.functional.max_pool2d(mask[:, None].float(), 2 * radius + 1, stride=1,
                                           padding=radius)
    return grown[:, 0] > 0


def boundary_band(
    target: torch.Tensor, radius: int = 2, ignore_index: int | None = 255
) -> torch.Tensor:
    """(N, H, W) bool: labelled pixels within ``radius`` of a change of label in ``target``.

    Ignore pixels count as a label of their own (so VOC's 255 bands mark boundaries) but are
    never in the band themselves. Accuracy on this band measures how well edges are placed.
    """
    check_logits_and_target(target, target, name="target")
    band = _dilate(_boundaries(target.long()), radius)
    if ignore_index is not None:
        band &= target != ignore_index
    return band


def boundary_f1(
    pred_or_logits: torch.Tensor,
    target: torch.Tensor,
    tolerance: int = 2,
    ignore_index: int | None = 255,
) -> float:
    """Boundary F-score: how well predicted object boundaries match the true ones.

    A boundary pixel is one with a 4-neighbour of another label. Precision is the share of
    predicted boundary pixels within ``tolerance`` pixels of a true boundary, recall the share
    of true boundary pixels within ``tolerance`` of a predicted one, F1 their harmonic mean
    (Csurka et al., BMVC 2013; DeepLab v3+ reports it to show its decoder's sharper edges).
    Ignore pixels count as a label of their own for the true boundaries, and predicted
    boundaries that fall on them are not scored. Returns ``nan`` if neither has a boundary.
    """
    pred = pred_or_logits
    check_logits_and_target(pred, target)
    if pred.dim() == 4:
        pred = pred.argmax(dim=1)
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}.")
    pred, target = pred.detach().long(), target.long()
    true_edge, pred_edge = _boundaries(target), _boundaries(pred)
    if ignore_index is not None:
        ignored = target == ignore_index
        true_edge &= ~ignored
        pred_edge &= ~ignored
    near_true, near_pred = _dilate(true_edge, tolerance), _dilate(pred_edge, tolerance)
    n_pred, n_true = pred_edge.sum().item(), true_edge.sum().item()
    if n_pred == 0 and n_true == 0:
        return float("nan")
    precision = (pred_edge & near_true).sum().item() / n_pred if n_pred else 0.0
    recall = (true_edge & near_pred).sum().item() / n_true if n_true else 0.0
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def trimap_confusion(
    pred_or_logits: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    width: int,
    ignore_index: int | None = 255,
) -> ConfusionMatrix:
    """The confusion matrix counted only in the *trimap band*: labelled pixels within ``width``
    pixels (a square neighbourhood) of a change of label in ``target`` (:func:`boundary_band`).

    DeepLab v3+ (Chen et al., ECCV 2018, Sec. 4.3, Fig. 5), after Kohli et al. (IJCV 2009),
    measures segmentation accuracy near object boundaries this way: mIoU over a narrow band
    tells how well edges are placed, which the whole-image mIoU, dominated by object interiors,
    hides. Ignore pixels are never counted (they still mark a boundary, as VOC's 255 bands do).
    Merge the returned matrices over a validation set and call ``compute()`` once.
    """
    if int(width) != width or width < 0:
        raise ValueError(f"width must be a whole number of pixels >= 0, got {width}.")
    check_logits_and_target(pred_or_logits, target)  # (N, C, H, W) or (N, H, W) vs (N, H, W)
    band = boundary_band(target, radius=int(width), ignore_index=ignore_index)
    outside = 255 if ignore_index is None else ignore_index
    cm = ConfusionMatrix(num_classes, ignore_index=outside, device=target.device)
    return cm.update(pred_or_logits, target.masked_fill(~band, outside))


def trimap_miou(
    pred_or_logits: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    width: int,
    ignore_index: int | None = 255,
) -> float:
    """mIoU in the trimap band of ``width`` pixels around the true boundaries
    (:func:`trimap_confusion`); ``nan`` when the band is empty (no boundary at all)."""
    cm = trimap_confusion(pred_or_logits, target, num_classes, width, ignore_index)
    return cm.compute()["miou"]

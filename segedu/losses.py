"""Losses for segmentation (chapter 7), written from the formulas, with one input convention.

Read this next to the papers:

1. **Cross-entropy** with an ignore label and class weights — FCN (Long et al., 2015, Sec. 3)
   sums the per-pixel multinomial logistic loss; VOC marks borders 255 and they count for nothing.
2. **Dice** (Milletari et al., *V-Net*, 3DV 2016, Eq. 1; the soft multiclass form as in
   Sudre et al., 2017): ``1 - (2 sum p g + s) / (sum p + sum g + s)`` per class, averaged.
3. **Focal** (Lin et al., *Focal Loss for Dense Object Detection*, ICCV 2017, Eq. 5):
   ``-alpha_t (1 - p_t)^gamma log p_t``, here over a *softmax*; ``gamma = 0`` is cross-entropy.
4. **Online hard-example mining** (Shrivastava et al., CVPR 2016; the pixel form of Wu et al.,
   2016): average the loss over the hardest pixels only.
5. **Lovász-Softmax** (Berman, Triki, Blaschko, CVPR 2018, Eq. 9 and Alg. 1): a convex surrogate
   of the per-class Jaccard loss (1 - IoU), the Lovász extension of that set function.
6. :class:`SegmentationLoss`: a weighted sum of these, plus the auxiliary head's loss.

The input convention, checked by every function here (:func:`check_loss_inputs`):
``logits`` (N, C, H, W) float, raw scores before softmax; ``target`` (N, H, W) ``torch.long`` class
indices in ``[0, C)`` or ``ignore_index``. One-hot or float targets, a 255 without an
ignore index, a class index >= C and a target at another size are ``ValueError`` s that say what
to do.

Where we differ from common libraries, and why (each is a test in ``tests/test_losses.py``):

* A batch in which every pixel is ignored gives loss **0 with zero gradients**.
  ``F.cross_entropy(..., reduction="mean")`` returns ``nan`` there (0 / 0), and Dice losses that
  keep ignored pixels in the denominator, or that smooth only the numerator, give 0.5 or 1.
* ``ignore_index`` removes a pixel from the Dice numerator *and* denominator (both the predicted
  and the true sums); removing it from the target alone still counts its probabilities.
* Focal loss here is the softmax form (one distribution over C classes per pixel).
  ``torchvision.ops.sigmoid_focal_loss`` is the detection form: one independent sigmoid per
  class (one-vs-rest), which for C > 2 is a different loss with different gradients.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .core.validation import IGNORE_INDEX

__all__ = [
    "check_loss_inputs",
    "cross_entropy",
    "dice_loss",
    "focal_loss",
    "ohem_cross_entropy",
    "lovasz_softmax",
    "lovasz_grad",
    "LOSSES",
    "SegmentationLoss",
]


def check_loss_inputs(logits: torch.Tensor, target: torch.Tensor,
                      ignore_index: int | None = IGNORE_INDEX,
                      class_weights: torch.Tensor | Sequence[float] | None = None) -> None:
    """Check the convention: logits (N, C, H, W) float, target (N, H, W) long indices.

    Raises ``ValueError`` naming the common mistakes: a one-hot or float target, a target at
    another size than the logits, 255 in the target without ``ignore_index``, class indices
    that do not fit C, class weights of the wrong length.
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise ValueError("logits and target must be torch.Tensors.")
    if logits.dim() != 4 or not logits.is_floating_point():
        raise ValueError(f"logits must be float scores (N, C, H, W), got {logits.dtype} with "
                         f"shape {tuple(logits.shape)}; pass model(x)['out'], before softmax.")
    n, c, h, w = logits.shape
    if target.dim() == 4 and target.shape[1] == c:
        raise ValueError(
            f"target looks one-hot: shape {tuple(target.shape)}. The losses take class "
            "indices (N, H, W); use target.argmax(1) (and mark ignored pixels 255 first).")
    if target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(
            f"target must hold integer class indices (torch.long), got {target.dtype}. A mask "
            "is not an image: do not normalise it; load it as integers and call .long().")
    if tuple(target.shape) != (n, h, w):
        hint = (" The target is at another size than the logits: upsample the logits with "
                "F.interpolate(..., mode='bilinear') or resize the mask with nearest neighbour."
                if target.dim() == 3 and target.shape[0] == n else "")
        raise ValueError(f"target must have shape (N, H, W) = {(n, h, w)} to match logits "
                         f"{tuple(logits.shape)}, got {tuple(target.shape)}.{hint}")
    if class_weights is not None and len(class_weights) != c:
        raise ValueError(f"got {len(class_weights)} class weights for {c} classes.")
    if target.numel() == 0:
        return
    valid = (target >= 0) & (target < c)
    if ignore_index is not None:
        valid |= target == ignore_index
    if not bool(valid.all()):
        bad = torch.unique(target[~valid])[:8].tolist()
        if ignore_index is None and IGNORE_INDEX in bad:
            raise ValueError(f"target holds {IGNORE_INDEX} (the ignore label) but "
                             "ignore_index is None; pass ignore_index=255.")
        raise ValueError(f"target has values {bad} outside the {c} classes 0..{c - 1}"
                         + (f" (and {ignore_index} = ignore)" if ignore_index is not None else "")
                         + ". Is num_classes wrong, or is this an RGB/palette mask?")


def _valid(target: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    return torch.ones_like(target, dtype=torch.bool) if ignore_index is None \
        else target != ignore_index


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 (AMP) -> float32 for softmax sums; float64 stays float64."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _zero(logits: torch.Tensor) -> torch.Tensor:
    """A loss of 0 that is still connected to the graph (backward gives zero gradients)."""
    return logits.sum() * 0.0


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, *,
                  class_weights: torch.Tensor | None = None,
                  ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    """Pixel-wise cross-entropy, averaged over labelled pixels (weighted mean with weights).

    With ``class_weights`` w the mean is ``sum w[y] * ce / sum w[y]`` over labelled pixels, as in
    ``F.cross_entropy``; unlike it, a batch with no labelled pixel gives 0 (not ``nan``).
    """
    check_loss_inputs(logits, target, ignore_index, class_weights)
    valid = _valid(target, ignore_index)
    if not bool(valid.any()):
        return _zero(logits)
    if class_weights is not None:
        class_weights = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
    return F.cross_entropy(logits, target, weight=class_weights,
                           ignore_index=-100 if ignore_index is None else ignore_index)


def _one_hot(target: torch.Tensor, valid: torch.Tensor, num_classes: int,
             dtype: torch.dtype) -> torch.Tensor:
    """(N, C, H, W) one-hot of ``target``, all zeros at ignored pixels."""
    safe = torch.where(valid, target, torch.zeros_like(target))
    return F.one_hot(safe, num_classes).permute(0, 3, 1, 2).to(dtype) * valid[:, None]


def dice_loss(logits: torch.Tensor, target: torch.Tensor, *, smooth: float = 1.0,
              ignore_index: int | None = IGNORE_INDEX, absent: str = "smooth") -> torch.Tensor:
    """Soft multiclass Dice loss: ``1 - mean_c (2 sum p_c g_c + s) / (sum p_c + sum g_c + s)``.

    ``p = softmax(logits)``, ``g`` the one-hot target; sums run over every labelled pixel of the
    batch (the "batch Dice": one score per class per batch, steadier than per image). Ignored
    pixels are removed from ``p`` and ``g`` alike, so from numerator and denominator.

    ``smooth`` (s, default 1) keeps the ratio defined when a class has neither true nor
    predicted pixels (then its score is s / s = 1, nothing to learn) and softens the gradient
    for tiny objects; s = 0 gives the exact soft Dice. Classes **absent** from the batch's
    target: with ``absent="smooth"`` (default) they count, and their score s / (sum p_c + s)
    pushes their predicted probability down; ``absent="skip"`` averages only over classes
    present in the target (then a batch of pure background teaches nothing about objects).
    A batch with no labelled pixel gives 0 with zero gradients.
    """
    check_loss_inputs(logits, target, ignore_index)
    if absent not in ("smooth", "skip"):
        raise ValueError(f"absent must be 'smooth' or 'skip', got {absent!r}.")
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0, got {smooth}.")
    valid = _valid(target, ignore_index)
    if not bool(valid.any()):
        return _zero(logits)
    probs = _at_least_fp32(logits).softmax(1) * valid[:, None]  # (N, C, H, W), 0 if ignored
    onehot = _one_hot(target, valid, logits.shape[1], probs.dtype)
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)                    # (C,)
    cardinality = probs.sum(dims) + onehot.sum(dims)             # (C,)
    score = (2 * intersection + smooth) / (cardinality + smooth).clamp(min=1e-12)
    if absent == "skip":
        score = score[onehot.sum(dims) > 0]
    return 1 - score.mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, *, gamma: float = 2.0,
               alpha: torch.Tensor | Sequence[float] | None = None,
               ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    """Softmax focal loss ``-alpha[y] (1 - p_y)^gamma log p_y``, mean over labelled pixels.

    ``p_y`` is the softmax probability of the true class. ``gamma`` down-weights pixels that are
    already right (Lin et al. use 2); ``gamma = 0`` and no ``alpha`` is exactly cross-entropy.
    ``alpha`` is one weight per class. The mean divides by the number of labelled pixels, not by
    the sum of ``alpha`` (the paper normalises by the number of assigned anchors), so with
    ``alpha`` it differs from ``F.cross_entropy(weight=alpha)`` by that normaliser.
    """
    check_loss_inputs(logits, target, ignore_index, alpha)
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}.")
    valid = _valid(target, ignore_index)
    if not bool(valid.any()):
        return _zero(logits)
    safe = torch.where(valid, target, torch.zeros_like(target))
    log_p = _at_least_fp32(logits).log_softmax(1).gather(1, safe[:, None])[:, 0]   # (N, H, W)
    loss = -((1 - log_p.exp()) ** gamma) * log_p if gamma else -log_p
    if alpha is not None:
        alpha = torch.as_tensor(alpha, dtype=loss.dtype, device=loss.device)
        loss = loss * alpha[safe]
    return loss[valid].mean()


def ohem_cross_entropy(logits: torch.Tensor, target: torch.Tensor, *, threshold: float = 0.7,
                       min_kept: int = 256,
                       ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    """Cross-entropy averaged over the hard pixels only (online hard-example mining).

    A labelled pixel is hard when its true-class probability is below ``threshold``; at least
    ``min_kept`` pixels (the ones with the largest loss) are kept, so a batch that is already
    easy still gives a gradient. Mean over the kept pixels.
    """
    check_loss_inputs(logits, target, ignore_index)
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}.")
    valid = _valid(target, ignore_index)
    if not bool(valid.any()):
        return _zero(logits)
    safe = torch.where(valid, target, torch.zeros_like(target))
    ce = F.cross_entropy(_at_least_fp32(logits), safe, reduction="none")[valid]  # (P,)
    hard = int((ce > -torch.log(torch.tensor(threshold))).sum())
    keep = min(max(hard, min_kept), ce.numel())
    return ce.topk(keep, sorted=False).values.mean()


def lovasz_grad(fg_sorted: torch.Tensor) -> torch.Tensor:
    """Berman et al., Alg. 1: the Jaccard loss's increments along errors sorted in decreasing
    order, ``g_i = Delta(first i errors) - Delta(first i - 1)``."""
    gts = fg_sorted.sum()
    intersection = gts - fg_sorted.cumsum(0)
    union = gts + (1 - fg_sorted).cumsum(0)
    jaccard = 1 - intersection / union
    if fg_sorted.numel() > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def lovasz_softmax(logits: torch.Tensor, target: torch.Tensor, *, classes: str = "present",
                   ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    """Lovász-Softmax (Berman et al., 2018, Eq. 9): the Lovász extension of the Jaccard loss
    1 - IoU, evaluated at the errors ``m_i = |[y_i = c] - p_c(i)|`` of each class and averaged.

    ``classes="present"`` (the paper's choice) averages over classes in the target, ``"all"``
    over every class. Computed over the whole batch at once. Labelled pixels only; a batch with
    none gives 0.
    """
    check_loss_inputs(logits, target, ignore_index)
    if classes not in ("present", "all"):
        raise ValueError(f"classes must be 'present' or 'all', got {classes!r}.")
    valid = _valid(target, ignore_index)
    if not bool(valid.any()):
        return _zero(logits)
    probs = _at_least_fp32(logits).softmax(1).permute(0, 2, 3, 1)[valid]  # (P, C)
    labels = target[valid]
    losses = []
    for c in range(probs.shape[1]):
        fg = (labels == c).to(probs.dtype)
        if classes == "present" and not bool(fg.any()):
            continue
        errors = (fg - probs[:, c]).abs()
        errors_sorted, order = errors.sort(descending=True)
        losses.append(torch.dot(errors_sorted, lovasz_grad(fg[order])))
    return torch.stack(losses).mean() if losses else _zero(logits)


#: The losses by name, as :class:`SegmentationLoss` and ``segedu train --loss`` spell them.
LOSSES = {
    "ce": cross_entropy,
    "dice": dice_loss,
    "focal": focal_loss,
    "ohem": ohem_cross_entropy,
    "lovasz": lovasz_softmax,
}


class SegmentationLoss(nn.Module):
    """A weighted sum of the losses above, on ``outputs["out"]`` plus ``aux_weight`` times the
    same sum on ``outputs["aux"]`` (PSPNet's auxiliary head, weight 0.4).

    ``terms`` maps a name of :data:`LOSSES` to its weight, e.g. ``{"ce": 1.0, "dice": 1.0}``;
    ``options`` maps a name to its keyword arguments (``{"focal": {"gamma": 2.0}}``).
    ``class_weights`` go to cross-entropy (and are focal's ``alpha`` unless given).
    After each call ``self.last`` holds every term's value (detached tensors, for logging;
    no ``.item()`` here, so a GPU step does not wait for them).
    """

    def __init__(self, terms: Mapping[str, float] | str = "ce", *, aux_weight: float = 0.4,
                 ignore_index: int | None = IGNORE_INDEX,
                 class_weights: Sequence[float] | torch.Tensor | None = None,
                 options: Mapping[str, Mapping] | None = None) -> None:
        super().__init__()
        if isinstance(terms, str):  # "ce+dice" -> {"ce": 1, "dice": 1}
            terms = {name.strip(): 1.0 for name in terms.split("+")}
        unknown = sorted(set(terms) - set(LOSSES))
        if unknown or not terms:
            raise ValueError(f"unknown loss {unknown or terms}; choose from {sorted(LOSSES)}.")
        self.terms = dict(terms)
        self.aux_weight = aux_weight
        self.ignore_index = ignore_index
        self.options = {name: dict((options or {}).get(name, {})) for name in self.terms}
        if class_weights is not None:
            self.options.get("ce", {}).setdefault("class_weights", class_weights)
            self.options.get("focal", {}).setdefault("alpha", class_weights)
        self.last: dict[str, float] = {}

    def _sum(self, logits: torch.Tensor, target: torch.Tensor, prefix: str) -> torch.Tensor:
        total = 0.0
        for name, weight in self.terms.items():
            value = LOSSES[name](logits, target, ignore_index=self.ignore_index,
                                 **self.options[name])
            self.last[prefix + name] = value.detach()
            total = total + weight * value
        return total

    def forward(self, outputs: Mapping[str, torch.Tensor] | torch.Tensor,
                target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            outputs = {"out": outputs}
        self.last = {}
        loss = self._sum(outputs["out"], target, "")
        if "aux" in outputs and self.aux_weight:
            loss = loss + self.aux_weight * self._sum(outputs["aux"], target, "aux_")
        return loss

    def extra_repr(self) -> str:
        return f"terms={self.terms}, aux_weight={self.aux_weight}"

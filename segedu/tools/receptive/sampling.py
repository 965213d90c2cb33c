"""Where sparse kernels and pooling cells land (chapters 4 and 5).

The sampling pattern of stacked dilated convolutions and its holes, "gridding" (Wang et al.,
WACV 2018): :func:`dilated_sampling`, :func:`dilated_coverage`; the taps of DeepLab's ASPP
branches that still fall on the feature map (v3 Sec. 3.3, Fig. 4): :func:`aspp_taps`; the cells
of PSPNet's pyramid pooling levels (Sec. 3.2): :func:`ppm_cells`. Pure arithmetic on sizes and
rates, built on :mod:`segedu.core.sizes`; the widgets draw it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...core.sizes import (
    adaptive_pool_regions,
    atrous_taps_inside,
    effective_kernel_size,
    resnet_feature_size,
)

__all__ = [
    "sampling_profile",
    "dilated_sampling",
    "DilationCoverage",
    "dilated_coverage",
    "ASPPBranch",
    "aspp_taps",
    "aspp_valid_fraction",
    "ppm_cells",
]


# --------------------------------------------------------------------------------------------
# Stacked dilated convolutions: sampling pattern and gridding (Wang et al., WACV 2018)
# --------------------------------------------------------------------------------------------


def sampling_profile(rates: Sequence[int], kernel_size: int = 3) -> torch.Tensor:
    """One axis of :func:`dilated_sampling`: for each input pixel of the stack's field, how many
    paths lead to it from the centre output unit (int64, length = the field's size). An empty
    ``rates`` is the identity: one pixel, one path."""
    counts = torch.ones(1, dtype=torch.float64)
    for rate in rates:
        taps = torch.zeros(effective_kernel_size(kernel_size, rate), dtype=torch.float64)
        taps[::rate] = 1  # a dilated kernel: k ones, rate - 1 zeros between them
        counts = F.conv1d(counts.view(1, 1, -1), taps.view(1, 1, -1),
                          padding=len(taps) - 1).flatten()  # full convolution (taps symmetric)
    return counts.round().long()


def dilated_sampling(rates: Sequence[int], kernel_size: int = 3) -> torch.Tensor:
    """How many paths lead from the centre output unit to each input pixel through a stack of
    stride-1 ``kernel_size`` convolutions with dilation ``rates`` (first layer first).

    The pattern is the repeated convolution of the layers' sparse kernels (so the order of the
    rates does not matter); a zero is a pixel inside the field the unit never sees. Rates with a
    common factor (2, 2, 2) leave a regular grid of holes — "gridding" — which Wang et al.'s
    hybrid dilated convolution avoids with rates such as (1, 2, 5).

    Returns:
        an int64 (R, R) tensor, R = the stack's receptive field ``1 + sum(rate * (k - 1))``.
    """
    if len(rates) == 0:
        raise ValueError("rates must list at least one dilation rate.")
    line = sampling_profile(rates, kernel_size)
    return line[:, None] * line[None, :]


@dataclass(frozen=True)
class DilationCoverage:
    """How much of a dilated stack's field is seen: ``reached`` of ``total`` pixels (2-D);
    ``largest_gap`` is the largest distance between neighbouring seen pixels along an axis
    (Wang et al.'s M: 1 means no holes)."""

    size: int
    reached: int
    total: int
    largest_gap: int

    @property
    def fraction(self) -> float:
        return self.reached / self.total

    @property
    def holes(self) -> bool:
        return self.reached < self.total


def dilated_coverage(rates: Sequence[int], kernel_size: int = 3) -> DilationCoverage:
    """Summary of :func:`dilated_sampling`: (2, 2, 2) reaches 49 of 169 pixels, (1, 2, 5) all 289.

    >>> dilated_coverage([2, 2, 2]).fraction, dilated_coverage([1, 2, 5]).holes
    (0.28994082840236685, False)
    """
    if len(rates) == 0:
        raise ValueError("rates must list at least one dilation rate.")
    line = sampling_profile(rates, kernel_size) > 0
    seen = torch.nonzero(line).flatten()
    gap = int((seen[1:] - seen[:-1]).max()) if seen.numel() > 1 else 1
    return DilationCoverage(len(line), int(line.sum()) ** 2, len(line) ** 2, gap)


# --------------------------------------------------------------------------------------------
# ASPP taps and PPM cells (chapters 5 and 4)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ASPPBranch:
    """One atrous branch on a ``map_size`` map: its ``rate``, the ``span`` of its dilated kernel,
    the taps inside the map at the centre unit (per axis and 2-D), and ``valid_fraction``, the
    share of the kernel's weights that land inside the map, averaged over all positions
    (DeepLab v3, Fig. 4)."""

    rate: int
    span: int
    map_size: int
    taps_at_centre: int
    taps_at_centre_2d: int
    valid_fraction: float

    @property
    def degenerate(self) -> bool:
        """Only the centre tap sees the map at the centre unit: the branch acts as a 1x1 conv."""
        return self.taps_at_centre == 1


def aspp_taps(input_size: int, output_stride: int = 16, rates: Sequence[int] = (6, 12, 18),
              kernel_size: int = 3) -> list[ASPPBranch]:
    """Per ASPP branch, which of its taps see the feature map of an ``input_size`` image.

    DeepLab v3 (Sec. 3.3): as the rate approaches the map size, fewer of a 3x3 kernel's nine
    weights fall on real features; at rate >= map size only the centre one does. That is why
    v3 adds image-level pooling, and why the rates double at output stride 8.
    """
    size = resnet_feature_size(input_size, output_stride)
    branches = []
    for rate in rates:
        at_centre = atrous_taps_inside(size, rate, kernel_size)
        branches.append(ASPPBranch(int(rate), effective_kernel_size(kernel_size, rate), size,
                                   at_centre, at_centre ** 2,
                                   aspp_valid_fraction(size, rate, kernel_size)))
    return branches


def aspp_valid_fraction(map_size: int, rate: int, kernel_size: int = 3) -> float:
    """The share of a square atrous kernel's weights that land on a ``map_size`` map rather than
    its zero padding, averaged over every output position (DeepLab v3, Fig. 4: it falls towards
    1/9 as the rate approaches the map size)."""
    mean_1d = sum(atrous_taps_inside(map_size, rate, kernel_size, position=p)
                  for p in range(map_size)) / (map_size * kernel_size)
    return mean_1d ** 2


def ppm_cells(height: int, width: int, bins: int) -> list[tuple[int, int, int, int]]:
    """The ``bins x bins`` cells ``(top, bottom, left, right)`` (half-open) that a pyramid pooling
    level averages over an ``height x width`` map, row by row, as ``AdaptiveAvgPool2d(bins)``
    defines them (:func:`adaptive_pool_regions` on each axis; overlapping when bins do not
    divide the size)."""
    rows, cols = adaptive_pool_regions(height, bins), adaptive_pool_regions(width, bins)
    return [(t, b, l, r) for t, b in rows for l, r in cols]

"""Size arithmetic: how big is the map after this layer? (pure functions, used by every chapter)

Every chapter asks it. The answers are the formulas in PyTorch's ``nn.Conv2d`` /
``nn.ConvTranspose2d`` documentation, written out once here so a notebook can compute a size by
hand and check it against the module:

    conv / pool:     out = floor((n + 2p - d(k - 1) - 1) / s) + 1      (ceil with ceil_mode)
    transposed conv: out = (n - 1) s - 2p + d(k - 1) + output_padding + 1

and the few counts built on them that later chapters need: the extent of a dilated kernel and
how many of its taps land inside a map (DeepLab, chapter 5), the cells of adaptive pooling
(PSPNet, chapter 4), and the side of a (dilated) ResNet's last map. Receptive fields — which
input pixels a unit sees — are a tool built on top of these: :mod:`segedu.tools.receptive`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from torch import nn

__all__ = [
    "conv_output_size",
    "conv_transpose_output_size",
    "stack_output_size",
    "effective_kernel_size",
    "adaptive_pool_regions",
    "atrous_taps_inside",
    "resnet_feature_size",
]


def _check_size_args(size: int, kernel_size: int, stride: int, dilation: int) -> None:
    for name, value in (("size", size), ("kernel_size", kernel_size),
                        ("stride", stride), ("dilation", dilation)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def conv_output_size(
    size: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Output length of a convolution or pooling layer along one axis.

    ``floor((size + 2*padding - dilation*(kernel_size - 1) - 1) / stride) + 1``.
    With ``ceil_mode=True`` (pooling only) the division rounds up, but, as in PyTorch, the
    last window must start inside the input or the left padding.

    >>> conv_output_size(65, kernel_size=3, padding=12, dilation=12)   # an ASPP branch keeps size
    65

    Raises:
        ValueError: if the (dilated) kernel does not fit into the padded input.
    """
    _check_size_args(size, kernel_size, stride, dilation)
    span = dilation * (kernel_size - 1) + 1  # extent of the dilated kernel
    room = size + 2 * padding - span
    if ceil_mode:  # the last window may hang over the right edge, but must start inside
        out = math.ceil(room / stride) + 1
        if (out - 1) * stride >= size + padding:
            out -= 1
        if out >= 1:
            return out
    if room < 0:
        raise ValueError(
            f"a kernel spanning {span} pixels (kernel_size={kernel_size}, dilation={dilation}) "
            f"does not fit into an input of {size} pixels padded by {padding} on each side."
        )
    return room // stride + 1


def conv_transpose_output_size(
    size: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    output_padding: int = 0,
    dilation: int = 1,
) -> int:
    """Output length of a transposed convolution along one axis.

    ``(size - 1)*stride - 2*padding + dilation*(kernel_size - 1) + output_padding + 1``.
    FCN's upsampling layers use kernel 2s, stride s, padding s/2, which gives exactly
    ``size * s`` (kernel 4/stride 2/padding 1 doubles).
    """
    _check_size_args(size, kernel_size, stride, dilation)
    if not 0 <= output_padding < max(stride, dilation):
        raise ValueError(
            f"output_padding must be in [0, max(stride, dilation)) = [0, {max(stride, dilation)}), "
            f"got {output_padding}."
        )
    out = (size - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1
    if out < 1:
        raise ValueError(
            f"padding {padding} removes the whole output of a transposed convolution on "
            f"{size} pixels (kernel_size={kernel_size}, stride={stride})."
        )
    return out


def _pair_first(value: int | tuple[int, ...]) -> int:
    return value[0] if isinstance(value, tuple) else value


def stack_output_size(size: int, layers: Iterable[nn.Module]) -> int:
    """Push a length through a sequence of layers, using the formulas above.

    Handles ``Conv2d``, ``MaxPool2d``/``AvgPool2d`` and ``ConvTranspose2d`` (square
    parameters); layers that keep the size (activations, BatchNorm, Dropout) pass through.
    Anything else raises ``ValueError``, so a wrong answer is never silent.
    """
    passthrough = (nn.ReLU, nn.BatchNorm2d, nn.Dropout, nn.Dropout2d, nn.Identity)
    for layer in layers:
        if isinstance(layer, nn.ConvTranspose2d):
            size = conv_transpose_output_size(
                size, _pair_first(layer.kernel_size), _pair_first(layer.stride),
                _pair_first(layer.padding), _pair_first(layer.output_padding),
                _pair_first(layer.dilation))
        elif isinstance(layer, nn.Conv2d):
            size = conv_output_size(
                size, _pair_first(layer.kernel_size), _pair_first(layer.stride),
                _pair_first(layer.padding), _pair_first(layer.dilation))
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            stride = layer.stride if layer.stride is not None else layer.kernel_size
            dilation = getattr(layer, "dilation", 1)
            size = conv_output_size(
                size, _pair_first(layer.kernel_size), _pair_first(stride),
                _pair_first(layer.padding), _pair_first(dilation), ceil_mode=layer.ceil_mode)
        elif isinstance(layer, passthrough):
            continue
        else:
            raise ValueError(f"stack_output_size does not know how {type(layer).__name__} "
                             "changes the size.")
    return size


# --------------------------------------------------------------------------------------------
# Dilation, pooling bins and backbone strides (chapters 4 and 5)
# --------------------------------------------------------------------------------------------


def effective_kernel_size(kernel_size: int, dilation: int = 1) -> int:
    """Extent of a dilated kernel: ``dilation * (kernel_size - 1) + 1``.

    A 3x3 kernel at rate 12 spans 25 pixels but still has only 9 taps (DeepLab's "atrous"
    convolution: a larger field of view at the same cost).
    """
    _check_size_args(1, kernel_size, 1, dilation)
    return dilation * (kernel_size - 1) + 1


def adaptive_pool_regions(size: int, bins: int) -> list[tuple[int, int]]:
    """The input pixels ``[start, end)`` that each of ``bins`` adaptive-pooling cells averages.

    As PyTorch's ``AdaptiveAvgPool2d`` defines them (one axis): cell ``i`` covers
    ``start = floor(i * size / bins)`` to ``end = ceil((i + 1) * size / bins)``. When ``bins``
    does not divide ``size`` neighbouring cells overlap or differ in length; when ``bins > size``
    cells repeat pixels (a 6-bin over a 4-pixel map).

    >>> adaptive_pool_regions(7, 3)
    [(0, 3), (2, 5), (4, 7)]
    """
    _check_size_args(size, 1, 1, 1)
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}.")
    return [((i * size) // bins, -((-(i + 1) * size) // bins)) for i in range(bins)]


def atrous_taps_inside(size: int, dilation: int, kernel_size: int = 3,
                       position: int | None = None) -> int:
    """How many of a dilated kernel's taps land inside a map of ``size`` pixels (one axis).

    The kernel is centred at ``position`` (default: the centre pixel, ``(size - 1) // 2``);
    taps that fall into the zero padding see nothing. With ``dilation >= size`` only the
    centre tap of a 3x3 kernel remains, and the atrous branch degenerates into a 1x1 conv
    (DeepLab v3, Sec. 3.3). Square kernels: the 2-D count is this number squared.

    >>> atrous_taps_inside(33, 12), atrous_taps_inside(33, 24), atrous_taps_inside(9, 12)
    (3, 1, 1)
    """
    _check_size_args(size, kernel_size, 1, dilation)
    centre = (size - 1) // 2 if position is None else position
    if not 0 <= centre < size:
        raise ValueError(f"position must be inside the map [0, {size}), got {position}.")
    half = kernel_size // 2
    offsets = [dilation * (j - half) for j in range(kernel_size)]
    return sum(0 <= centre + o < size for o in offsets)


def resnet_feature_size(input_size: int, output_stride: int) -> int:
    """Side of a (dilated) ResNet's last feature map for an ``input_size`` image.

    The stem (7x7/2 conv, 3x3/2 max-pool) gives stride 4; each stride-2 3x3 conv that is not
    replaced by dilation halves again. 513 gives 33 at output stride 16 and 65 at 8 (DeepLab).
    """
    if output_stride not in (4, 8, 16, 32):
        raise ValueError(f"output_stride must be 4, 8, 16 or 32, got {output_stride}.")
    size = conv_output_size(input_size, 7, 2, 3)
    size = conv_output_size(size, 3, 2, 1)
    for _ in range(int(math.log2(output_stride // 4))):
        size = conv_output_size(size, 3, 2, 1)
    return size

"""Chapter 1 exercises (FCN): the functions students write in ``01_fcn.ipynb``.

Each exercise's reference is the implementation in :mod:`segedu.fcn` or
:mod:`segedu.tools.receptive`. Case inputs are built from seeded generators, so the student's
process and the grader's build the same tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ...core.sizes import conv_output_size, conv_transpose_output_size
from ...fcn import bilinear_kernel, fuse_skips, linear_to_conv, pad_to_multiple
from ..engine.exercise import Case, Exercise
from .cases import as_int, as_tensor, const, randn

__all__ = ["EXERCISES"]


# --------------------------------------------------------------------------- helpers


def _conv_summary(conv: Any) -> dict[str, Any]:
    """What makes a Conv2d: its geometry and its parameters."""
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"expected an nn.Conv2d, got {type(conv).__name__}")
    return {
        "kernel_size": tuple(conv.kernel_size),
        "stride": tuple(conv.stride),
        "padding": conv.padding if isinstance(conv.padding, str) else tuple(conv.padding),
        "dilation": tuple(conv.dilation),
        "weight": conv.weight,
        "bias": conv.bias,
    }


def _dense_map(conv: Any) -> torch.Tensor:
    """What the conv does on a 9x9 input: a *map* of the linear layer's outputs (Sec. 3.1)."""
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"expected an nn.Conv2d, got {type(conv).__name__}")
    return conv(randn(1, conv.in_channels, 9, 9, seed=99))


def _linear(in_channels: int, kernel_size: int, out_features: int, *, bias: bool = True,
            seed: int) -> Callable[[], tuple]:
    def make() -> tuple:
        linear = nn.Linear(in_channels * kernel_size * kernel_size, out_features, bias=bias)
        with torch.no_grad():
            linear.weight.copy_(randn(*linear.weight.shape, seed=seed))
            if bias:
                linear.bias.copy_(randn(out_features, seed=seed + 1))
        return linear, in_channels, kernel_size
    return make


def _upsampler(channels: int, factor: int, seed: int) -> nn.ConvTranspose2d:
    """ConvTranspose2d(kernel 2f, stride f, padding f/2) — exactly f times larger — with
    random weights, so that using the wrong upsampler for a skip changes the result."""
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2,
                            bias=False)
    with torch.no_grad():
        up.weight.copy_(randn(*up.weight.shape, seed=seed) / (2 * factor))
    return up


def _fcn_inputs(variant: str, batch: int, classes: int, h: int, w: int,
                seed: int) -> Callable[[], tuple]:
    """Inputs of ``fuse_skips`` for FCN-32s/16s/8s with a coarse (h, w) score map."""
    n_skips = {"32s": 0, "16s": 1, "8s": 2}[variant]

    def make() -> tuple:
        score = randn(batch, classes, h, w, seed=seed)
        skips = [randn(batch, classes, h * 2 ** (i + 1), w * 2 ** (i + 1), seed=seed + 1 + i)
                 for i in range(n_skips)]
        ups = [_upsampler(classes, 2, seed + 10 + i) for i in range(n_skips)]
        final = _upsampler(classes, 32 // 2 ** n_skips, seed + 20)
        return score, skips, ups, final
    return make




# --------------------------------------------------------------------------- exercises

LINEAR_TO_CONV = Exercise(
    id="ch01.linear_to_conv",
    function="linear_to_conv",
    reference=linear_to_conv,
    summary=_conv_summary,
    hint=(
        "Reshape the Linear's (out, C*k*k) weight to (out, C, k, k) and copy it (and the bias) "
        "into an nn.Conv2d(C, out, k).\n"
        "The Linear sees a flattened (C, k, k) window; flattening is row-major, so "
        "weight.reshape(out, C, k, k) puts every weight at the pixel it multiplies. Keep "
        "stride 1 and padding 0, create the conv with bias=False when the Linear has no bias, "
        "and copy under torch.no_grad() (or with .data)."
    ),
    cases=[
        Case("in 4, k 3, out 5", _linear(4, 3, 5, seed=1)),
        Case("in 8, k 7, out 16 (fc6 in miniature)", _linear(8, 7, 16, seed=2)),
        Case("in 3, k 1, out 2 (a 1x1 conv)", _linear(3, 1, 2, seed=3)),
        Case("dense map on a 9x9 input (in 4, k 3, out 5)", _linear(4, 3, 5, seed=4),
             points=2, summary=_dense_map),
        Case("in 16, k 7, out 32, Linear without bias", _linear(16, 7, 32, bias=False, seed=5),
             hidden=True),
        Case("dense map on a 9x9 input (in 6, k 5, out 3)", _linear(6, 5, 3, seed=6),
             hidden=True, summary=_dense_map),
    ],
)

CONV_OUTPUT_SIZE = Exercise(
    id="ch01.conv_output_size",
    function="conv_output_size",
    reference=conv_output_size,
    summary=as_int,
    hint=(
        "H_out = floor((H + 2p - d(k-1) - 1) / s) + 1.\n"
        "d(k-1)+1 is the extent of the dilated kernel; the padded input has H + 2p pixels; "
        "the first window fits, then one more for every s pixels of room left. Use integer "
        "division (//) and return an int."
    ),
    cases=[
        Case("size 224, k 3, p 1 (VGG conv keeps the size)", const(224, 3, 1, 1, 1)),
        Case("size 224, k 2, s 2 (max-pool halves)", const(224, 2, 2, 0, 1)),
        Case("size 127, k 3, s 2, p 1 (odd size)", const(127, 3, 2, 1, 1)),
        Case("size 127, k 7 (fc6 as a conv, no padding)", const(127, 7, 1, 0, 1)),
        Case("size 7, k 7 (fc6 on a 7x7 pool5 map)", const(7, 7, 1, 0, 1)),
        Case("size 1, k 1", const(1, 1, 1, 0, 1)),
        Case("size 100, k 3, s 2 (no padding)", const(100, 3, 2, 0, 1)),
        Case("size 65, k 3, p 2, dilation 2", const(65, 3, 1, 2, 2)),
        Case("size 33, k 3, p 6, dilation 6", const(33, 3, 1, 6, 6)),
        Case("size 513, k 3, s 2, p 1", const(513, 3, 2, 1, 1), hidden=True),
        Case("size 31, k 5, s 3, p 1, dilation 2", const(31, 5, 3, 1, 2), hidden=True),
    ],
)

CONV_TRANSPOSE_OUTPUT_SIZE = Exercise(
    id="ch01.conv_transpose_output_size",
    function="conv_transpose_output_size",
    reference=conv_transpose_output_size,
    summary=as_int,
    hint=(
        "H_out = (H - 1)s - 2p + d(k-1) + output_padding + 1.\n"
        "It is the convolution formula solved for the input size: the H input pixels are "
        "placed s apart, each spreads a dilated kernel of extent d(k-1)+1, and the padding p "
        "is removed from both sides. FCN's kernel 2f, stride f, padding f/2 gives exactly f*H."
    ),
    cases=[
        Case("size 7, k 4, s 2, p 1 (x2)", const(7, 4, 2, 1, 0, 1)),
        Case("size 3, k 16, s 8, p 4 (x8)", const(3, 16, 8, 4, 0, 1)),
        Case("size 1, k 64, s 32, p 16 (x32)", const(1, 64, 32, 16, 0, 1)),
        Case("size 127, k 4, s 2, p 1 (odd size)", const(127, 4, 2, 1, 0, 1)),
        Case("size 5, k 3, s 2, p 1", const(5, 3, 2, 1, 0, 1)),
        Case("size 5, k 3, s 2, p 1, output_padding 1", const(5, 3, 2, 1, 1, 1)),
        Case("size 10, k 3, dilation 2", const(10, 3, 1, 0, 0, 2)),
        Case("size 13, k 64, s 32, p 16", const(13, 64, 32, 16, 0, 1), hidden=True),
        Case("size 9, k 5, s 3, p 2, output_padding 1, dilation 2",
             const(9, 5, 3, 2, 1, 2), hidden=True),
    ],
)

BILINEAR_KERNEL = Exercise(
    id="ch01.bilinear_kernel",
    function="bilinear_kernel",
    reference=bilinear_kernel,
    summary=as_tensor,
    hint=(
        "With f = ceil(k/2), the 1-D filter is 1 - |i - c| / f for i = 0..k-1; the 2-D filter "
        "is the outer product.\n"
        "The centre c is f-1 for odd k and f-0.5 for even k. The result has the "
        "ConvTranspose2d weight layout (in_channels, out_channels, k, k), float32: the filter "
        "sits at [i, i] for every channel i (channel i is upsampled from channel i only) and "
        "every other (in, out) pair is zero."
    ),
    cases=[
        Case("k=2, 1 channel", const(1, 1, 2)),
        Case("k=3, 2 channels", const(2, 2, 3)),
        Case("k=4, 3 channels (x2 upsampling)", const(3, 3, 4)),
        Case("k=5, 1 channel", const(1, 1, 5)),
        Case("k=16, 21 channels (x8 upsampling, VOC)", const(21, 21, 16)),
        Case("k=4, 2 -> 3 channels (zeros off the diagonal)", const(2, 3, 4)),
        Case("k=64, 21 channels (x32 upsampling)", const(21, 21, 64), hidden=True),
        Case("k=7, 5 channels", const(5, 5, 7), hidden=True),
    ],
)

PAD_TO_MULTIPLE = Exercise(
    id="ch01.pad_to_multiple",
    function="pad_to_multiple",
    reference=pad_to_multiple,
    summary=as_tensor,
    hint=(
        "Pad H by (-H) % m rows at the bottom and W by (-W) % m columns at the right, with "
        "zeros.\n"
        "F.pad takes the padding of the last dimension first: (left, right, top, bottom). "
        "Do not pad the top or left (that would shift the image against its labels), and "
        "return x as it is when H and W are already multiples."
    ),
    cases=[
        Case("64x64, multiple 32 (nothing to pad)", lambda: (randn(1, 3, 64, 64, seed=11), 32)),
        Case("127x127, multiple 32", lambda: (randn(1, 3, 127, 127, seed=12), 32)),
        Case("100x151, multiple 32, batch 2", lambda: (randn(2, 3, 100, 151, seed=13), 32)),
        Case("1x1, multiple 32", lambda: (randn(1, 3, 1, 1, seed=14), 32)),
        Case("33x65, multiple 32", lambda: (randn(1, 1, 33, 65, seed=15), 32)),
        Case("30x17, multiple 8", lambda: (randn(1, 4, 30, 17, seed=16), 8)),
        Case("95x129, multiple 16", lambda: (randn(1, 3, 95, 129, seed=17), 16), hidden=True),
        Case("40x41, multiple 8, batch 2", lambda: (randn(2, 5, 40, 41, seed=18), 8),
             hidden=True),
    ],
)

FUSE_SKIPS = Exercise(
    id="ch01.fuse_skips",
    function="fuse_skips",
    reference=fuse_skips,
    summary=as_tensor,
    hint=(
        "For each (skip, up) pair in order: score = up(score) + skip; then return "
        "final_upsampler(score).\n"
        "Fig. 3 of the paper: the coarse scores are upsampled 2x and summed with the scores "
        "from the next finer pool (pool4, then pool3); skips[i] goes with upsamplers[i]. "
        "FCN-32s has no skips and only applies the final upsampler."
    ),
    cases=[
        Case("FCN-32s: no skips, 2x2 -> 64x64", _fcn_inputs("32s", 1, 3, 2, 2, seed=30)),
        Case("FCN-16s: one skip, 3x5 -> 96x160", _fcn_inputs("16s", 1, 3, 3, 5, seed=40)),
        Case("FCN-8s: two skips, 3x5 -> 96x160", _fcn_inputs("8s", 1, 3, 3, 5, seed=50),
             points=2),
        Case("FCN-8s: batch 2, 5 classes, 4x4", _fcn_inputs("8s", 2, 5, 4, 4, seed=60),
             points=2),
        Case("FCN-16s: batch 2, 4 classes, 5x3", _fcn_inputs("16s", 2, 4, 5, 3, seed=70),
             hidden=True),
        Case("FCN-8s: 21 classes, 1x1", _fcn_inputs("8s", 1, 21, 1, 1, seed=80), points=2,
             hidden=True),
    ],
)

EXERCISES = [
    LINEAR_TO_CONV,
    CONV_OUTPUT_SIZE,
    CONV_TRANSPOSE_OUTPUT_SIZE,
    BILINEAR_KERNEL,
    PAD_TO_MULTIPLE,
    FUSE_SKIPS,
]

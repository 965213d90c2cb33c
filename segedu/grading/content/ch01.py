"""Chapter 1 exercises (FCN): the functions students write in ``01_fcn.ipynb``.

Each exercise's reference is the implementation in :mod:`segedu.fcn` or
:mod:`segedu.core.sizes`. Case inputs are built from seeded generators, so the student's
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
from .cases import as_int, as_tensor, const, every_failure, randn

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



def _kernel_aspects(value: Any) -> dict[str, Any]:
    """Summary of a bilinear kernel, aspect by aspect, so that every wrong one is named: its
    dtype, its shape, the filters on the channel diagonal and what lies off it."""
    kernel = as_tensor(value)
    aspects: dict[str, Any] = {"dtype": str(kernel.dtype), "shape": tuple(kernel.shape)}
    if kernel.dim() == 4:
        n = min(kernel.shape[0], kernel.shape[1])
        diagonal = torch.arange(n)
        off = torch.ones(kernel.shape[:2], dtype=torch.bool)
        off[diagonal, diagonal] = False
        aspects["the filters on the channel diagonal"] = kernel[diagonal, diagonal].float()
        rest = kernel[off]
        aspects["the largest |value| off the channel diagonal"] = (
            float(rest.abs().max()) if rest.numel() else 0.0)
    return aspects


def choose_upsampler(factor: int) -> tuple[int, int, int]:
    """A reference answer of the open-ended exercise: (kernel, stride, padding) of a
    transposed conv that is exactly ``factor`` times larger and, with bilinear weights,
    interpolates linearly (kernel 2f for even f, 2f - 1 for odd f)."""
    kernel = 2 * factor - factor % 2
    return kernel, factor, (kernel - factor) // 2


def _upsampler_outcome(factor: int) -> Callable[[Any], dict[str, bool]]:
    """Summary of ``choose_upsampler(factor)``: what the chosen layer *does*, measured."""
    def summary(choice: Any) -> dict[str, bool]:
        if not isinstance(choice, (tuple, list)) or len(choice) != 3 or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in choice):
            raise TypeError(f"expected a (kernel_size, stride, padding) tuple of ints, got "
                            f"{choice!r}")
        k, s, p = choice
        if k < 1 or s < 1 or p < 0 or p >= k:
            return {"exactly factor times larger for sizes 1..12": False,
                    "a constant map stays constant inside": False,
                    "a ramp stays a ramp inside (no checkerboard)": False}
        up = nn.ConvTranspose2d(1, 1, k, stride=s, padding=p, bias=False)
        with torch.no_grad():
            up.weight.copy_(bilinear_kernel(1, 1, k))
        sizes_ok = all(conv_transpose_output_size(n, k, s, p) == factor * n
                       for n in range(1, 13))
        n = 8
        ramp = torch.arange(n, dtype=torch.float32).expand(1, 1, n, n)
        flat, tilted = up(torch.ones(1, 1, n, n))[0, 0], up(ramp)[0, 0]
        inner = slice(2 * factor, max(2 * factor, tilted.shape[-1] - 2 * factor))
        flat, tilted = flat[inner, inner], tilted[inner, inner]
        second = tilted[:, 2:] - 2 * tilted[:, 1:-1] + tilted[:, :-2]
        return {
            "exactly factor times larger for sizes 1..12": sizes_ok,
            "a constant map stays constant inside": bool(
                flat.numel() > 0 and torch.allclose(flat, flat.mean().expand_as(flat),
                                                    atol=1e-5)),
            "a ramp stays a ramp inside (no checkerboard)": bool(
                second.numel() > 0 and second.abs().max() < 1e-4),
        }
    return summary


# --------------------------------------------------------------------------- exercises

LINEAR_TO_CONV = Exercise(
    id="ch01.linear_to_conv",
    function="linear_to_conv",
    reference=linear_to_conv,
    summary=_conv_summary,
    task=(
        "Return the nn.Conv2d that computes, on every k x k window of a larger map, what the "
        "Linear computes on one flattened window: this is what lets FCN take any input size "
        "and return a map of predictions (Sec. 3.1)."
    ),
    hint=(
        "A fully connected layer that sees a whole C x k x k window is a convolution whose "
        "kernel covers that window (Sec. 3.1). The conv must hold the same numbers, each at "
        "the pixel it multiplies, and nothing else may change what it computes."
    ),
    hints=(
        "Which quantity goes wrong: the weight's layout (flattening a (C, k, k) window is "
        "row-major; a transpose or permute moves weights to the wrong pixels), the bias "
        "(missing, or present when the Linear has none), or the geometry (a stride or padding "
        "other than the defaults changes what the conv computes). Copy the values without "
        "recording gradients.",
        "Worked example: nn.Linear(4 * 3 * 3, 5) has a (5, 36) weight and a (5,) bias. As a "
        "conv: weight (5, 4, 3, 3), bias (5,), kernel 3, stride 1, padding 0. On a "
        "(1, 4, 3, 3) input it returns the Linear's 5 outputs as (1, 5, 1, 1); on a "
        "(1, 4, 9, 9) input, a (1, 5, 7, 7) map.",
    ),
    answer_fragments=("weight.reshape(", "reshape(linear.out_features, in_channels",
                      "conv.weight.copy_("),
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
    task=(
        "Return how many positions a window of kernel_size taps (spread dilation apart) takes "
        "along an axis of `size` pixels padded by `padding` on each side, moving `stride` "
        "pixels at a time: every map size in FCN follows from it."
    ),
    hint=(
        "Count windows, not pixels: the first window needs as many pixels as its taps span, "
        "and every further window needs `stride` more. Padding adds pixels on both sides; "
        "dilation spreads the taps apart, so it changes how far one window reaches."
    ),
    hints=(
        "Which quantity goes wrong: the span of a dilated kernel (k taps with gaps of "
        "dilation - 1 between them: count the gaps, not the taps), the padding (it is added "
        "on both sides), or the rounding (a window that does not fit is dropped: round down "
        "and return an int, not a float).",
        "Worked example: 224 with k 3, p 1 stays 224; 224 with k 2, s 2 gives 112; 127 with "
        "k 3, s 2, p 1 gives 64; 65 with k 3, p 2, dilation 2 stays 65; 7 with k 7 gives 1.",
    ),
    answer_fragments=("dilation * (kernel_size - 1) + 1", "room // stride + 1",
                      "size + 2 * padding - span"),
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
    task=(
        "Return the output length of a transposed convolution (FCN's learnable upsampling, "
        "Sec. 3.3): it is how FCN's upsamplers bring a coarse score map back to the input's "
        "size, exactly."
    ),
    hint=(
        "A transposed convolution undoes the size arithmetic of a convolution: the input "
        "pixels are placed `stride` apart, each scatters a (dilated) kernel around its place, "
        "the padding is cut off the result, and output_padding adds back a few pixels on one "
        "side."
    ),
    hints=(
        "Which quantity goes wrong: the placement (n pixels placed s apart span fewer than "
        "n * s pixels: the first needs no stride), the reach of a dilated kernel (count the "
        "gaps between taps), the padding (cut from both ends) or output_padding (added once).",
        "Worked example: 7 with k 4, s 2, p 1 gives 14; 1 with k 64, s 32, p 16 gives 32; "
        "5 with k 3, s 2, p 1 gives 9, and 10 with output_padding 1; 10 with k 3, dilation 2 "
        "gives 14.",
    ),
    answer_fragments=("(size - 1) * stride", "placed + reach - 2 * padding",
                      "- 2 * padding + dilation * (kernel_size - 1)"),
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
    summary=_kernel_aspects,
    task=(
        "Return the ConvTranspose2d weight that makes the layer upsample by bilinear "
        "interpolation: FCN starts its upsamplers from it (Sec. 3.3), so a coarse score map "
        "becomes a smooth full-size one."
    ),
    hint=(
        "Bilinear interpolation as a kernel is a tent: largest at the kernel's centre, "
        "falling linearly to the edges, the same in both directions. Where is the centre of "
        "a kernel with an even number of taps? And which (input, output) channel pairs should "
        "carry the tent in a layer that upsamples each class separately?"
    ),
    hints=(
        "Which quantity goes wrong: the centre (for an even kernel it lies between two "
        "pixels), the slope (the tent reaches zero one step beyond the kernel's end, not at "
        "it), the channel pairs (only channel i from channel i; every other pair stays zero), "
        "the dtype (float32, like every weight) or the layout ((in, out, k, k) for a "
        "transposed conv).",
        "Worked example: k = 4: f = 2, centre 1.5, 1-D tent [0.25, 0.75, 0.75, 0.25], 2-D "
        "corner 0.0625 and centre 0.5625. k = 3: f = 2, centre 1, tent [0.5, 1, 0.5]. "
        "In general f = ceil(k / 2), centre f - 1 (odd k) or f - 0.5 (even k), "
        "tent 1 - |i - centre| / f.",
    ),
    judge=every_failure,
    answer_fragments=("factor - 0.5", "1 - (og - center).abs() / factor",
                      "math.ceil(kernel_size / 2)", "weight[i, i] = filt",
                      "(i - center).abs() / f", "f - 0.5"),
    cases=[
        Case("k=2, 1 channel", const(1, 1, 2)),
        Case("k=3, 2 channels", const(2, 2, 3)),
        Case("k=4, 3 channels (x2 upsampling)", const(3, 3, 4)),
        Case("k=5, 1 channel", const(1, 1, 5)),
        Case("k=16, 21 channels (x8 upsampling, VOC)", const(21, 21, 16)),
        Case("k=4, 2 -> 3 channels (zeros off the diagonal)", const(2, 3, 4)),
        Case("k=64, 21 channels (x32 upsampling)", const(21, 21, 64), hidden=True),
        Case("k=7, 5 channels", const(5, 5, 7), hidden=True),
        Case("k=6, 4 -> 2 channels", const(4, 2, 6), hidden=True),
    ],
)

PAD_TO_MULTIPLE = Exercise(
    id="ch01.pad_to_multiple",
    function="pad_to_multiple",
    reference=pad_to_multiple,
    summary=as_tensor,
    task=(
        "Return x zero-padded so that its height and width become multiples of `multiple` "
        "without moving the image: then every pool halves exactly and the upsampled "
        "prediction lines up with the labels."
    ),
    hint=(
        "The padding needed is the smallest number of rows (and of columns) that makes the "
        "size a multiple, possibly none. Where you add them matters as much as how many: "
        "pixels added before the image shift it against its labels."
    ),
    hints=(
        "Which quantity goes wrong: the amount (a size that is already a multiple needs 0, "
        "not a whole extra multiple), the side (bottom and right only), or the order of "
        "F.pad's arguments (the last dimension, the width, comes first).",
        "Worked example: a (2, 3, 100, 151) batch with multiple 32 gets 28 rows and 9 "
        "columns and becomes (2, 3, 128, 160); 64 x 64 needs nothing and is returned as it is; "
        "30 x 17 with multiple 8 becomes 32 x 24.",
    ),
    answer_fragments=("-h % multiple", "F.pad(x, (0, pad_w, 0, pad_h))"),
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
    task=(
        "Return the full-resolution scores of FCN-32s, 16s or 8s from the coarse scores and "
        "the skip scores: combining 'what' (coarse, deep) with 'where' (fine, shallow) is "
        "Sec. 4.2's fix for FCN-32s's blobs."
    ),
    hint=(
        "Fig. 3: the network refines one stride at a time. At each step the running coarse "
        "map is brought to the next finer resolution and combined with that resolution's "
        "scores; only at the end is it brought to the input's size. How does FCN combine two "
        "score maps of the same size and class count?"
    ),
    hints=(
        "Which quantity goes wrong: what is upsampled (the running coarse map, never the "
        "skip), how the maps are combined (the channel count must stay the number of classes), "
        "which upsampler goes with which skip (the i-th with the i-th), the order of the skips "
        "(coarse to fine), or forgetting the final upsampler.",
        "Worked example (21 classes, a 128 x 160 input): fc7's scores (1, 21, 4, 5); one 2x "
        "step gives (1, 21, 8, 10), combined with pool4's scores (1, 21, 8, 10); another gives "
        "(1, 21, 16, 20), combined with pool3's; the 8x final upsampler returns "
        "(1, 21, 128, 160).",
    ),
    answer_fragments=("score = up(score) + skip", "up(score) + skip",
                      "return final_upsampler(score)"),
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

CHOOSE_UPSAMPLER = Exercise(
    id="ch01.choose_upsampler",
    function="choose_upsampler",
    reference=choose_upsampler,
    judge=every_failure,
    time_limit_s=2.0,
    task=(
        "Open-ended: choose (kernel_size, stride, padding) for a transposed convolution that "
        "enlarges every map by exactly `factor` and, started from your bilinear_kernel, "
        "interpolates smoothly; the grader measures what your layer does."
    ),
    hint=(
        "The size has to come out right for every input size, not just one; and the weights "
        "are a tent that must overlap its neighbours so that their sum is flat. Try small "
        "factors by hand with your conv_transpose_output_size and your bilinear_kernel."
    ),
    hints=(
        "Which quantity goes wrong: the padding (it is what trims the extra pixels), or the "
        "kernel size for an odd factor (a tent of an even size has its centre between two "
        "pixels; an odd factor needs its centre on one).",
        "Worked example: factor 2 works with kernel 4, stride 2, padding 1 (FCN's 2x "
        "upsampler); factor 3 needs an odd kernel. Measured: sizes 1..12 must come out 3, 6, "
        "9, ...; a map of ones must stay flat and a ramp straight away from the border.",
    ),
    answer_fragments=("2 * factor - factor % 2",),
    cases=[
        Case("factor 2", const(2), summary=_upsampler_outcome(2)),
        Case("factor 4", const(4), summary=_upsampler_outcome(4)),
        Case("factor 3 (odd)", const(3), points=2, summary=_upsampler_outcome(3)),
        Case("factor 8 (FCN-8s)", const(8), summary=_upsampler_outcome(8)),
        Case("factor 5 (odd)", const(5), hidden=True, points=2, summary=_upsampler_outcome(5)),
        Case("factor 16 (FCN-16s)", const(16), hidden=True, summary=_upsampler_outcome(16)),
    ],
)

EXERCISES = [
    LINEAR_TO_CONV,
    CONV_OUTPUT_SIZE,
    CONV_TRANSPOSE_OUTPUT_SIZE,
    BILINEAR_KERNEL,
    PAD_TO_MULTIPLE,
    FUSE_SKIPS,
    CHOOSE_UPSAMPLER,
]

"""Chapter 5 exercises (DeepLab): the functions students write in ``05_deeplab.ipynb``.

Each exercise's reference is the implementation in :mod:`segedu.deeplab` or
:mod:`segedu.tools.receptive`. Case inputs are built from seeded generators, so the student's
process and the grader's build the same tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ...core.sizes import atrous_taps_inside
from ...deeplab import ASPP, dilate_kernel, image_pooling
from ..engine.exercise import Case, Exercise
from .cases import as_int, as_tensor, const, module_summary, randn, state_shapes

__all__ = ["EXERCISES"]

# --------------------------------------------------------------------------- helpers


def _weight(*shape: int, seed: int) -> Callable[[], tuple]:
    return lambda: (randn(*shape, seed=seed),)


def _kernel(shape: tuple[int, ...], rate: int, seed: int) -> Callable[[], tuple]:
    return lambda: (randn(*shape, seed=seed), rate)


def _seeded_state(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Seeded values for every state_dict entry: weights ~ N(0, 1/fan_in), BN statistics sane."""
    state = {}
    for i, (key, shape) in enumerate(sorted(shapes.items())):
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith("running_var"):
            state[key] = randn(*shape, seed=seed + i).abs() + 0.5
        elif key.endswith(("running_mean", "bias")):
            state[key] = 0.1 * randn(*shape, seed=seed + i)
        elif key.endswith("weight") and len(shape) == 1:          # BN scale
            state[key] = 1 + 0.1 * randn(*shape, seed=seed + i)
        else:
            fan_in = max(1, int(torch.Size(shape[1:]).numel()))
            state[key] = randn(*shape, seed=seed + i) / fan_in ** 0.5
    return state


def _pooling_inputs(batch: int, in_channels: int, out_channels: int, size: tuple[int, int],
                    *, training: bool, seed: int) -> Callable[[], tuple]:
    """(x, conv, bn): a seeded map, a 1x1 conv without bias and a BatchNorm (eval or train)."""
    def make() -> tuple:
        conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        bn = nn.BatchNorm2d(out_channels)
        conv.load_state_dict(_seeded_state({"weight": tuple(conv.weight.shape)}, seed))
        bn.load_state_dict(_seeded_state({k: tuple(v.shape) for k, v in bn.state_dict().items()},
                                         seed + 10))
        bn.train(training)
        return randn(batch, in_channels, *size, seed=seed + 20), conv, bn
    return make


_ASPP_PARTS = ("keep the branches in an nn.ModuleList named self.convs and the projection "
               "in self.project")


def _aspp_structure(in_channels: int, out_channels: int,
                    rates: Sequence[int]) -> Callable[[Any], Any]:
    """Summary: the state_dict's names and shapes."""
    return module_summary(ASPP, (in_channels, out_channels, tuple(rates)), _ASPP_PARTS)


def _aspp_forward(in_channels: int, out_channels: int, rates: Sequence[int],
                  size: tuple[int, int], batch: int, seed: int) -> Callable[[Any], Any]:
    """Summary: load seeded weights by name, run the module in eval mode on a seeded map."""
    def run(module: nn.Module) -> torch.Tensor:
        module.load_state_dict(_seeded_state(state_shapes(module), seed))
        module.eval()
        x = randn(batch, in_channels, *size, seed=seed + 100)
        return as_tensor(module(x), returned_by="forward(x)")
    return module_summary(ASPP, (in_channels, out_channels, tuple(rates)), _ASPP_PARTS, run)


# --------------------------------------------------------------------------- exercises

DILATE_KERNEL = Exercise(
    id="ch05.dilate_kernel",
    function="dilate_kernel",
    reference=dilate_kernel,
    summary=as_tensor,
    hint=(
        "Make zeros of shape (out, in, rate*(kH-1)+1, rate*(kW-1)+1) and put the weights at "
        "every rate-th position: sparse[..., ::rate, ::rate] = weight.\n"
        "A dilated kernel's taps are `rate` pixels apart, so a kernel of k taps spans "
        "rate*(k-1)+1 pixels, not rate*k. Height and width are dilated separately (a 3x5 "
        "kernel stays 3x5 at rate 1). Keep the weight's dtype (new_zeros)."
    ),
    cases=[
        Case("3x3 at rate 1 (unchanged)", _kernel((1, 1, 3, 3), 1, seed=1)),
        Case("3x3 at rate 2 -> 5x5", _kernel((1, 1, 3, 3), 2, seed=2)),
        Case("3x3 at rate 3, 4 x 3 channels -> 7x7", _kernel((4, 3, 3, 3), 3, seed=3)),
        Case("5x5 at rate 2 -> 9x9", _kernel((2, 1, 5, 5), 2, seed=4)),
        Case("1x1 at rate 5 (a 1x1 has nothing to dilate)", _kernel((3, 2, 1, 1), 5, seed=5)),
        Case("3x5 at rate 2 -> 5x9 (non-square)", _kernel((1, 2, 3, 5), 2, seed=6)),
        Case("3x3 at rate 12 -> 25x25 (LargeFOV's fc6)", _kernel((2, 2, 3, 3), 12, seed=7),
             hidden=True),
        Case("5x3 at rate 4, 2 x 2 channels", _kernel((2, 2, 5, 3), 4, seed=8), hidden=True),
    ],
)

ATROUS_TAPS_INSIDE = Exercise(
    id="ch05.atrous_taps_inside",
    function="atrous_taps_inside",
    reference=atrous_taps_inside,
    summary=as_int,
    hint=(
        "Offsets of the taps from the centre are rate * (j - k // 2) for j in range(k); count "
        "those with 0 <= position + offset < size.\n"
        "The default position is the centre pixel (size - 1) // 2 (for an even size, the "
        "upper of the two middle pixels). A tap in the zero padding sees nothing; at a rate "
        "as large as the map only the centre tap remains. Return a Python int."
    ),
    cases=[
        Case("33 cells (513 at stride 16), rate 12", const(33, 12)),
        Case("33 cells, rate 24", const(33, 24)),
        Case("65 cells (513 at stride 8), rate 36", const(65, 36)),
        Case("9 cells, rate 12", const(9, 12)),
        Case("32 cells (even), rate 16", const(32, 16)),
        Case("33 cells, rate 6, at the first pixel", const(33, 6, 3, 0)),
        Case("33 cells, a 5-tap kernel at rate 6", const(33, 6, 5)),
        Case("33 cells, a 5-tap kernel at rate 12", const(33, 12, 5)),
        Case("129 cells, rate 18", const(129, 18), hidden=True),
        Case("20 cells, a 5-tap kernel at rate 7, at the last pixel", const(20, 7, 5, 19),
             hidden=True),
    ],
)

IMAGE_POOLING = Exercise(
    id="ch05.image_pooling",
    function="image_pooling",
    reference=image_pooling,
    summary=as_tensor,
    rtol=1e-5,
    atol=1e-5,
    hint=(
        "Global average pool to (N, C, 1, 1), then conv, bn, ReLU, then F.interpolate to x's "
        "H, W (bilinear, align_corners=False).\n"
        "Use the conv and bn you are given (do not build new ones). With bn.training and a "
        "batch of one, bn(y) raises \"Expected more than 1 value per channel\": normalise with "
        "the running statistics instead, F.batch_norm(y, bn.running_mean, bn.running_var, "
        "bn.weight, bn.bias, training=False, eps=bn.eps). Any other batch: bn(y)."
    ),
    cases=[
        Case("eval, batch 1, 8 -> 4 channels, 5x7 map",
             _pooling_inputs(1, 8, 4, (5, 7), training=False, seed=10)),
        Case("eval, batch 2, 6 -> 3 channels, 9x9 map",
             _pooling_inputs(2, 6, 3, (9, 9), training=False, seed=20)),
        Case("eval, 1x1 map (nothing to upsample)",
             _pooling_inputs(2, 4, 2, (1, 1), training=False, seed=30)),
        Case("training, batch 3 (batch statistics)",
             _pooling_inputs(3, 5, 4, (4, 6), training=True, seed=40), points=2),
        Case("training, batch 1 (one value per channel)",
             _pooling_inputs(1, 5, 4, (7, 3), training=True, seed=50), points=2),
        Case("eval, batch 2, 33x17 map", _pooling_inputs(2, 16, 8, (33, 17), training=False,
                                                         seed=60), hidden=True),
        Case("training, batch 1, 65x65 map", _pooling_inputs(1, 8, 8, (65, 65), training=True,
                                                             seed=70), hidden=True),
    ],
)

ASPP_EXERCISE = Exercise(
    id="ch05.aspp",
    function="ASPP",
    reference=ASPP,
    rtol=1e-4,
    atol=1e-5,
    hint=(
        "Register the branches in an nn.ModuleList, add the image-pooling branch, and give "
        "the projection (len(rates) + 2) * out_channels input channels.\n"
        "The outline keeps its branches in a plain Python list: PyTorch never sees them "
        "(not in parameters(), state_dict() or .to()). Its projection takes len(rates)+1 "
        "channels, but each branch has out_channels. DeepLab v3 (Sec. 3.3) has a 1x1 branch "
        "(conv without bias + BN + ReLU), one ASPPConv per rate, ASPPPooling, and the "
        "projection conv 1x1 (no bias) + BN + ReLU + Dropout(0.5). Names: self.convs, "
        "self.project."
    ),
    cases=[
        Case("ASPP(16, 8, (6, 12, 18)): parameter names and shapes", const(16, 8, (6, 12, 18)),
             summary=_aspp_structure(16, 8, (6, 12, 18)), points=2),
        Case("ASPP(16, 8, (6, 12, 18)) on a 33x33 map (513 at stride 16)",
             const(16, 8, (6, 12, 18)), points=2,
             summary=_aspp_forward(16, 8, (6, 12, 18), (33, 33), 1, seed=100)),
        Case("ASPP(12, 4, (2, 4, 6)), batch 2, odd 9x13 map", const(12, 4, (2, 4, 6)),
             points=3, summary=_aspp_forward(12, 4, (2, 4, 6), (9, 13), 2, seed=200)),
        Case("ASPP(8, 6, (1, 3)): two rates", const(8, 6, (1, 3)), points=2,
             summary=_aspp_forward(8, 6, (1, 3), (7, 5), 2, seed=300)),
        Case("ASPP(10, 4, (12, 24, 36)): parameter names and shapes",
             const(10, 4, (12, 24, 36)), summary=_aspp_structure(10, 4, (12, 24, 36)),
             hidden=True),
        Case("ASPP(24, 8, (12, 24, 36)), batch 2, 17x11 map (rates beyond the map)",
             const(24, 8, (12, 24, 36)), points=3, hidden=True,
             summary=_aspp_forward(24, 8, (12, 24, 36), (17, 11), 2, seed=400)),
    ],
)

EXERCISES = [DILATE_KERNEL, ATROUS_TAPS_INSIDE, IMAGE_POOLING, ASPP_EXERCISE]

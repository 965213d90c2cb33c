"""Chapter 5 exercises (DeepLab): the functions students write in ``05_deeplab.ipynb``.

Each exercise's reference is the implementation in :mod:`segedu.deeplab` or
:mod:`segedu.core.sizes`. Case inputs are built from seeded generators, so the student's
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
from .cases import (
    as_int,
    as_tensor,
    const,
    every_failure,
    module_summary,
    randn,
    state_shapes,
)

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


def _aspp_structure(in_channels: int, rates: Sequence[int],
                    out_channels: int) -> Callable[[Any], Any]:
    """Summary: the state_dict's names and shapes."""
    return module_summary(ASPP, (in_channels, tuple(rates), out_channels), _ASPP_PARTS)


def _aspp_forward(in_channels: int, rates: Sequence[int], out_channels: int,
                  size: tuple[int, int], batch: int, seed: int) -> Callable[[Any], Any]:
    """Summary: load seeded weights by name, run the module in eval mode on a seeded map."""
    def run(module: nn.Module) -> torch.Tensor:
        module.load_state_dict(_seeded_state(state_shapes(module), seed))
        module.eval()
        x = randn(batch, in_channels, *size, seed=seed + 100)
        return as_tensor(module(x), returned_by="forward(x)")
    return module_summary(ASPP, (in_channels, tuple(rates), out_channels), _ASPP_PARTS, run)


#: The course outline's ASPP, as handed out in the exercise notebook: find and fix its bugs.
OUTLINE_ASPP = """\
class ASPP(nn.Module):                       # the course outline's version: find the bugs
    def __init__(self, in_channels, atrous_rates, out_channels=256):
        super().__init__()
        self.convs = [nn.Conv2d(in_channels, out_channels, 1)]
        for rate in atrous_rates:
            self.convs.append(nn.Conv2d(in_channels, out_channels, 3, padding=rate,
                                        dilation=rate))
        self.project = nn.Conv2d(len(atrous_rates) + 1, out_channels, 1)

    def forward(self, x):
        res = [conv(x) for conv in self.convs]
        return self.project(torch.cat(res, dim=1))
"""


def _every_module(module: Any) -> list[nn.Module]:
    """Every module ``module`` holds: registered ones *and* those hidden in plain Python
    lists, tuples or dicts (which PyTorch never sees)."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected an nn.Module (an ASPP), got {type(module).__name__}")
    found: list[nn.Module] = []

    def visit(value: Any) -> None:
        if isinstance(value, nn.Module):
            if any(value is m for m in found):
                return
            found.append(value)
            for child in value.children():
                visit(child)
            for attr in vars(value).values():
                if isinstance(attr, (list, tuple, dict)):
                    visit(attr)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)
    visit(module)
    return found


def _registered_rates(module: Any) -> list[int]:
    """Summary: the rates of the 3x3 convolutions PyTorch sees (registered submodules)."""
    _every_module(module)
    return sorted(int(m.dilation[0]) for m in module.modules()
                  if isinstance(m, nn.Conv2d) and tuple(m.kernel_size) == (3, 3))


def _output_shape(in_channels: int, size: tuple[int, int], batch: int) -> Callable[[Any], Any]:
    """Summary: the output's shape (the forward pass must run)."""
    def run(module: Any) -> tuple[int, ...]:
        _every_module(module).__len__()
        module.eval()
        return tuple(as_tensor(module(randn(batch, in_channels, *size, seed=7)),
                               returned_by="forward(x)").shape)
    return run


def _sees_far_corner(in_channels: int, size: int) -> Callable[[Any], Any]:
    """Summary: does the output's top-left pixel change when the input's bottom-right pixel
    does? Weights made positive (so no ReLU hides a path); eval mode."""
    def run(module: Any) -> bool:
        for m in _every_module(module):
            if isinstance(m, nn.Conv2d):
                m.weight.abs_()
                if m.bias is not None:
                    m.bias.abs_()
        module.eval()
        x = randn(1, in_channels, size, size, seed=8).abs()
        moved = x.clone()
        moved[..., -1, -1] += 10.0
        before = as_tensor(module(x), returned_by="forward(x)")[..., 0, 0]
        after = as_tensor(module(moved), returned_by="forward(x)")[..., 0, 0]
        return bool((before - after).abs().max() > 1e-6)
    return run


def _batchnorm_after_every_conv(module: Any) -> bool:
    """Summary: as many BatchNorm2d as Conv2d, wherever they are held."""
    modules = _every_module(module)
    convs = sum(isinstance(m, nn.Conv2d) for m in modules)
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in modules)
    return convs > 0 and norms == convs


def _never_negative(in_channels: int, size: tuple[int, int]) -> Callable[[Any], Any]:
    """Summary: is the (eval-mode) output non-negative, as after a final ReLU?"""
    def run(module: Any) -> bool:
        _every_module(module)
        module.eval()
        out = as_tensor(module(randn(2, in_channels, *size, seed=9)), returned_by="forward(x)")
        return bool(out.min() >= 0)
    return run


def choose_aspp_rates(size: int) -> tuple[int, int, int]:
    """A reference answer of the open-ended exercise: three increasing rates whose 3x3 taps all
    land on a ``size`` map from its centre, the widest reaching as far as possible."""
    centre = (size - 1) // 2
    widest = min(centre, size - 1 - centre)
    low = max(1, widest // 3)
    return low, max(low + 1, 2 * widest // 3), widest


def _rates_outcome(size: int) -> Callable[[Any], dict[str, bool]]:
    """Summary of ``choose_aspp_rates(size)``, measured with the taps function."""
    def summary(rates: Any) -> dict[str, bool]:
        if not isinstance(rates, (tuple, list)) or not all(
                isinstance(r, int) and not isinstance(r, bool) for r in rates):
            raise TypeError(f"expected a tuple of int rates, got {rates!r}")
        rates = list(rates)
        valid = len(rates) == 3 and all(r >= 1 for r in rates)
        return {
            "three increasing rates": valid and rates == sorted(set(rates)),
            "every branch keeps its 9 taps on the map at the centre": valid and all(
                atrous_taps_inside(size, r) == 3 for r in rates),
            "the widest branch reaches at least a third of the map": valid and 3 * max(
                rates) >= size - 2,
        }
    return summary


# --------------------------------------------------------------------------- exercises

DILATE_KERNEL = Exercise(
    id="ch05.dilate_kernel",
    function="dilate_kernel",
    reference=dilate_kernel,
    summary=as_tensor,
    task=(
        "Return the ordinary (dense) kernel that computes what an atrous convolution at "
        "`rate` computes: it shows that an atrous conv enlarges the field of view without "
        "adding weights (DeepLab v2, Sec. 3.1)."
    ),
    hint=(
        "An atrous kernel reads the input with holes between its taps. Written as an ordinary "
        "kernel, the taps keep their values and order and the holes are zeros. How many "
        "pixels does a kernel of k taps with holes span?"
    ),
    hints=(
        "Which quantity goes wrong: the extent (k taps have k - 1 gaps), where the taps go "
        "(every rate-th position, starting at 0), the two axes (height and width separately), "
        "or the dtype (keep the weight's).",
        "Worked example: a 3 x 3 kernel 1..9 at rate 2 becomes the 5 x 5 kernel with rows "
        "[1, 0, 2, 0, 3], [0, 0, 0, 0, 0], [4, 0, 5, 0, 6], [0, 0, 0, 0, 0], [7, 0, 8, 0, 9].",
    ),
    answer_fragments=("[..., ::rate, ::rate]", "::rate, ::rate] = weight",
                      "rate * (kh - 1) + 1"),
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
    task=(
        "Return how many taps of a dilated kernel still land on the feature map rather than "
        "in its zero padding: DeepLab v3's Fig. 4 shows why large rates on small maps "
        "degenerate into 1 x 1 convolutions."
    ),
    hint=(
        "Place the kernel's middle tap at the position; the other taps sit `dilation` pixels "
        "apart on both sides. A tap counts when it lands on a real pixel of the map; think "
        "carefully about the first and the last pixel."
    ),
    hints=(
        "Which quantity goes wrong: the default position (the centre pixel; for an even size, "
        "the lower of the two middle ones), the map's last pixel (index size - 1: a tap at "
        "index size is outside), or position 0 (a real position, not 'no position').",
        "Worked example: 33 cells, rate 12, centre 16: taps at 4, 16, 28 -> 3. Rate 24: "
        "-8, 16, 40 -> 1. 32 cells, rate 17: centre 15, taps -2, 15, 32 -> 1.",
    ),
    answer_fragments=("0 <= centre + offset < size", "0 <= centre + o < size"),
    cases=[
        Case("33 cells (513 at stride 16), rate 12", const(33, 12)),
        Case("33 cells, rate 24", const(33, 24)),
        Case("65 cells (513 at stride 8), rate 36", const(65, 36)),
        Case("9 cells, rate 12", const(9, 12)),
        Case("32 cells (even), rate 16", const(32, 16)),
        Case("33 cells, rate 6, at the first pixel", const(33, 6, 3, 0)),
        Case("33 cells, a 5-tap kernel at rate 6", const(33, 6, 5)),
        Case("33 cells, a 5-tap kernel at rate 12", const(33, 12, 5)),
        Case("32 cells, rate 17 (a tap one past the last pixel)", const(32, 17), points=2),
        Case("33 cells, rate 16 (taps on the first and the last pixel)", const(33, 16)),
        Case("129 cells, rate 18", const(129, 18), hidden=True),
        Case("64 cells, rate 33 (a tap one past the last pixel)", const(64, 33), hidden=True),
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
    task=(
        "Return DeepLab v3's image-level features (Sec. 3.3): a summary of the whole image, "
        "given to every position, which keeps ASPP useful when large rates see only padding; "
        "it must work for a batch of one in training, too."
    ),
    hint=(
        "Sec. 3.3: pool the whole map into one vector per image, transform it with the given "
        "convolution, normalisation and non-linearity, and give it back to every position. "
        "What can BatchNorm compute in training from a batch of one 1 x 1 map?"
    ),
    hints=(
        "Which quantity goes wrong: the pooling (an average over the whole map), the order "
        "(conv, then bn, then ReLU, then upsample), the upsampled size (x's exactly), or the "
        "batch-of-one case in training (normalise with the running statistics, and leave "
        "them unchanged).",
        "Worked example: x (2, 6, 9, 9) -> pooled (2, 6, 1, 1) -> conv (2, 3, 1, 1) -> bn -> "
        "ReLU -> (2, 3, 9, 9), each 9 x 9 plane constant.",
    ),
    answer_fragments=("F.adaptive_avg_pool2d(x, 1)", "training=False, eps=bn.eps"),
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
    stub=OUTLINE_ASPP,
    task=(
        "Find and fix the bugs of the course outline's ASPP until it is DeepLab v3's (Sec. 3.3, "
        "Fig. 5), with torchvision's part names; each bug fixed earns its own points."
    ),
    hint=(
        "Read the outline's module next to DeepLab v3's Sec. 3.3 and Fig. 5, and ask what "
        "PyTorch can see of it: what does nn.Module register, what does the projection "
        "receive, and which parts of Sec. 3.3's ASPP are there at all? Each case name says "
        "what it measures."
    ),
    hints=(
        "Which quantity goes wrong: what parameters() and state_dict() list (build the "
        "outline's module and print them), the number of channels the concatenation hands "
        "the projection, whether any branch sees the whole image (Sec. 3.3, image-level "
        "features), and what follows each convolution in Sec. 3.3 (batch normalisation; "
        "a non-linearity).",
        "Worked example: ASPP(16, (6, 12, 18), 8) on (1, 16, 33, 33) has five branches of "
        "(1, 8, 33, 33): a 1 x 1 conv, three atrous 3 x 3 convs, image pooling "
        "(ASPPPooling); concatenated (1, 40, 33, 33), projected to (1, 8, 33, 33). Names as "
        "torchvision: self.convs (a ModuleList: a Sequential of conv 1x1 without bias, BN, "
        "ReLU; ASPPConv per rate; ASPPPooling) and self.project (conv 1x1 without bias, BN, "
        "ReLU, Dropout(0.5)).",
    ),
    answer_fragments=("nn.ModuleList(", "len(self.convs) * out_channels",
                      "ASPPPooling(in_channels, out_channels)"),
    cases=[
        Case("the branches are registered (in parameters(), state_dict(), .to())",
             const(16, (6, 12, 18), 8), points=2, summary=_registered_rates),
        Case("forward runs: the projection takes what the branches hand it",
             const(16, (6, 12, 18), 8), points=2, summary=_output_shape(16, (9, 9), 1)),
        Case("the top-left output sees the bottom-right input (17x17 map, rates 1, 2)",
             const(8, (1, 2), 4), points=2, summary=_sees_far_corner(8, 17)),
        Case("a BatchNorm after every convolution", const(16, (6, 12, 18), 8),
             summary=_batchnorm_after_every_conv),
        Case("the output is never negative", const(8, (1, 2), 4),
             summary=_never_negative(8, (7, 7))),
        Case("ASPP(16, (6, 12, 18), 8): parameter names and shapes", const(16, (6, 12, 18), 8),
             summary=_aspp_structure(16, (6, 12, 18), 8), points=2),
        Case("ASPP(16, (6, 12, 18), 8) on a 33x33 map (513 at stride 16)",
             const(16, (6, 12, 18), 8), points=2,
             summary=_aspp_forward(16, (6, 12, 18), 8, (33, 33), 1, seed=100)),
        Case("ASPP(12, (2, 4, 6), 4), batch 2, odd 9x13 map", const(12, (2, 4, 6), 4),
             points=3, summary=_aspp_forward(12, (2, 4, 6), 4, (9, 13), 2, seed=200)),
        Case("ASPP(8, (1, 3), 6): two rates", const(8, (1, 3), 6), points=2,
             summary=_aspp_forward(8, (1, 3), 6, (7, 5), 2, seed=300)),
        Case("the branches are registered, rates 12, 24, 36", const(10, (12, 24, 36), 4),
             hidden=True, summary=_registered_rates),
        Case("ASPP(10, (12, 24, 36), 4): parameter names and shapes",
             const(10, (12, 24, 36), 4), summary=_aspp_structure(10, (12, 24, 36), 4),
             hidden=True),
        Case("ASPP(24, (12, 24, 36), 8), batch 2, 17x11 map (rates beyond the map)",
             const(24, (12, 24, 36), 8), points=3, hidden=True,
             summary=_aspp_forward(24, (12, 24, 36), 8, (17, 11), 2, seed=400)),
    ],
)

CHOOSE_ASPP_RATES = Exercise(
    id="ch05.choose_aspp_rates",
    function="choose_aspp_rates",
    reference=choose_aspp_rates,
    judge=every_failure,
    time_limit_s=2.0,
    task=(
        "Open-ended: choose three ASPP rates for a feature map of `size` cells so that every "
        "atrous branch sees real context and none degenerates into a 1 x 1 conv; the grader "
        "measures your rates with the taps function."
    ),
    hint=(
        "A branch is only useful while all its taps land on the map (DeepLab v3, Fig. 4). "
        "Use your atrous_taps_inside to see how large a rate the map allows from its centre, "
        "and spread three rates below that limit."
    ),
    hints=(
        "Which quantity goes wrong: the largest rate (from the centre pixel the map has less "
        "room on one side when its size is even), rates that repeat, or a widest rate so "
        "small that it sees little more than a 3 x 3 window.",
        "Worked example: a 33 x 33 map (513 at output stride 16) has 16 cells on each side of "
        "its centre: (6, 12, 16) works, v3's (6, 12, 18) puts the outer taps of the last "
        "branch in the padding. A 64 x 64 input at stride 8 gives an 8 x 8 map: (1, 2, 3).",
    ),
    answer_fragments=("2 * widest // 3",),
    cases=[
        Case("a 33x33 map (513 at output stride 16)", const(33), summary=_rates_outcome(33)),
        Case("an 8x8 map (a 64x64 input at output stride 8)", const(8), points=2,
             summary=_rates_outcome(8)),
        Case("a 65x65 map (513 at output stride 8)", const(65), summary=_rates_outcome(65)),
        Case("a 16x16 map (even)", const(16), summary=_rates_outcome(16)),
        Case("a 129x129 map", const(129), hidden=True, summary=_rates_outcome(129)),
        Case("a 10x10 map", const(10), hidden=True, summary=_rates_outcome(10)),
    ],
)

EXERCISES = [DILATE_KERNEL, ATROUS_TAPS_INSIDE, IMAGE_POOLING, ASPP_EXERCISE,
             CHOOSE_ASPP_RATES]

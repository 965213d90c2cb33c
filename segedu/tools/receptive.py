"""Receptive fields: which input pixels can this unit see? (chapters 1, 4, 5 and 6)

The theoretical receptive field of any stack or backbone, walked from the modules themselves
(:func:`receptive_field`); the effective receptive field measured by gradients
(:func:`effective_receptive_field`); the sampling pattern of stacked dilated convolutions
(:func:`dilated_sampling`, gridding); the taps of ASPP branches (:func:`aspp_taps`) and the
cells of a pyramid pooling module (:func:`ppm_cells`). :mod:`segedu.tools.widgets` draws all of
them; nothing here needs a widget. The size arithmetic underneath ("how big is the map after
this layer?") is :mod:`segedu.core.sizes`.

This is a tool, above the chapters: it knows how to walk the course's own networks (VGG16,
ResNet, FCN, the backbone + head models), so it imports them; no chapter imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet as tv_resnet
from torchvision.models import vgg as tv_vgg

from ..backbones import VGG16, Bottleneck, ResNet
from ..core.model import SegmentationModel
from ..core.sizes import (
    adaptive_pool_regions,
    atrous_taps_inside,
    effective_kernel_size,
    resnet_feature_size,
)
from ..fcn import FCN

__all__ = [
    "RFRow",
    "receptive_field",
    "register_main_path",
    "EffectiveRF",
    "effective_receptive_field",
    "dilated_sampling",
    "sampling_profile",
    "DilationCoverage",
    "dilated_coverage",
    "ASPPBranch",
    "aspp_taps",
    "aspp_valid_fraction",
    "ppm_cells",
]


# --------------------------------------------------------------------------------------------
# Theoretical receptive field, layer by layer (Araujo, Norris & Sim, Distill 2019)
# --------------------------------------------------------------------------------------------
#
# A layer with kernel k, stride s, padding p and dilation d spans e = d(k - 1) + 1 pixels of its
# input. With r the field size, j the jump (distance in input pixels between neighbouring units,
# the "effective stride") and c the input coordinate of the centre of unit 0, each layer does
#
#     r_l = r_{l-1} + (e_l - 1) * j_{l-1}
#     c_l = c_{l-1} + ((e_l - 1) / 2 - p_l) * j_{l-1}
#     j_l = j_{l-1} * s_l
#
# starting from the image itself (r_0 = 1, c_0 = 0, j_0 = 1). Unit i of layer l then sees input
# pixels [c_l + i*j_l - (r_l - 1)/2, c_l + i*j_l + (r_l - 1)/2]. Worked by hand for the two
# backbones of the course (3x3 convs add 2j, a 2x2/2 pool adds j and doubles j):
#
#   VGG16 to pool5:  block 1: 1 + 2 + 2 = 5, pool -> 6 (j 2); block 2: 6 + 2*2*2 = 14, pool -> 16
#     (j 4); block 3: 16 + 3*2*4 = 40, pool -> 44 (j 8); block 4: 44 + 3*2*8 = 92, pool -> 100
#     (j 16); block 5: 100 + 3*2*16 = 196, pool -> 212 (j 32).          => 212 px, stride 32.
#   ResNet-50 to layer4 (stride on the 3x3 conv; 1x1 convs add nothing): conv1 7x7/2 -> 7 (j 2);
#     maxpool 3x3/2 -> 7 + 2*2 = 11 (j 4); layer1, 3 blocks: 11 + 3*2*4 = 35; layer2: first 3x3/2
#     -> 35 + 2*4 = 43 (j 8), 3 more -> 43 + 3*2*8 = 91; layer3: 91 + 2*8 = 107 (j 16), 5 more ->
#     107 + 5*2*16 = 267; layer4: 267 + 2*16 = 299 (j 32), 2 more -> 299 + 2*2*32 = 427.
#                                                                        => 427 px, stride 32.


@dataclass(frozen=True)
class RFRow:
    """The receptive field after one layer (sizes in input pixels).

    Attributes:
        name: the module's dotted path in the model (``"layer4.2.conv2"``, ``"features.30"``).
        label: the paper's name where the course knows one (``"conv5_3"``, ``"pool5"`` for VGG16),
            otherwise ``name``.
        kind: ``"conv"``, ``"pool"`` or ``"tconv"`` (transposed convolution).
        kernel, stride, dilation, padding: the layer's own parameters.
        size: the side of the receptive field of one unit.
        jump: distance in input pixels between neighbouring units (the effective stride).
        centre: input coordinate of the centre of unit 0's field; negative or fractional values
            are normal (the field of a border unit reaches into the padding).
        start: first input pixel of unit 0's field, ``centre - (size - 1) / 2``.
    """

    name: str
    label: str
    kind: str
    kernel: int
    stride: int
    dilation: int
    padding: int
    size: float
    jump: float
    centre: float
    start: float

    def field(self, index: int = 0) -> tuple[float, float]:
        """First and last input pixel (inclusive, unclipped) seen by unit ``index`` (one axis)."""
        first = self.start + index * self.jump
        return first, first + self.size - 1


#: Layers that leave the geometry alone: the walk steps over them.
_PASSTHROUGH = (
    nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm, nn.ReLU, nn.ReLU6,
    nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid,
    nn.Tanh, nn.Dropout, nn.Dropout2d, nn.Identity,
)
#: Layers whose output depends on the whole map: the field is the whole input from there on.
_GLOBAL = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.Flatten)

_REGISTERED_PATHS: dict[type, tuple[str, ...]] = {}


def register_main_path(cls: type, names: Sequence[str]) -> None:
    """Tell :func:`receptive_field` how to walk modules of type ``cls``: the attributes
    ``names`` in forward order (attributes a model does not have are skipped).

    For a residual block, list the main path only: the shortcut is at most a strided 1x1 conv,
    whose field is one pixel centred where the main path's is centred, so the union of both
    paths is the main path's field. A chapter registers its own networks this way.
    """
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise ValueError(f"cls must be an nn.Module subclass, got {cls!r}.")
    _REGISTERED_PATHS[cls] = tuple(names)


def _main_paths() -> tuple[dict[type, tuple[str, ...]], tuple[type, ...]]:
    """Forward order of the networks the course knows, and the VGG classes (whose layers get the
    paper's names)."""
    stem_and_stages = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    bottleneck = ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3")
    paths = {
        VGG16: ("features",),            # the classifier (avgpool, fc) is global
        tv_vgg.VGG: ("features",),
        ResNet: stem_and_stages,         # avgpool and fc are global
        tv_resnet.ResNet: stem_and_stages,
        Bottleneck: bottleneck,          # main path; the shortcut adds nothing (see above)
        tv_resnet.Bottleneck: bottleneck,
        tv_resnet.BasicBlock: ("conv1", "bn1", "conv2", "bn2"),
        # FCN up to its stride-32 score map: pool5 -> fc6 -> fc7 -> score_fr. The skips see
        # less; the upsamplers after score_fr interpolate between neighbouring scores.
        FCN: ("backbone", "fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "score_fr"),
        SegmentationModel: ("backbone", "classifier"),
    }
    paths.update(_REGISTERED_PATHS)
    return paths, (VGG16, tv_vgg.VGG)


def _walk(module: nn.Module, prefix: str, paths: dict, vgg_types: tuple, vgg: bool = False):
    """Yield ``(name, leaf module, inside_vgg)`` in forward order along the main path."""
    vgg = vgg or isinstance(module, vgg_types)
    dot = f"{prefix}." if prefix else ""
    for cls in type(module).__mro__:
        if cls in paths:
            for attr in paths[cls]:
                child = getattr(module, attr, None)
                if child is not None:
                    yield from _walk(child, dot + attr, paths, vgg_types, vgg)
            return
    if isinstance(module, nn.Sequential):
        for attr, child in module.named_children():
            yield from _walk(child, dot + attr, paths, vgg_types, vgg)
        return
    yield prefix, module, vgg


def _square(value, what: str, name: str) -> int:
    if isinstance(value, str):
        raise ValueError(f"{name}: padding={value!r} is not supported here; use an integer.")
    if isinstance(value, tuple):
        if len(set(value)) != 1:
            raise ValueError(f"{name} has a non-square {what} {value}; receptive_field handles "
                             "square layers (compute each axis separately otherwise).")
        value = value[0]
    return int(value)


def _geometry(name: str, layer: nn.Module) -> tuple[str, int, int, int, int] | None:
    """``(kind, k, s, p, d)`` of a geometry-changing layer; None for a pass-through one."""
    if isinstance(layer, _PASSTHROUGH):
        return None
    if isinstance(layer, nn.ConvTranspose2d):
        kind = "tconv"
    elif isinstance(layer, nn.Conv2d):
        kind = "conv"
    elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
        kind = "pool"
    elif isinstance(layer, _GLOBAL):
        raise ValueError(
            f"'{name}' ({type(layer).__name__}) mixes the whole map: from there on the field is "
            "the whole input. Pass upto= the last local layer before it.")
    else:
        raise ValueError(
            f"receptive_field does not know how {type(layer).__name__} at '{name}' changes the "
            "field. Pass a list of its conv/pool layers, or register the module's main path "
            "with segedu.tools.receptive.register_main_path(cls, attribute_names).")
    stride = layer.stride if layer.stride is not None else layer.kernel_size
    return (kind, _square(layer.kernel_size, "kernel", name), _square(stride, "stride", name),
            _square(layer.padding, "padding", name),
            _square(getattr(layer, "dilation", 1), "dilation", name))


def _number(x) -> float:
    """Fractions from the recurrences as plain numbers: an int when whole."""
    return int(x) if x == int(x) else float(x)


def receptive_field(model_or_layers: nn.Module | Iterable[nn.Module],
                    upto: str | None = None) -> list[RFRow]:
    """The receptive field of every conv, pool and transposed conv, in forward order.

    Walks the modules themselves: ``nn.Sequential`` in order; VGG16 (ours and torchvision's)
    through ``features``; ResNet (ours and torchvision's) through the stem and ``layer1..4``;
    residual blocks through their main path (the shortcut never widens the field);
    ``FCN`` up to ``score_fr``; ``SegmentationModel`` through backbone and classifier. (The global
    classifiers of VGG16 and ResNet, avgpool and fc, are not walked: they see the whole input.)
    BatchNorm, activations and dropout pass through. Any other module raises ``ValueError``
    naming its type, so a layer that changes the geometry is never skipped silently.

    A transposed convolution divides the jump by its stride; output unit ``o`` draws on the
    inputs ``(o + p - t*d) / s`` that are integers (t = 0..k-1), which lie in an interval of
    ``(e - 1) / s`` input steps centred at ``(o + p - (e - 1) / 2) / s`` (e = dilated kernel). The
    field then describes an envelope (its size may be fractional): each unit sees the pixels
    inside it, some phases of ``o`` one fewer.

    Args:
        model_or_layers: a model, or a list of layers applied one after the other.
        upto: stop after this layer or block: a module path (``"layer4"``,
            ``"layer3.5.conv2"``) or a label (``"pool5"``).

    >>> from torchvision.models import vgg16
    >>> receptive_field(vgg16().features)[-1].size     # pool5
    212
    """
    if isinstance(model_or_layers, nn.Module):
        walk = _walk(model_or_layers, "", *_main_paths())
    else:
        walk = ((str(i), layer, False) for i, layer in enumerate(model_or_layers))

    def matches(name: str, label: str) -> bool:
        return upto in (name, label) or name.startswith(f"{upto}.")

    rows: list[RFRow] = []
    size, jump, centre = Fraction(1), Fraction(1), Fraction(0)
    block, in_block, matched, seen = 1, 0, False, []
    for name, layer, in_vgg in walk:
        if matched and not matches(name, name):
            break  # the requested block is complete
        geometry = _geometry(name, layer)
        if geometry is None:
            continue
        kind, k, s, p, d = geometry
        label = name
        if in_vgg:  # VGG's paper names: conv<block>_<i>, pool<block>
            if kind == "pool":
                label, block, in_block = f"pool{block}", block + 1, 0
            else:
                in_block += 1
                label = f"conv{block}_{in_block}"
        span = d * (k - 1)  # e - 1
        if kind == "tconv":  # output o draws on inputs (o + p - t*d) / s, t = 0..k-1
            size += Fraction(span, s) * jump
            centre += (p - Fraction(span, 2)) / s * jump
            jump /= s
        else:
            size += span * jump
            centre += (Fraction(span, 2) - p) * jump
            jump *= s
        rows.append(RFRow(name, label, kind, k, s, d, p, _number(size), _number(jump),
                          _number(centre), _number(centre - (size - 1) / 2)))
        seen.append(label if label == name else f"{label} ({name})")
        if upto is not None and matches(name, label):
            matched = True
            if upto == label != name:
                break  # a label names a single layer
    if upto is not None and not matched:
        raise ValueError(f"no layer or block named {upto!r}; the walk found: {', '.join(seen)}.")
    if not rows:
        raise ValueError("found no conv or pool layer to compute a receptive field from.")
    return rows


# --------------------------------------------------------------------------------------------
# Effective receptive field (Luo, Li, Urtasun & Zemel, NeurIPS 2016)
# --------------------------------------------------------------------------------------------


@dataclass
class EffectiveRF:
    """``gradient``: |d unit / d input| (H, W), summed over channels, averaged over samples;
    ``unit``: the (row, col) of the output unit in its layer's map, of size ``output_size``."""

    gradient: torch.Tensor
    unit: tuple[int, int]
    output_size: tuple[int, int]

    def support(self, threshold: float = 0.0) -> tuple[int, int, int, int]:
        """Bounding box ``(top, bottom, left, right)`` (inclusive) of the pixels whose gradient
        exceeds ``threshold`` times the largest one (0: every pixel that influences the unit)."""
        g = self.gradient
        rows = torch.nonzero((g > threshold * g.max()).any(dim=1)).flatten()
        cols = torch.nonzero((g > threshold * g.max()).any(dim=0)).flatten()
        if rows.numel() == 0 or g.max() <= 0:
            raise ValueError("the gradient is zero everywhere: the unit does not depend on the "
                             "input (a zero-initialised layer, or dead ReLUs?). Try other "
                             "weights or inputs, or samples > 1.")
        return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])

    def mass_extent(self, fraction: float = 0.9) -> int:
        """Side of the smallest square, centred on the gradient's centroid, that holds
        ``fraction`` of its total mass: the ERF is roughly Gaussian and much smaller than the
        theoretical field (Luo et al., Sec. 2)."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
        g = self.gradient.double()
        total = g.sum()
        if total <= 0:
            raise ValueError("the gradient is zero everywhere.")
        ys = torch.arange(g.shape[0], dtype=g.dtype)
        xs = torch.arange(g.shape[1], dtype=g.dtype)
        cy = int(torch.round((g.sum(1) * ys).sum() / total))
        cx = int(torch.round((g.sum(0) * xs).sum() / total))
        for r in range(max(g.shape)):
            inside = g[max(cy - r, 0):cy + r + 1, max(cx - r, 0):cx + r + 1].sum()
            if inside >= fraction * total * (1 - 1e-9):
                return 2 * r + 1
        return 2 * max(g.shape) + 1


class _Reached(Exception):
    """Raised by a forward hook to stop the forward pass at the requested layer."""


def _find_layer(model: nn.Module, layer: str) -> nn.Module:
    try:
        return model.get_submodule(layer)
    except AttributeError:
        pass
    try:  # a label such as "pool5"
        rows = receptive_field(model, upto=layer)
    except ValueError as err:
        raise ValueError(f"the model has no layer {layer!r} ({err})") from None
    return model.get_submodule(rows[-1].name)


def effective_receptive_field(
    model: nn.Module,
    input_size: int | tuple[int, int],
    layer: str | None = None,
    *,
    unit: tuple[int, int] | None = None,
    inputs: torch.Tensor | None = None,
    samples: int = 1,
    seed: int = 0,
) -> EffectiveRF:
    """Measure which input pixels move one output unit: the gradient of the unit (summed over
    its channels) with respect to the input, in eval mode.

    Luo et al. show the effective field is a subset of the theoretical one and, after training or
    at random init, concentrated around its centre (roughly Gaussian). For a linear stack with
    positive weights nothing cancels and the support is exactly the theoretical field.

    Args:
        model: any module; ``layer`` is a submodule path or a label of :func:`receptive_field`
            (``"pool5"``). Without ``layer`` the model's output (``["out"]`` of a dict).
            A model with ``forward_features`` (the backbones) is run through it.
        input_size: H (= W) or (H, W) of the random inputs.
        unit: (row, col) in the layer's output map; default its centre ``((h-1)//2, (w-1)//2)``.
        inputs: (N, C, H, W) inputs to use instead of ``samples`` standard-normal ones.
        samples: number of random inputs to average over (ReLU networks route gradients
            differently for each input).
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    if inputs is None:
        if samples < 1:
            raise ValueError(f"samples must be at least 1, got {samples}.")
        generator = torch.Generator().manual_seed(seed)
        channels = getattr(model, "in_channels", None) or next(
            (m.in_channels for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), 3)
        inputs = torch.randn(samples, channels, h, w, generator=generator, dtype=dtype)
    x = inputs.to(device=device, dtype=dtype).clone().requires_grad_(True)

    captured: list[torch.Tensor] = []

    def hook(_module, _args, output):
        captured.append(output)
        raise _Reached

    handle = _find_layer(model, layer).register_forward_hook(hook) if layer else None
    was_training = model.training
    model.eval()
    try:
        run = getattr(model, "forward_features", model) if layer else model
        try:
            out = run(x)
        except _Reached:
            out = captured[0]
    finally:
        model.train(was_training)
        if handle is not None:
            handle.remove()
    if isinstance(out, dict):
        out = out["out"]
    if not isinstance(out, torch.Tensor) or out.dim() != 4:
        raise ValueError("the layer's output must be one (N, C, H, W) tensor; pass layer= a "
                         f"convolutional layer (got {type(out).__name__}).")
    oh, ow = out.shape[-2:]
    uy, ux = unit if unit is not None else ((oh - 1) // 2, (ow - 1) // 2)
    if not (0 <= uy < oh and 0 <= ux < ow):
        raise ValueError(f"unit {unit} is outside the layer's {oh}x{ow} output map.")
    (grad,) = torch.autograd.grad(out[:, :, uy, ux].sum(), x)
    return EffectiveRF(grad.abs().sum(1).mean(0).detach().cpu(), (uy, ux), (oh, ow))


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

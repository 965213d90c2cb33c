"""The theoretical receptive field, walked from the modules themselves (chapters 1, 4 and 6).

:func:`receptive_field` follows a network's layers in forward order and applies, per layer, the
recurrences of Araujo, Norris & Sim (Distill 2019) written out below: the field's size, the jump
between neighbouring units and the centre of unit 0. It knows how to walk the course's own
networks (VGG16, ResNet, FCN, the backbone + head models), so it imports them; a chapter's own
block is described with :func:`register_main_path`, never by an import from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from torch import nn
from torchvision.models import resnet as tv_resnet
from torchvision.models import vgg as tv_vgg

from ...backbones import VGG16, Bottleneck, ResNet
from ...core.model import SegmentationModel
from ...fcn import FCN

__all__ = ["RFRow", "receptive_field", "register_main_path"]


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

"""Chapter 2 — SegNet (Badrinarayanan, Kendall & Cipolla, TPAMI 2017).

Read this next to the paper's Sec. 3 and Fig. 2/3. SegNet is an encoder-decoder:

1. **The encoder is VGG16's 13 conv layers** (with BatchNorm), without fc6/fc7/fc8 (Sec. 3).
   Its five 2x2 max-pools keep, besides the maximum, *where* it was: the **pooling indices**.
   Here the encoder *is* :class:`segedu.backbones.VGG16` (``batch_norm=True``,
   ``include_top=False``), so its state_dict is torchvision's ``vgg16_bn().features`` and
   ImageNet weights load into it; only the pools are run differently
   (:func:`max_pool_with_indices`, or ``F.max_pool2d(..., return_indices=True)``).
2. **The decoder upsamples with those indices** (Fig. 3, "max-unpooling"): each value goes
   back to the position its maximum came from, every other position is zero
   (:func:`max_unpool`). Nothing is learned for the upsampling. The upsampled map is *sparse*
   (3 of 4 positions are zero) until the decoder's trainable 3x3 convolutions densify it.
3. The decoder mirrors the encoder stage by stage (:class:`DecoderStage`), and a classifier
   scores the classes at full resolution.

**Layer shapes and the parameter count.** The decoder follows the reference Caffe model
(``segnet_train.prototxt``): stage ``i`` has as many 3x3 conv-BN-ReLU layers as encoder block
``i``, named ``conv{i}_{j}_D`` and counted down; each keeps the channels except the stage's last,
which goes to the channels of the stage below (conv4_1_D: 512 -> 256, conv3_1_D: 256 -> 128,
conv2_1_D: 128 -> 64). The reference's last layer, conv1_1_D, is a 3x3 conv from 64 channels to
the classes, with no BN or ReLU: the input of the soft-max; here it is ``classifier``. With
biases on every conv (as in the reference and in torchvision's VGG16-BN) and 11 classes (CamVid)
that is **29,449,355 parameters**: encoder 14,723,136 (14,714,688 of them the 13 convs),
decoder and classifier 14,726,219. The paper quotes 29.5M, this count rounded (29.44M, a figure
that circulates, is it truncated).

**Where we differ from the paper, and why.**

* *Odd sizes.* The reference is Caffe, whose pooling rounds *up* (a 45-pixel map pools to 23,
  the last window hanging over the edge). We do the same (``ceil_mode=True``), so no row or
  column of an odd-sized map is dropped, and unpool to the exact pre-pool size
  (``output_size``). torchvision's VGG rounds *down*: for sizes that are multiples of 32 the two
  agree exactly (tested), elsewhere only the edge windows differ. Any input size works; no
  padding and no cropping is needed (contrast FCN's ``pad_to_multiple``).
* *Indices in memory.* The paper stores 2 bits per 2x2 window. PyTorch stores indices as
  ``int64`` flat positions in the pre-pool map: 8 bytes per pooled value, twice the float32
  value itself. :func:`upsampling_memory` counts both, and the notebook measures them.

``model(x)`` returns ``{"out": logits}`` (N, num_classes, H, W) for any H, W;
:meth:`SegNet.forward_intermediates` also returns the indices and the sparse and dense maps of
every decoder stage, for the lesson.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import VGG16, VGG16_CONFIG
from .backbones.pretrained import load_backbone_weights
from .core.model import scaled
from .core.sizes import conv_output_size
from .core.validation import check_image_batch, check_num_classes

__all__ = [
    "max_pool_with_indices",
    "max_unpool",
    "upsampling_memory",
    "DecoderStage",
    "SegNet",
    "segnet",
    "load_pretrained_encoder",
]

# --------------------------------------------------------------------------------------------
# 1. Max-pooling that remembers where the maxima were (Sec. 3, Fig. 3)
# --------------------------------------------------------------------------------------------


def max_pool_with_indices(x: torch.Tensor, ceil_mode: bool = True
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """2x2 max-pool with stride 2 that also returns where each maximum came from.

    Written out with reshapes so the indices are visible; it equals
    ``F.max_pool2d(x, 2, 2, ceil_mode=ceil_mode, return_indices=True)``.

    Returns ``(values, indices)``, both (N, C, h, w). ``indices`` (int64) is the *flat* position
    ``row * W + col`` of the maximum in its (H, W) input map — PyTorch's convention, which
    :func:`max_unpool` and ``F.max_unpool2d`` read. With ``ceil_mode=True`` an odd H or W gets
    a last window that hangs over the edge (h = ceil(H/2)); with ``False`` the last row or
    column is dropped (h = floor(H/2)). Ties go to the first maximum in row-major order.
    """
    check_image_batch(x, name="x")
    n, c, h, w = x.shape
    if ceil_mode:  # pad the bottom/right with -inf: a padded pixel is never the maximum
        x = F.pad(x, (0, w % 2, 0, h % 2), value=-math.inf)
    else:          # drop the last row/column of an odd map
        x = x[..., : h - h % 2, : w - w % 2]
    ho, wo = x.shape[-2] // 2, x.shape[-1] // 2
    if ho == 0 or wo == 0:
        raise ValueError(f"a 2x2 pool without ceil_mode needs at least 2x2 pixels, got {h}x{w}.")
    # (N, C, ho, 2, wo, 2) -> (N, C, ho, wo, 4): the four pixels of each window, row-major
    windows = x.reshape(n, c, ho, 2, wo, 2).permute(0, 1, 2, 4, 3, 5).reshape(n, c, ho, wo, 4)
    values, local = windows.max(dim=-1)              # local in {0, 1, 2, 3} = 2*dy + dx
    rows = 2 * torch.arange(ho, device=x.device).view(ho, 1) + local // 2
    cols = 2 * torch.arange(wo, device=x.device).view(1, wo) + local % 2
    return values, rows * w + cols                   # flat index in the unpadded (H, W) map


def max_unpool(x: torch.Tensor, indices: torch.Tensor,
               output_size: Sequence[int]) -> torch.Tensor:
    """SegNet's upsampling (Fig. 3): put every value back where its maximum was, zeros elsewhere.

    ``x`` and ``indices`` are (N, C, h, w); ``indices`` holds flat positions in an
    ``output_size`` = (H, W) map (as returned by :func:`max_pool_with_indices`). Each (n, c)
    plane is flattened to H*W zeros and the values are *scattered* into it. Equals
    ``F.max_unpool2d(x, indices, 2, 2, output_size=output_size)`` (tested); written with
    ``scatter`` it needs no kernel size at all — the indices say everything.
    """
    check_image_batch(x, name="x")
    if not isinstance(indices, torch.Tensor) or indices.dtype != torch.int64:
        got = indices.dtype if isinstance(indices, torch.Tensor) else type(indices).__name__
        raise ValueError(f"indices must be an int64 tensor (from max-pooling with "
                         f"return_indices=True), got {got}.")
    if indices.shape != x.shape:
        raise ValueError(f"indices must have the shape of x, {tuple(x.shape)}; got "
                         f"{tuple(indices.shape)}. Use the indices of the pool that made x.")
    height, width = (int(s) for s in output_size)
    # The range check reads the indices' values: on the CPU only (meta tensors have no values,
    # and on a GPU reading them would stall every decoder stage), and not while torch.compile
    # or the ONNX exporter traces the model (traced tensors have no values either).
    values_known = (indices.numel() > 0 and indices.device.type == "cpu"
                    and not torch.compiler.is_compiling())
    if height < x.shape[-2] or width < x.shape[-1] or (
            values_known and int(indices.max()) >= height * width):
        raise ValueError(f"output_size {(height, width)} is too small for these indices "
                         f"(map {tuple(x.shape[-2:])}); pass the size of the map before the "
                         "pool that made them.")
    n, c = x.shape[:2]
    out = x.new_zeros(n, c, height * width)
    out = out.scatter(2, indices.reshape(n, c, -1), x.reshape(n, c, -1))
    return out.view(n, c, height, width)             # (N, C, H, W), sparse


def upsampling_memory(pre_pool_shapes: Iterable[Sequence[int]],
                      ceil_mode: bool = True) -> dict[str, int]:
    """Bytes a decoder must keep from the encoder to upsample, three ways.

    ``pre_pool_shapes`` are the (N, C, H, W) shapes of the maps entering each 2x2 pool. Returns:

    * ``"feature_maps"``: keep those float32 maps themselves, as U-Net does for its
      concatenated skips — 4 bytes per pre-pool value;
    * ``"indices_int64"``: keep the pooling indices as PyTorch does — 8 bytes per pooled value;
    * ``"indices_2bit"``: the paper's storage (Sec. 3), 2 bits per 2x2 window (which of the
      four), rounded up to whole bytes per map.
    """
    total = {"feature_maps": 0, "indices_int64": 0, "indices_2bit": 0}
    for shape in pre_pool_shapes:
        n, c, h, w = (int(s) for s in shape)
        pooled = n * c * conv_output_size(h, 2, 2, ceil_mode=ceil_mode) * conv_output_size(
            w, 2, 2, ceil_mode=ceil_mode)
        total["feature_maps"] += 4 * n * c * h * w
        total["indices_int64"] += 8 * pooled
        total["indices_2bit"] += math.ceil(2 * pooled / 8)
    return total


# --------------------------------------------------------------------------------------------
# 2. The decoder stage (Fig. 2): max-unpool, then 3x3 conv-BN-ReLU layers
# --------------------------------------------------------------------------------------------


def _vgg16_blocks() -> list[list[int]]:
    """VGG16's conv channels per block, read from its configuration: [[64, 64], ..., [512]*3]."""
    blocks: list[list[int]] = [[]]
    for v in VGG16_CONFIG:
        if v == "M":
            blocks.append([])
        else:
            blocks[-1].append(int(v))
    return [b for b in blocks if b]


class DecoderStage(nn.Sequential):
    """The trainable part of one decoder stage: 3x3 conv (+ BN) + ReLU layers (Fig. 2).

    Stage ``stage`` mirrors encoder block ``stage``: ``channels`` lists its convs' input
    channels, and the layers are named as in the reference, counted down from ``top``
    (default ``len(channels)``): ``conv5_3_D``, ``conv5_2_D``, ... The last layer maps to
    ``out_channels`` (the channels of the stage below). The network runs :func:`max_unpool`
    before it; this module turns that sparse map into a dense one.
    """

    def __init__(self, stage: int, channels: Sequence[int], out_channels: int,
                 batch_norm: bool = True, *, top: int | None = None) -> None:
        top = len(channels) if top is None else top
        layers: list[tuple[str, nn.Module]] = []
        outs = [*channels[1:], out_channels]  # keep the channels, except the last conv
        for j, cin, cout in zip(range(top, top - len(channels), -1), channels, outs,
                                strict=True):
            name = f"conv{stage}_{j}_D"
            layers.append((name, nn.Conv2d(cin, cout, kernel_size=3, padding=1)))
            if batch_norm:
                layers.append((f"{name}_bn", nn.BatchNorm2d(cout)))
            layers.append((f"relu{stage}_{j}_D", nn.ReLU(inplace=True)))
        super().__init__(OrderedDict(layers))


# --------------------------------------------------------------------------------------------
# 3. The network
# --------------------------------------------------------------------------------------------


class SegNet(nn.Module):
    """SegNet (Fig. 2): VGG16-BN encoder with pooling indices, mirrored decoder, classifier.

    Args:
        num_classes: classes to predict (11 for CamVid, 21 for PASCAL VOC).
        width: channel multiplier (1.0 = the paper's network; the CPU profile uses less).
        batch_norm: BatchNorm after every conv but the classifier, as in the paper. ``False``
            gives a VGG16 (no BN) encoder and a decoder without BN.
        in_channels: input channels (3 for RGB).

    Attributes ``encoder`` (a :class:`~segedu.backbones.VGG16`), ``decoder5`` ... ``decoder1``
    (:class:`DecoderStage`) and ``classifier`` (the reference's conv1_1_D).
    """

    def __init__(
        self,
        num_classes: int = 21,
        *,
        width: float = 1.0,
        batch_norm: bool = True,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.num_classes, self.in_channels, self.width = num_classes, in_channels, width
        self.encoder = VGG16(batch_norm=batch_norm, width=width, include_top=False,
                             in_channels=in_channels)
        blocks = [[scaled(c, width) for c in block] for block in _vgg16_blocks()]
        for stage in range(len(blocks), 0, -1):  # decoder5 (deepest) ... decoder1
            channels = blocks[stage - 1]
            if stage > 1:  # the stage's last conv goes to the channels of the stage below
                decoder = DecoderStage(stage, channels, blocks[stage - 2][-1], batch_norm)
            else:          # conv1_1_D is the classifier below: decoder1 is conv1_2_D only
                decoder = DecoderStage(1, channels[:-1], channels[-1], batch_norm,
                                       top=len(channels))
            setattr(self, f"decoder{stage}", decoder)
        self.num_stages = len(blocks)
        # The reference's conv1_1_D: 3x3, 64 -> classes, no BN, no ReLU: the soft-max's input.
        self.classifier = nn.Conv2d(blocks[0][-1], num_classes, kernel_size=3, padding=1)
        for m in [*(getattr(self, f"decoder{s}") for s in range(1, self.num_stages + 1)),
                  self.classifier]:
            for layer in m.modules():  # VGG16's (torchvision's) initialisation, decoder too
                if isinstance(layer, nn.Conv2d):
                    nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(layer.bias)

    def _forward(self, x: torch.Tensor, record: dict | None) -> torch.Tensor:
        check_image_batch(x, self.in_channels)
        # Encoder: VGG16's layers; each pool keeps its indices and the size it came from.
        indices, sizes, stage = [], [], 1
        for layer in self.encoder.features:
            if isinstance(layer, nn.MaxPool2d):
                sizes.append(x.shape[-2:])               # (H_i, W_i) before pool i
                x, idx = F.max_pool2d(x, kernel_size=2, stride=2, ceil_mode=True,
                                      return_indices=True)  # (N, C_i, ceil(H_i/2), ceil(W_i/2))
                indices.append(idx)
                if record is not None:
                    record[f"pool{stage}"], record[f"indices{stage}"] = x, idx
                stage += 1
            else:
                x = layer(x)
        # Decoder: unpool with the matching indices (sparse), then convolve (dense).
        for stage in range(self.num_stages, 0, -1):
            x = max_unpool(x, indices[stage - 1], sizes[stage - 1])  # (N, C_i, H_i, W_i)
            if record is not None:
                record[f"unpool{stage}"] = x
            x = getattr(self, f"decoder{stage}")(x)
            if record is not None:
                record[f"decoder{stage}"] = x
        return self.classifier(x)                        # (N, num_classes, H, W)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self._forward(x, None)}

    def forward_intermediates(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything the lesson looks at, in the order it is computed.

        ``pool{i}`` and ``indices{i}`` (encoder, i = 1..5), then ``unpool{i}`` (the sparse
        map after max-unpooling) and ``decoder{i}`` (after the stage's convs), i = 5..1, and
        ``out``. (``forward`` keeps none of this, as an inference run should not.)
        """
        record: dict[str, torch.Tensor] = OrderedDict()
        record["out"] = self._forward(x, record)
        return record


# --------------------------------------------------------------------------------------------
# 4. Factory and pretrained encoder
# --------------------------------------------------------------------------------------------


def segnet(num_classes: int = 21, *, pretrained_backbone: bool | str = False,
           **kwargs) -> SegNet:
    """SegNet (VGG16-BN encoder): 29,449,355 parameters at full width with 11 classes.

    ``kwargs``: ``width``, ``batch_norm``, ``in_channels`` (see :class:`SegNet`).
    ``pretrained_backbone=True`` loads torchvision's ImageNet VGG16-BN weights into the encoder
    (the paper's initialisation, Sec. 4.1); it needs the internet and raises
    :class:`~segedu.core.weights.WeightsUnavailableError` when the download fails.
    ``pretrained_backbone="shapes"`` loads the shipped width-1/8 VGG16-BN instead (the CPU
    profile's stand-in, offline: :mod:`segedu.backbones.pretrained`).
    """
    model = SegNet(num_classes, **kwargs)
    if pretrained_backbone:
        load_pretrained_encoder(model, pretrained_backbone)
    return model


def load_pretrained_encoder(model: SegNet, source: bool | str = True) -> SegNet:
    """Load a pretrained ``vgg16_bn`` (or ``vgg16`` without BN) into the encoder: torchvision's
    ImageNet weights (``source=True``) or the shipped shape-pretrained ones (``"shapes"``).

    The encoder's keys are torchvision's ``features.*``, so the load is strict; the decoder and
    classifier keep their initialisation.
    """
    if model.in_channels != 3:
        raise ValueError(f"Pretrained weights expect 3 input channels; this SegNet has "
                         f"in_channels={model.in_channels}.")
    batch_norm = any(isinstance(m, nn.BatchNorm2d) for m in model.encoder.modules())
    load_backbone_weights(model.encoder, "vgg16_bn" if batch_norm else "vgg16", source)
    return model

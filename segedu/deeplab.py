"""Chapter 5 — DeepLab v1, v2, v3 and v3+ (Chen, Papandreou, Kokkinos, Murphy, Yuille et al.).

Read this next to the four papers. One chapter, four papers and a CRF: that is why this module
is longer than the others (about 650 lines); each section below stands on its own. The module
builds, in order:

1. **Atrous convolution** (v1, ICLR 2015, Sec. 3.1; v2, TPAMI 2017, Sec. 3.1). A 3x3 kernel
   at rate ``r`` reads 9 pixels spread ``r`` apart: it *is* an ordinary convolution with a
   sparse (2r+1)x(2r+1) kernel that is zero between the taps (:func:`dilate_kernel`). The field
   of view grows, the number of weights and multiplications does not. Trading a layer's stride
   for dilation keeps a feature map large (output stride 8 or 16 instead of 32) without
   changing the pretrained weights.
2. **DeepLab v1, "DeepLab-LargeFOV"** (ICLR 2015, Sec. 3.1 and 4.1): VGG16 whose pool4 and
   pool5 keep the resolution (3x3, stride 1), conv5 dilated by 2, fc6 a 3x3 conv at rate 12
   with 1024 channels, fc7 1x1 1024, fc8 the classes. Output stride 8, bilinear upsampling.
3. **DeepLab v2, ASPP** (TPAMI 2017, Sec. 3.2, Fig. 4 and 7, "ASPP-L"): four parallel 3x3
   convs at rates 6, 12, 18, 24 on the last ResNet-101 map, each producing class scores,
   **summed** (:class:`ASPPv2`).
4. **DeepLab v3** (arXiv 2017, Sec. 3.3): ASPP with BatchNorm — a 1x1 conv, three 3x3 atrous
   convs and **image pooling** (global average pool -> 1x1 conv -> upsample), concatenated and
   projected by a 1x1 conv (:class:`ASPP`, with torchvision's module names so the state_dict
   matches). The rates follow the output stride (:func:`aspp_rates`); **multi-grid**
   (Sec. 3.2) sets the rates of the three 3x3 convs in ResNet's layer4 (:func:`apply_multi_grid`).
5. **DeepLab v3+** (ECCV 2018, Sec. 3.1 and Fig. 2): a decoder — the ASPP output, upsampled to
   the stride-4 low-level features projected to 48 channels, concatenated, two 3x3 convs
   (:class:`DeepLabV3PlusDecoder`).
6. **The fully connected CRF** of v1/v2 (Sec. 4 / Sec. 3.3) as post-processing, computed densely
   for small images (:func:`dense_crf`).

Every network is a :class:`DeepLab` (a :class:`segedu.core.model.SegmentationModel`: keys
``backbone.*``, ``classifier.*``, ``aux_classifier.*`` like torchvision), built by the
factories at the end. :func:`deeplabv3_resnet50` is torchvision's ``deeplabv3_resnet50``
(strict state_dict load, equal outputs); :func:`deeplabv3_from_backbone` builds v3 or v3+ on
any backbone with ``forward_features`` and ``feature_channels``.

**Where we differ from the papers, and why** (each also said where it happens):

* v1: pool1-3 are 3x3 max-pools with stride 2 and padding 1, as in the reference prototxt
  (whose Caffe pooling rounds up; ours rounds down, which gives ceil(n/2) cells); fc6/fc7
  start random — the paper initialises them by subsampling VGG16's fc weights, which we do
  not reproduce. No CRF inside the network: :func:`dense_crf` is a separate step.
* v2/v3 ResNets dilate as torchvision does (the first block of a dilated layer keeps the
  previous rate); multi-grid overrides layer4's rates as the v3 paper says.
* v3's head is torchvision's ``DeepLabHead``: after the ASPP it has a 3x3 conv (256) + BN + ReLU
  before the 1x1 classifier; the paper goes from the projection straight to the classifier.
* Image pooling with batch size 1 in training: see :func:`image_pooling`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import VGG16, mobilenet_v3_large, resnet_by_name, xception65
from .backbones.pretrained import load_backbone_weights
from .core.model import SegmentationModel, resize_to, scaled
from .core.weights import load_torchvision_weights
from .fcn import FCNHead

__all__ = [
    "dilate_kernel",
    "LargeFOVHead",
    "ASPPv2",
    "ASPPConv",
    "image_pooling",
    "ASPPPooling",
    "ASPP",
    "DeepLabHead",
    "aspp_rates",
    "apply_multi_grid",
    "DeepLabV3PlusDecoder",
    "DeepLabV3PlusHead",
    "DeepLab",
    "deeplabv1",
    "deeplabv2",
    "deeplabv3",
    "deeplabv3plus",
    "deeplabv3_resnet50",
    "deeplabv3_mobilenet_v3_large",
    "deeplabv3_from_backbone",
    "dense_crf",
]

# --------------------------------------------------------------------------------------------
# 1. Atrous convolution (v1 Sec. 3.1, v2 Sec. 3.1)
# --------------------------------------------------------------------------------------------


def dilate_kernel(weight: torch.Tensor, rate: int) -> torch.Tensor:
    """The dense kernel that a convolution at ``dilation=rate`` actually applies.

    ``weight`` is a conv weight (out, in, k, k); the result is (out, in, K, K) with
    ``K = rate * (k - 1) + 1`` (:func:`segedu.core.sizes.effective_kernel_size`): the k*k taps
    sit ``rate`` apart and everything between them is zero ("holes", *trous*). Hence
    ``F.conv2d(x, w, dilation=r, padding=p) == F.conv2d(x, dilate_kernel(w, r), padding=p)``.
    """
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a conv weight (out, in, kH, kW), got {got}.")
    if int(rate) != rate or rate < 1:
        raise ValueError(f"rate must be a positive integer, got {rate!r}.")
    out_c, in_c, kh, kw = weight.shape
    sparse = weight.new_zeros(out_c, in_c, rate * (kh - 1) + 1, rate * (kw - 1) + 1)
    sparse[..., ::rate, ::rate] = weight  # taps `rate` apart, zeros in between
    return sparse


# --------------------------------------------------------------------------------------------
# 2. DeepLab v1: VGG16 with atrous convolution and the LargeFOV head (ICLR 2015)
# --------------------------------------------------------------------------------------------


class LargeFOVHead(nn.Sequential):
    """fc6 (3x3, rate 12, 1024) -> fc7 (1x1, 1024) -> fc8 (1x1, classes): "DeepLab-LargeFOV".

    v1 Sec. 4.1: the 4096-wide 7x7 fc6 of VGG16 becomes a 1024-wide 3x3 conv at rate 12 — a
    field of view of 25 stride-8 cells (200 pixels) for a fraction of the parameters.
    """

    def __init__(self, in_channels: int, num_classes: int, *, channels: int = 1024,
                 rate: int = 12, dropout: float = 0.5) -> None:
        super().__init__(OrderedDict([
            ("fc6", nn.Conv2d(in_channels, channels, 3, padding=rate, dilation=rate)),
            ("relu6", nn.ReLU(inplace=True)),
            ("drop6", nn.Dropout(dropout)),
            ("fc7", nn.Conv2d(channels, channels, 1)),
            ("relu7", nn.ReLU(inplace=True)),
            ("drop7", nn.Dropout(dropout)),
            ("fc8", nn.Conv2d(channels, num_classes, 1)),
        ]))


def _atrous_vgg16(*, width: float, batch_norm: bool, in_channels: int) -> VGG16:
    """VGG16 at output stride 8 (v1 Sec. 3.1), made from a built ``backbones.VGG16``.

    Pools carry no weights, so swapping them keeps the state_dict (ImageNet weights load):
    pool1-3 become 3x3/stride 2/padding 1 as in the reference prototxt (rounding down here, as
    PyTorch does: ceil(n/2) cells, so odd sizes lose no row), pool4 and pool5 3x3/stride
    1/padding 1 (they keep the size), and conv5_x, which now
    sees a map 2x finer than it was trained on, is dilated by 2 to keep its field of view.
    """
    vgg = VGG16(width=width, batch_norm=batch_norm, include_top=False, in_channels=in_channels)
    pools = [i for i, m in enumerate(vgg.features) if isinstance(m, nn.MaxPool2d)]
    for block, index in enumerate(pools, start=1):
        stride = 2 if block <= 3 else 1
        vgg.features[index] = nn.MaxPool2d(kernel_size=3, stride=stride, padding=1)
    for m in list(vgg.features)[pools[3] + 1: pools[4]]:  # conv5_1..conv5_3
        if isinstance(m, nn.Conv2d):
            m.dilation, m.padding = (2, 2), (2, 2)
    return vgg


# --------------------------------------------------------------------------------------------
# 3. DeepLab v2: atrous spatial pyramid pooling, branches summed (TPAMI 2017, Sec. 3.2)
# --------------------------------------------------------------------------------------------


class ASPPv2(nn.Module):
    """v2's ASPP (Fig. 4, "ASPP-L"): parallel 3x3 convs at rates 6/12/18/24 to class scores, summed.

    As in the released ResNet-101 model (``fc1_voc12_c0..c3``), each branch is a single 3x3
    conv with bias from the backbone's map straight to the classes; the VGG version of Fig. 7
    has fc6-fc7-fc8 per branch. Summing scores means each branch votes per class; v3 instead
    concatenates *features* and learns how to combine them.
    """

    def __init__(self, in_channels: int, num_classes: int,
                 rates: Sequence[int] = (6, 12, 18, 24)) -> None:
        super().__init__()
        self.rates = tuple(rates)
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r) for r in self.rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)                 # (N, C, h, w): padding = rate keeps h, w
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


# --------------------------------------------------------------------------------------------
# 4. DeepLab v3: ASPP with BatchNorm and image pooling (arXiv 2017, Sec. 3.3)
# --------------------------------------------------------------------------------------------


class ASPPConv(nn.Sequential):
    """One atrous branch: 3x3 conv at ``dilation`` (padding = dilation keeps the size), BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation,
                      bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )


def image_pooling(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """Image-level features (v3 Sec. 3.3): global average pool -> 1x1 ``conv`` -> ``bn`` -> ReLU,
    then bilinear upsampling to ``x``'s size — the same vector at every position.

    It gives every position the context of the whole image — what a 3x3 kernel at a rate as
    large as the map cannot (its outer taps fall into the padding, Fig. 4).

    **Batch size 1 in training.** The pooled map is (N, C, 1, 1): with N = 1 BatchNorm sees one
    value per channel, and batch statistics do not exist (PyTorch raises "Expected more than 1
    value per channel"; normalising one value by its own mean would give 0, and the branch
    would carry nothing). torchvision crashes there. Here, and only in that case, ``bn``
    normalises with its running statistics, as in eval mode, and does not update them; its
    weight and bias still learn. Every other case is plain ``bn(y)``.
    """
    y = conv(F.adaptive_avg_pool2d(x, 1))         # (N, out, 1, 1)
    if bn.training and y.shape[0] == 1:           # one value per channel: running statistics
        y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                         training=False, eps=bn.eps)
    else:
        y = bn(y)
    return resize_to(F.relu(y), x.shape[-2:])     # (N, out, H, W)


class ASPPPooling(nn.Module):
    """The image-pooling branch as a module: it holds the weights :func:`image_pooling` uses.

    torchvision's branch is ``Sequential(pool, conv, BN, ReLU)``, so its weights are keyed
    ``1.*`` (the conv) and ``2.*`` (the BN). The pool and the ReLU hold no weights, so this module
    registers only the conv and the BN, under those same keys: the state_dicts match key for
    key, and the printed module shows exactly what ``forward`` runs.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.add_module("1", nn.Conv2d(in_channels, out_channels, 1, bias=False))
        self.add_module("2", nn.BatchNorm2d(out_channels))

    @property
    def conv(self) -> nn.Conv2d:
        return self._modules["1"]

    @property
    def bn(self) -> nn.BatchNorm2d:
        return self._modules["2"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return image_pooling(x, self.conv, self.bn)       # (N, out, H, W)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling of DeepLab v3 (Sec. 3.3, Fig. 5).

    ``convs``: a 1x1 conv + BN + ReLU, one :class:`ASPPConv` per rate, and :class:`ASPPPooling`
    — ``len(atrous_rates) + 2`` branches of ``out_channels`` each, concatenated; ``project``: a
    1x1 conv back to ``out_channels`` + BN + ReLU + Dropout(0.5). The signature, the module
    names and so the state_dict are torchvision's: ``ASPP(in_channels, atrous_rates,
    out_channels=256)``.
    """

    def __init__(self, in_channels: int, atrous_rates: Sequence[int],
                 out_channels: int = 256) -> None:
        super().__init__()
        if (isinstance(atrous_rates, (str, bytes)) or not isinstance(atrous_rates, Sequence)
                or not atrous_rates or not all(isinstance(r, int) and not isinstance(r, bool)
                                               and r >= 1 for r in atrous_rates)):
            raise ValueError(f"atrous_rates must be a non-empty sequence of positive ints such as "
                             f"(6, 12, 18), got {atrous_rates!r}; the signature is "
                             "ASPP(in_channels, atrous_rates, out_channels=256), as torchvision's.")
        self.rates = tuple(atrous_rates)
        if isinstance(out_channels, bool) or not isinstance(out_channels, int) or out_channels < 1:
            raise ValueError(f"out_channels must be a positive int, got {out_channels!r}; "
                             "the signature is ASPP(in_channels, atrous_rates, out_channels=256), "
                             "as torchvision's.")
        modules: list[nn.Module] = [nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )]
        modules += [ASPPConv(in_channels, out_channels, rate) for rate in self.rates]
        modules.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(modules)      # registered: trained, saved, moved by .to()
        self.project = nn.Sequential(
            nn.Conv2d(len(self.convs) * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Dropout(0.5),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [conv(x) for conv in self.convs]   # each (N, out, h, w)
        x = torch.cat(branches, dim=1)                # (N, (len(rates) + 2) * out, h, w)
        return self.project(x)                        # (N, out, h, w)


class DeepLabHead(nn.Sequential):
    """torchvision's DeepLabHead: ASPP -> 3x3 conv (256) + BN + ReLU -> 1x1 conv to classes.

    The 3x3 conv is torchvision's addition; the v3 paper goes from the ASPP projection straight
    to the 1x1 classifier. Kept so that torchvision's trained weights load.
    """

    def __init__(self, in_channels: int, num_classes: int,
                 atrous_rates: Sequence[int] = (12, 24, 36), channels: int = 256) -> None:
        super().__init__(
            ASPP(in_channels, atrous_rates, channels),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, num_classes, 1),
        )


def aspp_rates(output_stride: int) -> tuple[int, int, int]:
    """ASPP rates for an output stride (v3 Sec. 3.3): (6, 12, 18) at 16, (12, 24, 36) at 8.

    The rates are in *feature-map cells*: halving the stride doubles the map, so the same field
    of view in pixels needs twice the rate.
    """
    if output_stride == 16:
        return (6, 12, 18)
    if output_stride == 8:
        return (12, 24, 36)
    raise ValueError(f"output_stride must be 8 or 16 (the strides DeepLab v3 trains and "
                     f"evaluates with), got {output_stride!r}.")


def apply_multi_grid(layer: nn.Sequential, rate: int, grid: Sequence[int]) -> nn.Sequential:
    """Multi-grid (v3 Sec. 3.2): block ``i`` of ``layer`` gets rate ``rate * grid[i]``.

    "The final atrous rate for the convolutional layer is equal to the multiplication of the
    unit rate and the corresponding rate": with output stride 16 layer4 runs at rate 2, and
    grid (1, 2, 4) gives its three 3x3 convs rates 2, 4, 8. The 3x3 conv of each bottleneck
    (``conv2``) is changed in place (padding = rate keeps the size); weights are untouched.
    """
    blocks = list(layer)
    if len(grid) != len(blocks):
        raise ValueError(f"multi_grid needs one unit rate per block: this layer has "
                         f"{len(blocks)} blocks, got {tuple(grid)}.")
    for block, unit in zip(blocks, grid, strict=True):
        r = int(rate * unit)
        block.conv2.dilation, block.conv2.padding = (r, r), (r, r)
        block.dilation = r
    return layer


# --------------------------------------------------------------------------------------------
# 5. DeepLab v3+: the decoder (ECCV 2018, Sec. 3.1, Fig. 2)
# --------------------------------------------------------------------------------------------


class DeepLabV3PlusDecoder(nn.Module):
    """Fig. 2's decoder: upsample the encoder output to the low-level map, concat, two 3x3 convs.

    ``project``: 1x1 conv of the low-level (stride-4) features to 48 channels + BN + ReLU
    (Sec. 4.1: few channels, so they do not outweigh the rich encoder features). ``fuse``: two
    3x3 convs to 256 + BN + ReLU. The encoder output is resized to the low-level map's *exact*
    size — "x4" is only right when the sizes divide (an odd input gives 17 cells at stride 4
    and 5 at stride 16, not 20).
    """

    def __init__(self, encoder_channels: int, low_level_channels: int, *,
                 low_level_out: int = 48, channels: int = 256) -> None:
        super().__init__()
        self.project = nn.Sequential(
            nn.Conv2d(low_level_channels, low_level_out, 1, bias=False),
            nn.BatchNorm2d(low_level_out),
            nn.ReLU(),
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(encoder_channels + low_level_out, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        )

    def forward(self, encoder: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        low = self.project(low_level)                         # (N, 48, H/4, W/4)
        high = resize_to(encoder, low.shape[-2:])             # (N, 256, H/4, W/4)
        return self.fuse(torch.cat([high, low], dim=1))       # (N, 304 -> 256, H/4, W/4)


class DeepLabV3PlusHead(nn.Module):
    """The v3+ head: ``aspp`` (the v3 encoder's ASPP), ``decoder``, and a 1x1 ``classifier``."""

    def __init__(self, in_channels: int, low_level_channels: int, num_classes: int,
                 rates: Sequence[int] = (6, 12, 18), *, channels: int = 256,
                 low_level_out: int = 48) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, rates, channels)
        self.decoder = DeepLabV3PlusDecoder(channels, low_level_channels,
                                            low_level_out=low_level_out, channels=channels)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.decoder(self.aspp(x), low_level))  # (N, C, H/4, W/4)


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


class DeepLab(SegmentationModel):
    """A DeepLab: backbone + head (+ aux head), upsampled to the input (torchvision's layout).

    Adds to :class:`segedu.core.model.SegmentationModel`: ``output_stride`` (for reporting),
    ``low_level_layer`` (v3+: the head is called as ``head(features[out], features[low])``),
    and a minimum input size of ``2 * output_stride`` pixels, which gives a deepest map of at
    least 2x2 cells. (At ``output_stride`` pixels or fewer it is a single cell: BatchNorm
    cannot train on it with batch 1, and every atrous tap but the centre falls into the
    padding. The rule is a round number slightly stricter than that.)
    """

    def __init__(self, backbone: nn.Module, classifier: nn.Module,
                 aux_classifier: nn.Module | None = None, *, num_classes: int,
                 output_stride: int, out_layer: str = "layer4", aux_layer: str = "layer3",
                 low_level_layer: str | None = None, in_channels: int = 3) -> None:
        super().__init__(backbone, classifier, aux_classifier, num_classes=num_classes,
                         out_layer=out_layer, aux_layer=aux_layer, in_channels=in_channels)
        self.output_stride = output_stride
        self.low_level_layer = low_level_layer
        self.min_input_size = 2 * output_stride

    def classifier_inputs(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The deepest map, and for v3+ the stride-4 ``low_level_layer`` map for the decoder."""
        if self.low_level_layer is None:
            return (features[self.out_layer],)
        return features[self.out_layer], features[self.low_level_layer]


# --------------------------------------------------------------------------------------------
# Factories
# --------------------------------------------------------------------------------------------


def deeplabv1(num_classes: int = 21, *, width: float = 1.0, batch_norm: bool = False,
              dropout: float = 0.5, in_channels: int = 3,
              pretrained_backbone: bool | str = False) -> DeepLab:
    """DeepLab v1 "LargeFOV" (ICLR 2015): atrous VGG16 at output stride 8 + the LargeFOV head.

    71.6 mIoU on VOC2012 test with the dense CRF (paper). ``batch_norm`` gives VGG16-BN (the
    CPU profile's choice; the paper has none). ``pretrained_backbone`` loads ImageNet VGG16
    into the conv layers; fc6/fc7 start random (the paper subsamples VGG's fc weights).
    """
    backbone = _atrous_vgg16(width=width, batch_norm=batch_norm, in_channels=in_channels)
    head = LargeFOVHead(backbone.feature_channels["pool5"], num_classes,
                        channels=scaled(1024, width), dropout=dropout)
    model = DeepLab(backbone, head, num_classes=num_classes, output_stride=8,
                    out_layer="pool5", in_channels=in_channels)
    if pretrained_backbone:
        load_backbone_weights(backbone, "vgg16_bn" if batch_norm else "vgg16",
                              pretrained_backbone)
    return model


def _dilated_resnet(name: str, output_stride: int, multi_grid: Sequence[int] | None,
                    width: float, pretrained: bool | str) -> nn.Module:
    """A ResNet at output stride 8 or 16, optionally with multi-grid rates in layer4."""
    aspp_rates(output_stride)  # ValueError for anything but 8 and 16
    dilate = [False, True, True] if output_stride == 8 else [False, False, True]
    backbone = resnet_by_name(name, replace_stride_with_dilation=dilate, include_top=False,
                              width=width)
    if pretrained:  # before multi-grid: dilation changes no weight
        load_backbone_weights(backbone, name, pretrained)
    if multi_grid is not None:
        apply_multi_grid(backbone.layer4, 32 // output_stride, multi_grid)  # layer4 rate 2 or 4
    return backbone


def deeplabv2(num_classes: int = 21, *, backbone: str = "resnet101", width: float = 1.0,
              rates: Sequence[int] = (6, 12, 18, 24),
              pretrained_backbone: bool | str = False) -> DeepLab:
    """DeepLab v2 (TPAMI 2017): dilated ResNet-101 at output stride 8 + :class:`ASPPv2`.

    79.7 mIoU on VOC2012 test with COCO pretraining, multi-scale inputs and the CRF (paper).
    """
    net = _dilated_resnet(backbone, 8, None, width, pretrained_backbone)
    head = ASPPv2(net.feature_channels["layer4"], num_classes, rates)
    return DeepLab(net, head, num_classes=num_classes, output_stride=8)


def deeplabv3_from_backbone(
    backbone: nn.Module,
    num_classes: int,
    *,
    output_stride: int,
    out_layer: str,
    aux_layer: str | None = None,
    low_level_layer: str | None = None,
    rates: Sequence[int] | None = None,
    channels: int = 256,
    low_level_out: int = 48,
) -> DeepLab:
    """DeepLab v3 (``low_level_layer=None``) or v3+ on any backbone.

    ``backbone`` needs ``forward_features(x) -> dict[str, Tensor]`` and ``feature_channels``;
    ``out_layer`` names the map the ASPP reads (at ``output_stride``), ``aux_layer`` adds
    torchvision's FCN aux head there, ``low_level_layer`` (a stride-4 map) makes it v3+.
    ``rates`` default to :func:`aspp_rates` of the output stride. For example torchvision's
    ``deeplabv3_mobilenet_v3_large`` is ``output_stride=16, out_layer=<the 960-channel map>,
    aux_layer=<the 40-channel map>, rates=(12, 24, 36)``.
    """
    rates = aspp_rates(output_stride) if rates is None else tuple(rates)
    ch = backbone.feature_channels
    if low_level_layer is None:
        head: nn.Module = DeepLabHead(ch[out_layer], num_classes, rates, channels=channels)
    else:
        head = DeepLabV3PlusHead(ch[out_layer], ch[low_level_layer], num_classes, rates,
                                 channels=channels, low_level_out=low_level_out)
    aux_head = FCNHead(ch[aux_layer], num_classes) if aux_layer is not None else None
    return DeepLab(backbone, head, aux_head, num_classes=num_classes,
                   output_stride=output_stride, out_layer=out_layer,
                   aux_layer=aux_layer or "layer3", low_level_layer=low_level_layer,
                   in_channels=getattr(backbone, "in_channels", 3))


def deeplabv3(num_classes: int = 21, *, backbone: str = "resnet101", output_stride: int = 16,
              multi_grid: Sequence[int] | None = (1, 2, 4), rates: Sequence[int] | None = None,
              aux: bool = False, width: float = 1.0,
              pretrained_backbone: bool | str = False) -> DeepLab:
    """DeepLab v3 (2017) on a dilated ResNet: ASPP with image pooling, multi-grid (1, 2, 4).

    ``output_stride`` 16 (rates 6/12/18, the paper's training setting) or 8 (12/24/36, its
    evaluation setting). ``rates`` overrides them (the paper's are for 513-pixel crops; a
    64-pixel image at stride 16 is a 4x4 map, where they see only their centre tap).
    ``multi_grid=None`` keeps torchvision's layer4 rates.
    """
    net = _dilated_resnet(backbone, output_stride, multi_grid, width, pretrained_backbone)
    return deeplabv3_from_backbone(net, num_classes, output_stride=output_stride,
                                   out_layer="layer4", aux_layer="layer3" if aux else None,
                                   rates=rates, channels=scaled(256, width))


def deeplabv3plus(num_classes: int = 21, *, backbone: str = "resnet101",
                  output_stride: int = 16, multi_grid: Sequence[int] | None = (1, 2, 4),
                  rates: Sequence[int] | None = None, aux: bool = False, width: float = 1.0,
                  pretrained_backbone: bool | str = False) -> DeepLab:
    """DeepLab v3+ (ECCV 2018): the v3 encoder + the decoder on a stride-4 low-level map.

    89.0 mIoU on VOC2012 test (Xception-65, COCO + JFT pretraining, output stride 8) and 82.1
    on Cityscapes test (paper). ``backbone``: ``"resnet50"``/``"resnet101"`` (low-level map
    layer1, options as in :func:`deeplabv3`) or ``"xception65"``, the paper's aligned
    Xception-65 (:class:`segedu.backbones.Xception`; low-level map: entry block 2's second
    separable conv, as in the reference code; ``multi_grid`` does not apply; no ImageNet
    weights exist in torchvision). With either backbone the ASPP and the decoder use plain
    3x3 convolutions; the paper makes them depthwise-separable for Xception.
    """
    if backbone == "xception65":
        aspp_rates(output_stride)  # ValueError for anything but 8 and 16
        net = xception65(output_stride=output_stride, include_top=False, width=width,
                         pretrained=pretrained_backbone)  # pretrained: a clear ValueError
        out_layer, aux_layer, low_level_layer = "out", "middle_flow", "low_level"
    else:
        net = _dilated_resnet(backbone, output_stride, multi_grid, width, pretrained_backbone)
        out_layer, aux_layer, low_level_layer = "layer4", "layer3", "layer1"
    return deeplabv3_from_backbone(net, num_classes, output_stride=output_stride,
                                   out_layer=out_layer, aux_layer=aux_layer if aux else None,
                                   low_level_layer=low_level_layer, rates=rates,
                                   channels=scaled(256, width),
                                   low_level_out=scaled(48, width))


def deeplabv3_resnet50(num_classes: int = 21, *, aux: bool = False, width: float = 1.0,
                       pretrained: bool = False,
                       pretrained_backbone: bool | str = False) -> DeepLab:
    """torchvision's ``deeplabv3_resnet50``: ResNet-50 at output stride 8, rates 12/24/36.

    Same state_dict as torchvision's (39,638,869 parameters, 42,004,074 with ``aux``), no
    multi-grid. ``pretrained=True`` loads torchvision's COCO-trained weights (21 VOC classes;
    66.4 mIoU on COCO val2017 as published) — needs the internet.
    """
    net = _dilated_resnet("resnet50", 8, None, width, False if pretrained else pretrained_backbone)
    model = deeplabv3_from_backbone(net, num_classes, output_stride=8, out_layer="layer4",
                                    aux_layer="layer3" if aux else None, rates=(12, 24, 36),
                                    channels=scaled(256, width))
    if pretrained:
        load_torchvision_weights(model, "deeplabv3_resnet50")
    return model


def deeplabv3_mobilenet_v3_large(num_classes: int = 21, *, aux: bool = False,
                                 width: float = 1.0, pretrained: bool = False,
                                 pretrained_backbone: bool | str = False) -> DeepLab:
    """torchvision's ``deeplabv3_mobilenet_v3_large``: the dilated MobileNetV3-Large (output
    stride 16) with :class:`DeepLabHead` (rates 12/24/36) on its last map ``C5`` (960
    channels) and, with ``aux``, the FCN head on ``C2`` (40 channels, stride 8).

    Same state_dict and outputs as torchvision's (11,025,477 parameters, 11,029,328 with
    ``aux``). ``pretrained=True`` loads torchvision's COCO-trained weights (21 VOC classes;
    60.3 mIoU on COCO val2017 as published) — needs the internet. The deployment chapter's
    backbone: a quarter of deeplabv3_resnet50's parameters.
    """
    net = mobilenet_v3_large(dilated=True, include_top=False, width=width)
    if pretrained_backbone and not pretrained:
        load_backbone_weights(net, "mobilenet_v3_large", pretrained_backbone)
    model = deeplabv3_from_backbone(net.features, num_classes, output_stride=16,
                                    out_layer="C5", aux_layer="C2" if aux else None,
                                    rates=(12, 24, 36), channels=scaled(256, width))
    if pretrained:
        load_torchvision_weights(model, "deeplabv3_mobilenet_v3_large")
    return model


# --------------------------------------------------------------------------------------------
# Post-processing: the fully connected CRF of v1 (Sec. 4) and v2 (Sec. 3.3)
# --------------------------------------------------------------------------------------------


def dense_crf(logits: torch.Tensor, image: torch.Tensor, *, iterations: int = 5,
              bilateral_weight: float = 4.0, theta_alpha: float = 8.0, theta_beta: float = 13.0,
              gaussian_weight: float = 3.0, theta_gamma: float = 1.0,
              max_pixels: int = 64 * 64) -> torch.Tensor:
    """Mean-field inference in a fully connected CRF (Kraehenbuehl & Koltun, NIPS 2011), densely.

    ``logits`` (C, H, W) are the network's scores (the unary term is ``-log softmax``);
    ``image`` (3, H, W) holds colours in [0, 255]. The pairwise term is a Potts model with two
    Gaussian kernels over every pair of pixels (v2 eq. 3): the *bilateral* kernel
    ``w1 * exp(-|p_i - p_j|^2 / 2 theta_alpha^2 - |I_i - I_j|^2 / 2 theta_beta^2)`` (nearby
    pixels of similar colour should agree) and the *smoothness* kernel
    ``w2 * exp(-|p_i - p_j|^2 / 2 theta_gamma^2)``. With Potts compatibility one mean-field
    step is ``Q = softmax(logits + sum_m w_m K_m Q)`` (no self-message: K's diagonal is 0).

    The kernels are (H*W)^2 matrices, so this is for small images only (``max_pixels``,
    64x64 by default, 2 x 67 MB); the papers use the permutohedral lattice to filter in linear
    time. Returns the (C, H, W) marginals; ``argmax(0)`` is the refined label map.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
        raise ValueError("logits must be one image's scores (C, H, W), got "
                         f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else logits}.")
    c, h, w = logits.shape
    if not isinstance(image, torch.Tensor) or tuple(image.shape) != (3, h, w):
        raise ValueError(f"image must be (3, {h}, {w}) colours in [0, 255], got "
                         f"{tuple(image.shape) if isinstance(image, torch.Tensor) else image}.")
    if h * w > max_pixels:
        raise ValueError(f"dense_crf computes all (H*W)^2 pixel pairs; {h}x{w} is more than "
                         f"max_pixels={max_pixels}. Downsample the image, or raise max_pixels "
                         "if you have the memory (4 * (H*W)^2 bytes per kernel).")
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    positions = torch.stack([ys.flatten(), xs.flatten()], dim=1)        # (HW, 2)
    colours = image.float().reshape(3, -1).t()                          # (HW, 3)
    d_pos = torch.cdist(positions, positions).square()                  # (HW, HW)
    d_col = torch.cdist(colours, colours).square()
    kernel = (bilateral_weight * torch.exp(-d_pos / (2 * theta_alpha ** 2)
                                           - d_col / (2 * theta_beta ** 2))
              + gaussian_weight * torch.exp(-d_pos / (2 * theta_gamma ** 2)))
    kernel.fill_diagonal_(0)                                            # no message to oneself
    unary = logits.float().reshape(c, -1)                               # (C, HW)
    q = unary.softmax(0)
    for _ in range(iterations):
        q = (unary + q @ kernel).softmax(0)                             # kernel is symmetric
    return q.reshape(c, h, w)


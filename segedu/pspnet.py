"""Chapter 4 — PSPNet, the Pyramid Scene Parsing Network (Zhao, Shi, Qi, Wang & Jia, CVPR 2017).

Read this next to the paper's Sec. 3 and Fig. 3. FCN-style networks label a pixel from what
their (effective) receptive field sees, and the paper's Fig. 2 shows what goes wrong: a boat on
a river is called a "car" because it *looks* like one; the river around it, which says "boat",
is too far away. PSPNet adds **global context**:

1. A **dilated ResNet** (output stride 8; :func:`segedu.backbones.resnet50` with
   ``replace_stride_with_dilation=[False, True, True]``) gives a 2048-channel map at 1/8 of the
   input (Sec. 3.2, "we use a pretrained ResNet model with the dilated network strategy").
2. The **pyramid pooling module** (Sec. 3.2, Fig. 3 (c)) average-pools that map to 1x1, 2x2,
   3x3 and 6x6 bins ("pyramid levels"), reduces each to ``in / len(bins)`` channels with a 1x1
   conv (2048 -> 512), upsamples each back to the map's size (bilinear) and concatenates them
   with the map itself (2048 + 4 x 512 = 4096 channels): :func:`pyramid_pool`,
   :class:`PyramidPoolingModule`. The 1x1 bin is the whole image's average: every pixel now
   sees a summary of the entire scene.
3. A **head** turns that into class scores (:class:`PSPHead`): 3x3 conv to 512 + BN + ReLU +
   dropout 0.1 + 1x1 classifier, as in the reference implementation (hszhao/semseg).
4. **Deep supervision** (Sec. 3.3, Fig. 4): an auxiliary FCN head on layer3 (1024 -> 256 ->
   classes) adds a second loss, weighted 0.4 (:func:`segedu.train.segmentation_loss`'s default).
   It only helps training; at test time its output is ignored.

Module names. The reference calls the pyramid ``ppm`` with stages in ``features``, the head
``cls`` and the auxiliary head ``aux``; here the network is a
:class:`segedu.core.model.SegmentationModel` like torchvision's segmentation models, so the
state_dict reads ``backbone.*`` (torchvision's ResNet keys: ImageNet weights load strictly),
``classifier.ppm.stages.{i}.*`` (the pyramid), ``classifier.conv/bn/cls.*`` (the head) and
``aux_classifier.*`` (:class:`segedu.fcn.FCNHead`, as in torchvision's ``fcn_resnet50``).

**Where we differ from the paper and the reference, and why.**

* *The 1x1 bin has no BatchNorm* (a 1x1 conv with a bias, then ReLU). The paper puts BN after
  every bin's 1x1 conv. With batch size N the 1x1 bin's BN sees N values per channel: at N = 1
  training fails ("Expected more than 1 value per channel when training", the classic PSPNet
  crash), and at N = 2 every channel is normalised to exactly -1 or +1, whatever the scene.
  Normalising a single global vector per image over a tiny batch is the bug, so we drop the BN
  where it cannot work (as segmentation_models_pytorch's PSPNet does) rather than hide it
  (GroupNorm everywhere changes the other layers too; a frozen BN silently never learns its
  statistics). The other bins see N * b * b >= 4 values and keep BN. ``global_norm=True``
  restores the reference's BN on the 1x1 bin (for loading reference weights, and for the
  notebook to show the crash); it then needs batch size >= 2 in training.
* *Upsampling* uses :func:`segedu.core.model.resize_to` (``align_corners=False``, as everywhere in
  the course and in torchvision); the reference uses ``align_corners=True``.
* *Bins larger than the map.* Adaptive pooling divides n pixels into b cells with
  ``start = floor(i n / b)`` and ``end = ceil((i + 1) n / b)``
  (:func:`segedu.core.sizes.adaptive_pool_regions`). When b does not divide n, neighbouring cells
  overlap; when b > n (a 6-bin on a 4x4 map) cells repeat pixels. The pyramid then holds less
  information, but it is well defined and works; the network needs an input of at least
  ``min_input_size`` (9) pixels, so the stride-8 map has 2x2 pixels (below that all four bins
  are the same single vector, and the backbone's BatchNorm cannot train at batch size 1).
* *ONNX.* ``torch.onnx.export(..., dynamo=False)`` (the legacy TorchScript exporter) fails on
  ``adaptive_avg_pool2d`` whose output size does not divide the input size: the map of a
  100x75 input is 13x10, and a 3-bin or 6-bin does not divide it. The default exporter
  (``dynamo=True``) decomposes adaptive pooling and exports any size (tested against
  onnxruntime).

Parameters (full width, 21 classes, counted in the tests): PSPNet-ResNet50 46,592,085 without
and 48,957,290 with the auxiliary head (ResNet-50 23.5M, the pyramid 4.2M, the head's 3x3 conv
18.9M); PSPNet-ResNet101 65,584,213 / 67,949,418. The reference's BN on the 1x1 bin
(``global_norm=True``) would add 512 (1,024 BN parameters instead of a 512 bias).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import resnet_by_name
from .backbones.pretrained import load_backbone_weights
from .core.model import SegmentationModel, resize_to
from .core.sizes import resnet_feature_size
from .core.validation import check_image_batch, check_num_classes
from .fcn import FCNHead

__all__ = [
    "PAPER_BINS",
    "pyramid_pool",
    "PyramidPoolingModule",
    "PSPHead",
    "PSPNet",
    "pspnet",
    "feature_map_size",
]

#: The paper's pyramid: 1x1, 2x2, 3x3 and 6x6 bins (Sec. 3.2).
PAPER_BINS = (1, 2, 3, 6)


# --------------------------------------------------------------------------------------------
# 1. Pyramid pooling (Sec. 3.2, Fig. 3 (c))
# --------------------------------------------------------------------------------------------


def pyramid_pool(x: torch.Tensor, bins: Sequence[int], stages: Sequence[nn.Module]) -> torch.Tensor:
    """The pyramid pooling forward pass: pool, reduce, upsample, concatenate.

    For each bin ``b`` and its stage: average-pool ``x`` to ``b x b`` cells
    (``F.adaptive_avg_pool2d``; cells overlap when ``b`` does not divide the map), apply the
    stage (the 1x1 conv that reduces the channels, and its norm and ReLU), and upsample
    bilinearly back to x's size. The result is ``[x, level_1, ..., level_k]`` concatenated on
    the channel axis, ``x`` first, as in Fig. 3 (c).

    Shapes: x (N, C, H, W) -> (N, C + sum of the stages' channels, H, W).
    """
    if len(bins) != len(stages):
        raise ValueError(f"one stage per bin: got {len(bins)} bins {tuple(bins)} and "
                         f"{len(stages)} stages.")
    size = x.shape[-2:]
    pyramid = [x]
    for b, stage in zip(bins, stages, strict=True):
        pooled = F.adaptive_avg_pool2d(x, b)          # (N, C, b, b)
        pyramid.append(resize_to(stage(pooled), size))  # (N, C/len(bins), H, W)
    return torch.cat(pyramid, dim=1)                   # (N, C + sum, H, W)


class PyramidPoolingModule(nn.Module):
    """PSPNet's pyramid pooling module (Sec. 3.2, Fig. 3 (c)).

    Args:
        in_channels: channels of the feature map (2048 for ResNet-50/101).
        bins: the pyramid levels; the paper uses 1, 2, 3 and 6.
        reduction_channels: channels of each level after its 1x1 conv; by default
            ``in_channels // len(bins)`` ("to maintain the weight of global feature", 2048 -> 512).
        global_norm: BatchNorm also after the 1x1 bin's conv, as the paper and the reference
            have it; training then fails with batch size 1 (see the module docstring). By
            default that level is a 1x1 conv with a bias and a ReLU.

    ``stages[i]`` is level i's ``Sequential(conv, bn, relu)`` (no ``bn`` for bin 1 unless
    ``global_norm``); the pooling itself has no parameters and happens in :func:`pyramid_pool`.
    ``out_channels = in_channels + len(bins) * reduction_channels`` (4096 in the paper).
    """

    def __init__(
        self,
        in_channels: int,
        bins: Sequence[int] = PAPER_BINS,
        reduction_channels: int | None = None,
        *,
        global_norm: bool = False,
    ) -> None:
        super().__init__()
        bins = tuple(bins)
        if not bins or any(int(b) != b or b < 1 for b in bins):
            raise ValueError(f"bins must be positive integers, e.g. (1, 2, 3, 6); got {bins}.")
        if len(set(bins)) != len(bins):
            raise ValueError(f"each bin size once, got {bins}.")
        reduction = reduction_channels or max(1, in_channels // len(bins))
        self.bins = bins
        self.in_channels = in_channels
        self.out_channels = in_channels + len(bins) * reduction
        self.stages = nn.ModuleList()
        for b in bins:
            norm = b > 1 or global_norm  # BN over N*b*b values per channel: b = 1 breaks at N = 1
            layers: list[tuple[str, nn.Module]] = [
                ("conv", nn.Conv2d(in_channels, reduction, kernel_size=1, bias=not norm))]
            if norm:
                layers.append(("bn", nn.BatchNorm2d(reduction)))
            layers.append(("relu", nn.ReLU(inplace=True)))
            self.stages.append(nn.Sequential(OrderedDict(layers)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, self.in_channels, name="feature map")
        return pyramid_pool(x, self.bins, self.stages)  # (N, out_channels, H, W)


# --------------------------------------------------------------------------------------------
# 2. The head: pyramid -> 3x3 conv -> classes
# --------------------------------------------------------------------------------------------


class PSPHead(nn.Sequential):
    """Pyramid pooling, then 3x3 conv (-> in/4 = 512) + BN + ReLU + Dropout(0.1) + 1x1 conv.

    The layers after the pyramid are the reference's ``cls`` (hszhao/semseg; the paper's Fig. 3
    (d): "a convolution layer to generate the final prediction map"). Shapes at full width:
    (N, 2048, h, w) -> ppm (N, 4096, h, w) -> conv (N, 512, h, w) -> cls (N, classes, h, w).
    """

    def __init__(self, in_channels: int, num_classes: int, bins: Sequence[int] = PAPER_BINS,
                 *, global_norm: bool = False) -> None:
        ppm = PyramidPoolingModule(in_channels, bins, global_norm=global_norm)
        inter = max(1, in_channels // 4)
        super().__init__(OrderedDict([
            ("ppm", ppm),
            ("conv", nn.Conv2d(ppm.out_channels, inter, kernel_size=3, padding=1, bias=False)),
            ("bn", nn.BatchNorm2d(inter)),
            ("relu", nn.ReLU(inplace=True)),
            ("dropout", nn.Dropout(0.1)),
            ("cls", nn.Conv2d(inter, num_classes, kernel_size=1)),
        ]))


# --------------------------------------------------------------------------------------------
# 3. The network
# --------------------------------------------------------------------------------------------


def feature_map_size(size: int) -> int:
    """Side of the dilated ResNet's stride-8 map for an input side ``size``
    (:func:`segedu.core.sizes.resnet_feature_size` at output stride 8: conv1, the max-pool and
    layer2's stride-2 conv each halve it; layer3 and layer4 are dilated and keep the size)."""
    return resnet_feature_size(size, 8)


class PSPNet(SegmentationModel):
    """PSPNet (Fig. 3): dilated ResNet, pyramid pooling head, optional auxiliary FCN head.

    Args:
        num_classes: classes to predict (21 for PASCAL VOC, 19 for Cityscapes).
        backbone: ``"resnet50"`` or ``"resnet101"`` (the paper's VOC/Cityscapes results use
            ResNet-101).
        aux: add the auxiliary head on layer3 (Sec. 3.3; loss weight 0.4 in training).
        width: channel multiplier (1.0 = the paper's network; the CPU profile uses 0.125).
        bins: the pyramid levels (1, 2, 3, 6 in the paper).
        global_norm: BatchNorm after the 1x1 bin as in the reference (needs batch size >= 2
            in training); see the module docstring for why the default omits it.
        in_channels: image channels.

    ``model(x)`` returns ``{"out": logits}`` (and ``"aux"`` with ``aux=True``), (N, C, H, W)
    at the input's size, for any H, W >= ``min_input_size``.
    """

    #: The smallest input side: its stride-8 map is 2x2 (see the module docstring).
    min_input_size = 9

    def __init__(
        self,
        num_classes: int = 21,
        backbone: str = "resnet50",
        aux: bool = True,
        *,
        width: float = 1.0,
        bins: Sequence[int] = PAPER_BINS,
        global_norm: bool = False,
        in_channels: int = 3,
    ) -> None:
        check_num_classes(num_classes)
        net = resnet_by_name(backbone, replace_stride_with_dilation=[False, True, True],
                             include_top=False, width=width, in_channels=in_channels)
        channels = net.feature_channels  # layer3: 1024 * width, layer4: 2048 * width
        head = PSPHead(channels["layer4"], num_classes, bins, global_norm=global_norm)
        aux_head = FCNHead(channels["layer3"], num_classes) if aux else None
        super().__init__(net, head, aux_head, num_classes=num_classes, in_channels=in_channels)
        self.backbone_name, self.width, self.bins = backbone, width, tuple(bins)


def pspnet(
    num_classes: int = 21,
    *,
    backbone: str = "resnet50",
    aux: bool = True,
    width: float = 1.0,
    bins: Sequence[int] = PAPER_BINS,
    global_norm: bool = False,
    pretrained_backbone: bool | str = False,
    in_channels: int = 3,
) -> PSPNet:
    """PSPNet on a dilated ResNet-50/101 with the pyramid (1, 2, 3, 6) and the auxiliary head.

    Full width, 21 classes: 48,957,290 parameters with the auxiliary head on ResNet-50
    (46,592,085 without), 67,949,418 on ResNet-101. ``pretrained_backbone=True`` loads
    torchvision's ImageNet ResNet (needs the internet, ``width=1``; raises
    :class:`segedu.core.weights.WeightsUnavailableError` with instructions when the download fails).
    The paper's results: 85.4 mIoU on PASCAL VOC 2012 test (ResNet-101, with MS-COCO
    pretraining); Cityscapes test 78.4 (fine labels only) and 80.2 (fine + coarse).
    """
    model = PSPNet(num_classes, backbone, aux, width=width, bins=bins, global_norm=global_norm,
                   in_channels=in_channels)
    if pretrained_backbone:
        load_backbone_weights(model.backbone, backbone, pretrained_backbone)
    return model


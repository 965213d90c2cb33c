"""Chapter 1 — Fully Convolutional Networks (Long, Shelhamer & Darrell, CVPR 2015).

Read this next to the paper. The three ideas, in the order the module builds them:

1. **Fully connected layers are convolutions** (Sec. 3.1). VGG16's fc6 looks at a 7x7x512
   pool5 window; written as a 7x7 convolution it slides over a map of any size and gives a
   *map* of class scores instead of one vector. :func:`linear_to_conv` does the conversion.
2. **Upsampling by transposed convolution** (Sec. 3.3), initialised to bilinear
   interpolation (:func:`bilinear_kernel`). The reference implementation keeps these kernels
   fixed ("learning them made no significant difference"); so do we unless asked.
3. **Skips** (Sec. 4.2, Fig. 3): the stride-32 prediction (FCN-32s) is coarse; adding scores
   computed from pool4 (FCN-16s) and pool3 (FCN-8s) restores detail (:func:`fuse_skips`).

**Alignment — where we differ from the reference, and why.** The reference Caffe model pads
conv1_1 by 100 pixels and crops every upsampled map at a hand-computed offset (5 and 9 for the
skips, 19/27/31 for the outputs of FCN-32s/16s/8s). We use an equivalent, simpler scheme:

* :func:`pad_to_multiple` zero-pads the input at the bottom and right to a multiple of 32, so
  each of VGG16's five 2x2 pools halves the map exactly (3x3 convs with padding 1 keep size);
* then cell ``j`` of a stride-``s`` map covers input pixels ``[s*j, s*(j+1))``, centred at
  ``s*j + (s-1)/2``, on every map alike;
* a transposed convolution with kernel ``2f``, stride ``f`` and padding ``f/2`` and bilinear
  weights maps a stride-``s`` grid onto the stride-``s/f`` grid with those centres matched
  (it is bilinear interpolation with ``align_corners=False``), so no crop offsets are needed;
* fc6 becomes a 7x7 conv with padding 3, so it keeps the pool5 map's size;
* finally the output is cropped back to the input's H x W.

Outputs are therefore aligned with the input for every input size (64, 127, 100x151, ...).

``fcn_resnet50`` at the end is torchvision's later variant (dilated ResNet-50 + an FCN head),
state_dict-compatible with ``torchvision.models.segmentation.fcn_resnet50``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import VGG16, resnet50
from .backbones.pretrained import load_backbone_weights, load_shapes_weights
from .core.model import SegmentationModel, scaled
from .core.validation import check_image_batch, check_num_classes
from .core.weights import download_state_dict, load_torchvision_weights

__all__ = [
    "linear_to_conv",
    "bilinear_kernel",
    "pad_to_multiple",
    "fuse_skips",
    "FCN",
    "fcn32s",
    "fcn16s",
    "fcn8s",
    "vgg16_state_to_fcn",
    "load_imagenet_backbone",
    "FCNHead",
    "fcn_resnet50",
]

# --------------------------------------------------------------------------------------------
# 1. Fully connected layers as convolutions (Sec. 3.1)
# --------------------------------------------------------------------------------------------


def linear_to_conv(linear: nn.Linear, in_channels: int, kernel_size: int) -> nn.Conv2d:
    """Turn ``Linear(in_channels*k*k -> out)`` into an equivalent ``Conv2d(in_channels, out, k)``.

    A linear layer on a flattened (C, k, k) window *is* a k x k convolution evaluated at one
    position; reshaping its (out, C*k*k) weight to (out, C, k, k) gives the convolution, which
    then slides over larger inputs and outputs a map — the heart of "fully convolutional".
    """
    if not isinstance(linear, nn.Linear):
        raise ValueError(f"expected an nn.Linear, got {type(linear).__name__}.")
    expected = in_channels * kernel_size * kernel_size
    if linear.in_features != expected:
        raise ValueError(
            f"a Linear with in_features={linear.in_features} cannot be a {kernel_size}x"
            f"{kernel_size} conv over {in_channels} channels (that needs "
            f"{in_channels}*{kernel_size}*{kernel_size} = {expected} inputs)."
        )
    conv = nn.Conv2d(in_channels, linear.out_features, kernel_size, bias=linear.bias is not None)
    with torch.no_grad():
        # Flattening (C, k, k) is row-major, so the inverse reshape restores the layout.
        conv.weight.copy_(linear.weight.reshape(linear.out_features, in_channels,
                                                kernel_size, kernel_size))
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return conv


# --------------------------------------------------------------------------------------------
# 2. Bilinear upsampling as a transposed convolution (Sec. 3.3)
# --------------------------------------------------------------------------------------------


def bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int) -> torch.Tensor:
    """Weights (in_channels, out_channels, k, k) for a ConvTranspose2d doing bilinear upsampling.

    With ``f = ceil(k/2)`` and centre ``c = f - 1`` (k odd) or ``f - 0.5`` (k even), the 1-D
    filter is ``1 - |i - c| / f`` and the 2-D filter is the outer product. It sits on the
    channel diagonal (channel i is upsampled from channel i only); off-diagonal kernels are 0.
    """
    if kernel_size < 1 or in_channels < 1 or out_channels < 1:
        raise ValueError(f"sizes must be positive, got in_channels={in_channels}, "
                         f"out_channels={out_channels}, kernel_size={kernel_size}.")
    factor = math.ceil(kernel_size / 2)
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64)
    filt1d = 1 - (og - center).abs() / factor
    filt = torch.outer(filt1d, filt1d).float()
    weight = torch.zeros(in_channels, out_channels, kernel_size, kernel_size)
    for i in range(min(in_channels, out_channels)):
        weight[i, i] = filt
    return weight


def _bilinear_upsampler(channels: int, factor: int, learnable: bool) -> nn.ConvTranspose2d:
    """ConvTranspose2d(kernel 2f, stride f, padding f/2): exactly f-times larger, bilinear init."""
    up = nn.ConvTranspose2d(channels, channels, kernel_size=2 * factor, stride=factor,
                            padding=factor // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, channels, 2 * factor))
    up.weight.requires_grad_(learnable)
    return up


# --------------------------------------------------------------------------------------------
# 3. Alignment and skip fusion (Sec. 4.2)
# --------------------------------------------------------------------------------------------


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad (N, C, H, W) at the bottom and right so that H and W are multiples of ``multiple``.

    Returns ``x`` itself when nothing needs padding. Crop back with ``out[..., :H, :W]``.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h))  # (left, right, top, bottom)


def fuse_skips(
    score: torch.Tensor,
    skips: list[torch.Tensor],
    upsamplers: list[nn.Module],
    final_upsampler: nn.Module,
) -> torch.Tensor:
    """FCN's skip architecture (Fig. 3): upsample the coarse scores 2x, add the next finer
    skip's scores, repeat; then upsample to the input resolution.

    FCN-32s: no skips. FCN-16s: ``skips=[score_pool4]``. FCN-8s: ``[score_pool4, score_pool3]``.
    """
    for skip, up in zip(skips, upsamplers, strict=True):
        score = up(score) + skip  # (N, C, 2h, 2w): "fuse" is a sum (Sec. 4.2)
    return final_upsampler(score)


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------

#: variant -> (skips used, factor of the final upsampling)
_VARIANTS = {"32s": ([], 32), "16s": (["pool4"], 16), "8s": (["pool4", "pool3"], 8)}


class FCN(nn.Module):
    """FCN-32s / FCN-16s / FCN-8s on VGG16 (Fig. 3). Layer names follow the reference model.

    Args:
        num_classes: classes to predict (21 for PASCAL VOC).
        variant: ``"32s"``, ``"16s"`` or ``"8s"``.
        width: channel multiplier (1.0 = the paper's network; the CPU profile uses less).
        batch_norm: VGG16 with BatchNorm (torchvision's ``vgg16_bn``). The paper has none;
            BN lets a reduced-width FCN train from scratch in a CPU minute.
        learn_upsampling: make the bilinear transposed convs trainable (the reference keeps
            them fixed). Either way they are parameters, as in the paper's 134M count.
        dropout: dropout after fc6 and fc7 (0.5 in the paper).

    ``model(x)`` returns ``{"out": logits}`` with logits of shape (N, num_classes, H, W).
    """

    def __init__(
        self,
        num_classes: int = 21,
        variant: str = "8s",
        *,
        width: float = 1.0,
        batch_norm: bool = False,
        learn_upsampling: bool = False,
        dropout: float = 0.5,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if variant not in _VARIANTS:
            raise ValueError(f"variant must be one of {sorted(_VARIANTS)}, got {variant!r}.")
        self.num_classes = check_num_classes(num_classes)
        self.variant, self.in_channels, self.width = variant, in_channels, width
        factor = _VARIANTS[variant][1]

        self.backbone = VGG16(batch_norm=batch_norm, width=width, include_top=False,
                              in_channels=in_channels)
        pool5, fc = self.backbone.feature_channels["pool5"], scaled(4096, width)
        # fc6 / fc7 as convolutions (Sec. 3.1); padding 3 keeps pool5's size.
        self.fc6 = nn.Conv2d(pool5, fc, kernel_size=7, padding=3)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = nn.Conv2d(fc, fc, kernel_size=1)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout(dropout)
        self.score_fr = nn.Conv2d(fc, num_classes, kernel_size=1)

        # Skip scorers (1x1 convs on pool4 / pool3) and the 2x upsamplers that fuse them.
        if variant in ("16s", "8s"):
            self.score_pool4 = nn.Conv2d(self.backbone.feature_channels["pool4"], num_classes, 1)
            self.upscore2 = _bilinear_upsampler(num_classes, 2, learn_upsampling)
        if variant == "8s":
            self.score_pool3 = nn.Conv2d(self.backbone.feature_channels["pool3"], num_classes, 1)
            self.upscore_pool4 = _bilinear_upsampler(num_classes, 2, learn_upsampling)
        # Final upsampling to the input resolution, named as in the reference prototxts.
        final = _bilinear_upsampler(num_classes, factor, learn_upsampling)
        if variant == "32s":
            self.upscore = final      # 32x
        elif variant == "16s":
            self.upscore16 = final    # 16x
        else:
            self.upscore8 = final     # 8x

        # The reference zero-initialises the class scorers (Sec. 4.1/4.2): a new skip starts
        # by changing nothing, and random init "yields neither better performance nor faster
        # convergence".
        for scorer in (self.score_fr, *self.skip_scorers()):
            nn.init.zeros_(scorer.weight)
            nn.init.zeros_(scorer.bias)

    def skip_scorers(self) -> list[nn.Conv2d]:
        """``score_pool4`` (FCN-16s, FCN-8s) and ``score_pool3`` (FCN-8s), coarse to fine."""
        if self.variant == "32s":
            return []
        if self.variant == "16s":
            return [self.score_pool4]
        return [self.score_pool4, self.score_pool3]

    def skip_upsamplers(self) -> list[nn.ConvTranspose2d]:
        """The 2x upsampler before each skip: ``upscore2``, then ``upscore_pool4``."""
        if self.variant == "32s":
            return []
        if self.variant == "16s":
            return [self.upscore2]
        return [self.upscore2, self.upscore_pool4]

    def final_upsampler(self) -> nn.ConvTranspose2d:
        """``upscore`` (32x, FCN-32s), ``upscore16`` (16x) or ``upscore8`` (8x)."""
        if self.variant == "32s":
            return self.upscore
        if self.variant == "16s":
            return self.upscore16
        return self.upscore8

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_image_batch(x, self.in_channels)
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, 32)                       # (N, 3, H', W'), H', W' = k * 32
        features = self.backbone.forward_features(x)     # pool3: H'/8, pool4: H'/16, pool5: H'/32
        y = self.drop6(self.relu6(self.fc6(features["pool5"])))  # (N, 4096, H'/32, W'/32)
        y = self.drop7(self.relu7(self.fc7(y)))
        score = self.score_fr(y)                         # (N, C, H'/32, W'/32)
        skips = [scorer(features[name]) for scorer, name   # (N, C, H'/16, ...), (N, C, H'/8, ...)
                 in zip(self.skip_scorers(), ("pool4", "pool3"), strict=False)]
        out = fuse_skips(score, skips, self.skip_upsamplers(), self.final_upsampler())
        return {"out": out[..., :h, :w]}                 # (N, C, H', W') cropped to (N, C, H, W)


def fcn32s(num_classes: int = 21, *, pretrained_backbone: bool | str = False, **kwargs) -> FCN:
    """FCN-32s: one 32x upsampling of the fc7 scores — coarse, the paper's baseline."""
    return _fcn("32s", num_classes, pretrained_backbone, **kwargs)


def fcn16s(num_classes: int = 21, *, pretrained_backbone: bool | str = False, **kwargs) -> FCN:
    """FCN-16s: adds the pool4 skip."""
    return _fcn("16s", num_classes, pretrained_backbone, **kwargs)


def fcn8s(num_classes: int = 21, *, pretrained_backbone: bool | str = False, **kwargs) -> FCN:
    """FCN-8s: adds the pool4 and pool3 skips — the paper's best (62.2 mean IU, VOC2012 test)."""
    return _fcn("8s", num_classes, pretrained_backbone, **kwargs)


def _fcn(variant: str, num_classes: int, pretrained_backbone: bool | str, **kwargs) -> FCN:
    # kwargs: width, batch_norm, learn_upsampling, dropout, in_channels (see FCN).
    model = FCN(num_classes, variant, **kwargs)
    if pretrained_backbone == "shapes":  # the CPU profile's stand-in: conv layers only
        batch_norm = any(isinstance(m, nn.BatchNorm2d) for m in model.backbone.modules())
        load_shapes_weights(model.backbone, "vgg16_bn" if batch_norm else "vgg16")
    elif pretrained_backbone:
        load_imagenet_backbone(model)
    return model


def vgg16_state_to_fcn(vgg_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a torchvision VGG16 state_dict onto an FCN's backbone, fc6 and fc7.

    The conv layers copy over by name; the classifier's first two Linear layers become the
    7x7 fc6 and the 1x1 fc7 convolutions by the reshape of :func:`linear_to_conv`.
    """
    state = {f"backbone.{k}": v for k, v in vgg_state.items() if k.startswith("features.")}
    for fc, index, kernel in (("fc6", 0, 7), ("fc7", 3, 1)):
        weight = vgg_state[f"classifier.{index}.weight"]
        linear = nn.Linear(weight.shape[1], weight.shape[0])
        linear.load_state_dict({"weight": weight, "bias": vgg_state[f"classifier.{index}.bias"]})
        conv = linear_to_conv(linear, weight.shape[1] // (kernel * kernel), kernel)
        state[f"{fc}.weight"], state[f"{fc}.bias"] = conv.weight.detach(), conv.bias.detach()
    return state


def load_imagenet_backbone(model: FCN, progress: bool = True) -> FCN:
    """Load torchvision's ImageNet VGG16 (or VGG16-BN) into an FCN's backbone, fc6 and fc7.

    Needs the internet (Colab); raises :class:`segedu.core.weights.WeightsUnavailableError`
    with instructions when the download fails.
    """
    if model.width != 1.0:
        raise ValueError(f"ImageNet weights exist only for width=1, this FCN has width "
                         f"{model.width}.")
    batch_norm = any(isinstance(m, nn.BatchNorm2d) for m in model.backbone.modules())
    vgg_state = download_state_dict("VGG16_BN_Weights" if batch_norm else "VGG16_Weights",
                                    progress=progress)
    # strict=False: the score and upsampling layers are new, and keep their initialisation.
    model.load_state_dict(vgg16_state_to_fcn(vgg_state), strict=False)
    return model


# --------------------------------------------------------------------------------------------
# FCN on a dilated ResNet-50, as shipped by torchvision
# --------------------------------------------------------------------------------------------


class FCNHead(nn.Sequential):
    """3x3 conv (in -> in/4) + BN + ReLU + Dropout(0.1) + 1x1 conv to classes (torchvision)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        inter = in_channels // 4
        super().__init__(
            nn.Conv2d(in_channels, inter, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(inter),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Conv2d(inter, num_classes, kernel_size=1),
        )


def fcn_resnet50(
    num_classes: int = 21,
    *,
    aux: bool = False,
    width: float = 1.0,
    pretrained: bool = False,
    pretrained_backbone: bool | str = False,
) -> SegmentationModel:
    """FCN with a dilated ResNet-50 (output stride 8), as ``torchvision``'s ``fcn_resnet50``.

    ``pretrained=True`` loads torchvision's COCO-trained weights (21 VOC classes; 60.5 mIoU on
    COCO val2017 as published) — needs the internet. ``aux=True`` adds the layer3 head.
    """
    backbone = resnet50(replace_stride_with_dilation=[False, True, True], include_top=False,
                        width=width)
    channels = backbone.feature_channels
    aux_head = FCNHead(channels["layer3"], num_classes) if aux else None
    model = SegmentationModel(backbone, FCNHead(channels["layer4"], num_classes), aux_head,
                              num_classes=num_classes)
    if pretrained:
        load_torchvision_weights(model, "fcn_resnet50")
    elif pretrained_backbone:
        load_backbone_weights(backbone, "resnet50", pretrained_backbone)
    return model

"""Chapter 6 — RefineNet (Lin, Milan, Shen & Reid, CVPR 2017) and Light-Weight RefineNet
(Nekrasov, Shen & Reid, BMVC 2018).

Read this next to the RefineNet paper's Sec. 3 and Fig. 2-3. DeepLab (chapter 5) keeps the
resolution by dilating the backbone; RefineNet keeps the backbone's strides (4, 8, 16, 32 — an
ordinary, *not* dilated ResNet) and climbs back down with a cascade of **RefineNet blocks**:
RefineNet-4 refines the stride-32 features alone; RefineNet-3 fuses its output with the
stride-16 features, and so on to RefineNet-1 at stride 4 (Fig. 2c, "4-cascaded"). A block has
four parts (Fig. 3), built here in that order:

1. **Residual conv units** (:class:`ResidualConvUnit`, Fig. 3b): ReLU-conv3x3-ReLU-conv3x3 plus
   the identity, no BatchNorm. Two per input path adapt the pretrained features to the task.
2. **Multi-resolution fusion** (:func:`multi_resolution_fusion`, Fig. 3c): a 3x3 conv per path
   to the smallest channel count, upsampling to the finest path's resolution, a sum.
3. **Chained residual pooling** (:func:`chained_residual_pooling`, Fig. 3d): a ReLU, then a chain
   of 5x5 max-pools (stride 1) each followed by a conv; every stage's output is added to a
   running sum. Each pool sees the previous one's output, so stage k pools a window that grows
   by 4 pixels per stage: background context from a large region, at full resolution.
4. An **output conv**: one more RCU (Fig. 3a).

The network (:class:`RefineNet`) ends with two more RCUs, dropout and a classifier at stride 4,
upsampled to the input (Sec. 3.1). Channels: 512 on RefineNet-4's path, 256 elsewhere
(Sec. 3.2); a conv before each block reduces the backbone's 2048/1024/512/256 channels to that.

**Chained residual pooling: how many stages.** The paper's Fig. 3d draws two pooling blocks and
Sec. 3.2 says two are used; the released VOC model (converted to PyTorch as
``DrSleep/refinenet-pytorch``) has four, and so has Light-Weight RefineNet, paper and code.
``refinenet(crp_stages=2)`` (the default) is the paper as written; ``crp_stages=4`` gives the
released model's CRP. Light-Weight RefineNet uses 4.

**Light-Weight RefineNet** (:func:`lw_refinenet`, BMVC 2018 Sec. 3, Fig. 2) is the same cascade
with the RCUs removed (adaptive convs, output convs and the two final RCUs) and 1x1 instead of
3x3 convolutions in the reduction, the fusion and the CRP (4 stages, 5x5 pools). Its structure
is that of the authors' released ``ResNetLW`` layer for layer, so its parameter count is theirs
(RF-LW-ResNet-50: 27M in their table; counted in the tests).

**Where we follow the released code rather than the paper's words, and where we differ.**

* The reduction conv before each block (``reduce4`` ... ``reduce1``: 3x3, no bias; 1x1 in the
  light-weight model) is the released code's ``p_ims1d2_outl*_dimred``; the paper only says the
  paths have 512/256 channels. The RCU's first conv has a bias and its second none, the fusion
  and CRP convs none, the classifier is a 3x3 conv with a bias — all as released.
* The released model upsamples with ``align_corners=True`` to the finer map's size. We align
  cell *centres* exactly instead (:func:`upsample_aligned`): in a ResNet, cell j of a stride-s
  map is centred on input pixel ``s*j`` (every stride-2 layer has kernel k and padding
  (k-1)/2). A coarser map is therefore upsampled by its stride ratio r so that its cell j lands
  on finer position ``r*j``, for every input size, odd or even. ``segedu.core.model.resize_to``
  (``align_corners=False``) would place it at ``r*j + (r-1)/2`` — 15.5 input pixels off for the
  stride-32 path — and change its scale with the map's size.
* The released full RefineNet also applies dropout to layer3 and layer4; we keep the one
  dropout before the classifier.

``model(x)`` returns ``{"out": logits}`` (N, num_classes, H, W) for any H, W.
:meth:`RefineNet.forward_stages` also returns the four backbone paths and every block's output,
for the lesson; :func:`fit_stage_readouts` trains a linear read-out on each frozen block output
to show the coarse-to-fine predictions.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import resnet_by_name
from .backbones.pretrained import load_backbone_weights
from .core.model import scaled
from .core.validation import check_image_batch, check_num_classes

__all__ = [
    "upsample_aligned",
    "ResidualConvUnit",
    "multi_resolution_fusion",
    "MultiResolutionFusion",
    "chained_residual_pooling",
    "ChainedResidualPooling",
    "RefineNetBlock",
    "RefineNet",
    "refinenet",
    "lw_refinenet",
    "fit_stage_readouts",
    "stage_predictions",
]

#: the backbone's four paths and their strides (an ordinary, not dilated, ResNet)
PATHS = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}

# --------------------------------------------------------------------------------------------
# 0. Upsampling a coarser path onto a finer one, cell centres aligned
# --------------------------------------------------------------------------------------------


def upsample_aligned(x: torch.Tensor, size: Sequence[int], factor: int) -> torch.Tensor:
    """Bilinearly upsample a map whose stride is ``factor`` times coarser onto ``size``.

    Cell j of the coarse map is centred where cell ``factor * j`` of the fine map is (true of
    every ResNet stage, see the module docstring), so the fine map's pixel i takes the coarse
    map's value at coordinate ``i / factor``: bilinear interpolation with ``align_corners=True``
    to ``factor * (h - 1) + 1`` pixels does exactly that, and the last ``factor - 1`` rows or
    columns at most, which lie beyond the last coarse centre, repeat the edge. A stride-2 layer
    makes ``ceil(n / 2)`` cells of ``n``, so ``size`` must satisfy
    ``factor * (h - 1) + 1 <= H <= factor * h``.
    """
    check_image_batch(x, name="x")
    factor = int(factor)
    if factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}.")
    (h, w), (height, width) = x.shape[-2:], (int(s) for s in size)
    span_h, span_w = factor * (h - 1) + 1, factor * (w - 1) + 1
    if not (span_h <= height <= factor * h and span_w <= width <= factor * w):
        raise ValueError(
            f"a {h}x{w} map at {factor}x the stride covers {span_h}..{factor * h} x "
            f"{span_w}..{factor * w} pixels of the finer map, not {height}x{width}. Pass the "
            "size of the finer map this one was computed from, and their stride ratio.")
    if factor == 1:
        return x
    x = F.interpolate(x, size=(span_h, span_w), mode="bilinear", align_corners=True)
    if (height, width) != (span_h, span_w):  # beyond the last centre: repeat the edge
        x = F.pad(x, (0, width - span_w, 0, height - span_h), mode="replicate")
    return x


# --------------------------------------------------------------------------------------------
# 1. Residual conv unit (Sec. 3.2, Fig. 3b)
# --------------------------------------------------------------------------------------------


class ResidualConvUnit(nn.Module):
    """ReLU -> conv -> ReLU -> conv, plus the identity; no BatchNorm (Fig. 3b).

    A simplified ResNet block that keeps the channels and the size (padding k // 2). As in
    the released model, ``conv1`` has a bias and ``conv2`` none. The first ReLU must not be
    in-place: its input is also the identity branch.
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        padding = kernel_size // 2
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=padding, bias=True)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=padding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(x))       # F.relu, not in-place: x is still needed below
        out = self.conv2(F.relu(out))
        return x + out                    # (N, C, H, W), as x


# --------------------------------------------------------------------------------------------
# 2. Multi-resolution fusion (Sec. 3.2, Fig. 3c)
# --------------------------------------------------------------------------------------------


def multi_resolution_fusion(paths: Sequence[torch.Tensor], convs: Sequence[nn.Module],
                            strides: Sequence[int]) -> torch.Tensor:
    """Convolve each path, upsample it to the finest path's resolution, and sum (Fig. 3c).

    ``paths[i]`` is (N, C_i, H_i, W_i) at stride ``strides[i]`` (relative to the input);
    ``convs[i]`` maps C_i to the common channel count. The conv comes first, at the path's own
    resolution (cheaper than after upsampling, and the paper's order); each result is
    upsampled with :func:`upsample_aligned` by its stride ratio to the finest path's exact size.
    """
    if not len(paths) == len(convs) == len(strides) >= 1:
        raise ValueError(f"need one conv and one stride per path, got {len(paths)} paths, "
                         f"{len(convs)} convs and {len(strides)} strides.")
    finest = min(strides)
    size = paths[list(strides).index(finest)].shape[-2:]
    fused = []
    for path, conv, stride in zip(paths, convs, strides, strict=True):
        if stride % finest:
            raise ValueError(f"strides must be multiples of the finest, got {list(strides)}.")
        fused.append(upsample_aligned(conv(path), size, stride // finest))  # (N, C, H, W)
    return torch.stack(fused).sum(dim=0)


class MultiResolutionFusion(nn.Module):
    """One conv per input path to ``min(in_channels)`` channels, upsample, sum (Fig. 3c).

    With a single path (RefineNet-4) the block passes its input through unchanged, as the
    paper says ("the input path will directly go through this block").
    """

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int],
                 kernel_size: int = 3) -> None:
        super().__init__()
        if len(in_channels) != len(strides) or not in_channels:
            raise ValueError(f"need one stride per path, got channels {list(in_channels)} and "
                             f"strides {list(strides)}.")
        self.strides = [int(s) for s in strides]
        self.out_channels = min(in_channels)
        self.convs = nn.ModuleList()
        if len(in_channels) > 1:
            self.convs.extend(nn.Conv2d(c, self.out_channels, kernel_size,
                                        padding=kernel_size // 2, bias=False)
                              for c in in_channels)

    def forward(self, *paths: torch.Tensor) -> torch.Tensor:
        if len(paths) != len(self.strides):
            raise ValueError(f"this block fuses {len(self.strides)} paths, got {len(paths)}.")
        if len(paths) == 1:
            return paths[0]
        return multi_resolution_fusion(paths, list(self.convs), self.strides)


# --------------------------------------------------------------------------------------------
# 3. Chained residual pooling (Sec. 3.2, Fig. 3d)
# --------------------------------------------------------------------------------------------


def chained_residual_pooling(x: torch.Tensor, convs: Iterable[nn.Module]) -> torch.Tensor:
    """ReLU, then a chain of (5x5 max-pool, stride 1, padding 2 -> conv) stages, each added
    to a running sum that starts with the ReLU's output (Fig. 3d).

    Stage k pools the output of stage k-1, not the input: the chain reuses each pooling's
    result, and stage k's window over the input grows to ``1 + 4k`` pixels (plus what the convs
    add). Padding 2 keeps the size, and max-pooling pads with -inf, so the border is never
    a fake maximum.
    """
    x = F.relu(x)                                      # the one ReLU of the block (Sec. 3.2)
    total, top = x, x
    for conv in convs:
        top = conv(F.max_pool2d(top, kernel_size=5, stride=1, padding=2))  # (N, C, H, W)
        total = total + top
    return total


class ChainedResidualPooling(nn.Module):
    """``stages`` pooling blocks (5x5 max-pool, stride 1, then a ``kernel_size`` conv without
    bias) chained, with residual sums; see :func:`chained_residual_pooling`."""

    def __init__(self, channels: int, stages: int = 2, kernel_size: int = 3) -> None:
        super().__init__()
        if stages < 0:
            raise ValueError(f"stages must be >= 0, got {stages}.")
        self.convs = nn.ModuleList(
            nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, bias=False)
            for _ in range(stages))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return chained_residual_pooling(x, self.convs)


# --------------------------------------------------------------------------------------------
# 4. The RefineNet block (Fig. 3a)
# --------------------------------------------------------------------------------------------


def _rcus(channels: int, count: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(*(ResidualConvUnit(channels, kernel_size) for _ in range(count)))


class RefineNetBlock(nn.Module):
    """Adaptive convs (RCUs per path) -> multi-resolution fusion -> chained residual pooling ->
    output conv (Fig. 3a).

    Args:
        in_channels: channels of each input path, finest first (the backbone's reduced
            features, then the coarser block's output).
        strides: each path's stride relative to the input.
        rcus: RCUs per input path (2 in the paper, 0 in Light-Weight RefineNet).
        crp_stages: pooling blocks in the chained residual pooling.
        output_rcus: RCUs after the pooling (1 in the paper, 0 in Light-Weight RefineNet).
        kernel_size: of the fusion and pooling convs and of the RCUs (3; 1 in the light model).

    The block outputs ``min(in_channels)`` channels at the finest path's resolution.
    """

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int], *, rcus: int = 2,
                 crp_stages: int = 2, output_rcus: int = 1, kernel_size: int = 3) -> None:
        super().__init__()
        self.adapt = nn.ModuleList(_rcus(c, rcus, kernel_size) for c in in_channels)
        self.fusion = MultiResolutionFusion(in_channels, strides, kernel_size)
        self.out_channels, self.stride = self.fusion.out_channels, min(strides)
        self.crp = ChainedResidualPooling(self.out_channels, crp_stages, kernel_size)
        self.output_conv = _rcus(self.out_channels, output_rcus, kernel_size)

    def forward(self, *paths: torch.Tensor) -> torch.Tensor:
        if len(paths) != len(self.adapt):
            raise ValueError(f"this block takes {len(self.adapt)} paths, got {len(paths)}.")
        paths = tuple(adapt(p) for adapt, p in zip(self.adapt, paths, strict=True))
        x = self.fusion(*paths)           # (N, C_out, H_finest, W_finest)
        x = self.crp(x)
        return self.output_conv(x)


# --------------------------------------------------------------------------------------------
# 5. The 4-cascaded network (Sec. 3.1, Fig. 2c)
# --------------------------------------------------------------------------------------------

class RefineNet(nn.Module):
    """4-cascaded RefineNet on a ResNet (Fig. 2c), or Light-Weight RefineNet.

    Args:
        num_classes: classes to predict (21 for PASCAL VOC).
        backbone: ``"resnet50"`` or ``"resnet101"`` (strides 4, 8, 16, 32; not dilated).
        light_weight: Light-Weight RefineNet (no RCUs, 1x1 convs, 4 CRP stages by default).
        crp_stages: pooling blocks per CRP (default 2 as in the paper's Fig. 3; 4 in the
            released model and in Light-Weight RefineNet).
        width: channel multiplier of the backbone and of the refinement paths.
        dropout: before the classifier.
        in_channels: input channels (3 for RGB).

    Modules: ``backbone``; ``reduce4`` ... ``reduce1`` (backbone channels -> 512 / 256);
    ``refine4`` ... ``refine1`` (:class:`RefineNetBlock`, RefineNet-4 ... RefineNet-1);
    ``final_rcus``, ``dropout`` and ``classifier`` (stride 4).
    """

    def __init__(
        self,
        num_classes: int = 21,
        *,
        backbone: str = "resnet50",
        light_weight: bool = False,
        crp_stages: int | None = None,
        width: float = 1.0,
        dropout: float = 0.5,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes)
        self.num_classes, self.in_channels, self.width = num_classes, in_channels, width
        self.backbone_name, self.light_weight = backbone, light_weight
        self.crp_stages = crp_stages if crp_stages is not None else (4 if light_weight else 2)
        self.backbone = resnet_by_name(backbone, include_top=False, width=width,
                                       in_channels=in_channels)
        k, rcus, output_rcus = (1, 0, 0) if light_weight else (3, 2, 1)
        # Path channels (Sec. 3.2): 512 for RefineNet-4, 256 for the others.
        path_channels = {name: scaled(512 if name == "layer4" else 256, width) for name in PATHS}
        for i, name in enumerate(PATHS, start=1):   # reduce1 (layer1) ... reduce4 (layer4)
            setattr(self, f"reduce{i}", nn.Conv2d(self.backbone.feature_channels[name],
                                                  path_channels[name], k, padding=k // 2,
                                                  bias=False))
        options = {"rcus": rcus, "crp_stages": self.crp_stages, "output_rcus": output_rcus,
                   "kernel_size": k}
        self.refine4 = RefineNetBlock([path_channels["layer4"]], [32], **options)
        coarser = self.refine4
        for i, name in ((3, "layer3"), (2, "layer2"), (1, "layer1")):
            block = RefineNetBlock([path_channels[name], coarser.out_channels],
                                   [PATHS[name], coarser.stride], **options)
            setattr(self, f"refine{i}", block)
            coarser = block
        channels = self.refine1.out_channels
        self.final_rcus = _rcus(channels, 0 if light_weight else 2, k)  # Sec. 3.1
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=3, padding=1)

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything the lesson looks at: the backbone paths ``layer1`` ... ``layer4``, the
        block outputs ``refine4`` ... ``refine1`` (coarse to fine), and ``out``."""
        check_image_batch(x, self.in_channels)
        record: dict[str, torch.Tensor] = OrderedDict()
        record.update(self.backbone.forward_features(x))  # strides 4, 8, 16, 32
        y = self.refine4(self.reduce4(record["layer4"]))  # (N, 512w, H/32, W/32)
        record["refine4"] = y
        for i in (3, 2, 1):
            feature = getattr(self, f"reduce{i}")(record[f"layer{i}"])
            y = getattr(self, f"refine{i}")(feature, y)   # (N, 256w, finer path's size)
            record[f"refine{i}"] = y
        logits = self.classifier(self.dropout(self.final_rcus(y)))  # (N, C, ~H/4, ~W/4)
        record["out"] = upsample_aligned(logits, x.shape[-2:], 4)   # (N, C, H, W)
        return record

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.forward_stages(x)["out"]}


# --------------------------------------------------------------------------------------------
# 6. Factories
# --------------------------------------------------------------------------------------------


def refinenet(num_classes: int = 21, *, backbone: str = "resnet50", width: float = 1.0,
              crp_stages: int = 2, pretrained_backbone: bool | str = False, **kwargs) -> RefineNet:
    """RefineNet (CVPR 2017): RCUs, multi-resolution fusion, chained residual pooling.

    ``crp_stages=2`` is the paper's Fig. 3; ``crp_stages=4`` the released model's.
    ``kwargs``: ``dropout``, ``in_channels`` (see :class:`RefineNet`).
    ``pretrained_backbone=True`` loads torchvision's ImageNet ResNet (as the paper does) and
    raises :class:`~segedu.core.weights.WeightsUnavailableError` when the download fails.
    """
    model = RefineNet(num_classes, backbone=backbone, width=width, crp_stages=crp_stages,
                      **kwargs)
    if pretrained_backbone:
        _load_backbone(model, pretrained_backbone)
    return model


def lw_refinenet(num_classes: int = 21, *, backbone: str = "resnet50", width: float = 1.0,
                 pretrained_backbone: bool | str = False, **kwargs) -> RefineNet:
    """Light-Weight RefineNet (BMVC 2018): no RCUs, 1x1 convs, 4-stage CRP.

    ``kwargs``: ``crp_stages``, ``dropout``, ``in_channels`` (see :class:`RefineNet`).
    ``pretrained_backbone=True`` loads torchvision's ImageNet ResNet (needs the internet).
    """
    model = RefineNet(num_classes, backbone=backbone, width=width, light_weight=True,
                      **kwargs)
    if pretrained_backbone:
        _load_backbone(model, pretrained_backbone)
    return model


def _load_backbone(model: RefineNet, source: bool | str) -> None:
    if model.in_channels != 3:
        raise ValueError(f"Pretrained weights expect 3 input channels; this RefineNet has "
                         f"in_channels={model.in_channels}.")
    load_backbone_weights(model.backbone, model.backbone_name, source)


# --------------------------------------------------------------------------------------------
# 7. Looking inside: a linear read-out of every block (for the lesson)
# --------------------------------------------------------------------------------------------

_STAGES = {"refine4": 32, "refine3": 16, "refine2": 8, "refine1": 4}


def fit_stage_readouts(model: RefineNet, loader: Iterable, num_classes: int, *,
                       epochs: int = 1, lr: float = 1e-2,
                       device: torch.device | str = "cpu") -> nn.ModuleDict:
    """Train a 1x1 conv (a linear read-out) on each frozen block output, RefineNet-4 to -1.

    The network is not changed: each read-out only shows how much of the segmentation the
    features after that block already hold, at its stride (32, 16, 8, 4). Cross-entropy
    against the labels (255 ignored), Adam, ``epochs`` passes over ``loader``.
    """
    model.eval().to(device)
    readouts = nn.ModuleDict({
        name: nn.Conv2d(getattr(model, name).out_channels, num_classes, 1) for name in _STAGES
    }).to(device)
    optimizer = torch.optim.Adam(readouts.parameters(), lr=lr)
    for _ in range(epochs):
        for images, targets, *_ in loader:
            images, targets = images.to(device), targets.to(device)
            with torch.no_grad():
                stages = model.forward_stages(images)
            logits = stage_predictions(readouts, stages, images.shape[-2:])
            loss = sum(F.cross_entropy(v, targets, ignore_index=255) for v in logits.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return readouts.eval()


def stage_predictions(readouts: nn.ModuleDict, stages: dict[str, torch.Tensor],
                      size: Sequence[int]) -> dict[str, torch.Tensor]:
    """Each block's read-out logits, upsampled (aligned) to the input ``size``."""
    return {name: upsample_aligned(readouts[name](stages[name]), size, stride)
            for name, stride in _STAGES.items()}

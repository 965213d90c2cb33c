"""The aligned Xception-65 of DeepLab v3+ (Chollet, CVPR 2017; modified by Chen et al., ECCV 2018,
Sec. 3.2 and Fig. 4): depthwise-separable (atrous) convolutions, output stride 8/16/32.
torchvision has no Xception, so there are no ImageNet weights for it here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from ..core.model import scaled
from ..core.validation import check_image_batch
from .common import init_weights, require_top
from .pretrained import load_shapes_weights

__all__ = [
    "SeparableConv2d",
    "XceptionBlock",
    "Xception",
    "xception65",
]


# --------------------------------------------------------------------------------------------
# Aligned Xception-65 (Chollet, CVPR 2017; modified by DeepLab v3+, Chen et al., ECCV 2018,
# Sec. 3.2 and Fig. 4)
# --------------------------------------------------------------------------------------------


class SeparableConv2d(nn.Module):
    """Depthwise separable convolution (Xception Sec. 2; v3+ Sec. 3.1, Fig. 3): a 3x3
    *depthwise* conv (one filter per channel; ``stride``, and ``dilation`` for the *atrous*
    version) followed by a 1x1 *pointwise* conv that mixes the channels.

    v3+'s modification (3) in Sec. 3.2: BatchNorm and ReLU after the depthwise conv, "similar
    to MobileNet design". The pointwise conv is followed by BatchNorm, and by a ReLU only when
    ``relu_out`` (exit flow block 2); elsewhere the *next* separable conv starts with a ReLU
    (the pre-activation order of the original Xception, kept by v3+'s reference code).
    ``padding = dilation`` keeps the size at stride 1 and gives ``ceil(H / 2)`` at stride 2.

    Departure from the reference code: DeepLab's TensorFlow ``xception_65`` (and so its released
    checkpoints) has BatchNorm but *no* ReLU after the depthwise conv, except in exit block 2
    (``activation_fn_in_separable_conv=True``). We follow the paper's text; the parameter
    count is the same either way.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        dilation: int = 1,
        *,
        relu_out: bool = False,
    ) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=stride,
                                   padding=dilation, dilation=dilation, groups=in_channels,
                                   bias=False)
        self.bn_depthwise = nn.BatchNorm2d(in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.bn_pointwise = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.relu_out = relu_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn_depthwise(self.depthwise(x)))      # (N, C_in, H/s, W/s)
        x = self.bn_pointwise(self.pointwise(x))                 # (N, C_out, H/s, W/s)
        return self.relu(x) if self.relu_out else x


class XceptionBlock(nn.Module):
    """One Xception module (Fig. 4 of v3+): three separable convs with ``depths`` channels, the
    third one strided (it replaces the original's max-pool, so that it can be made atrous),
    plus a shortcut:

    * ``skip="conv"``: 1x1 conv (strided) + BatchNorm on the input (entry flow, exit block 1);
    * ``skip="sum"``: the identity (middle flow);
    * ``skip="none"``: no shortcut (exit block 2, whose convs end in ReLU: ``relu_out``).

    :meth:`forward_with_hidden` also returns the output of the second separable conv, which is
    still at the input's stride: v3+'s decoder takes its low-level features from there.
    """

    def __init__(
        self,
        in_channels: int,
        depths: Sequence[int],
        *,
        stride: int = 1,
        dilation: int = 1,
        skip: str = "conv",
        relu_out: bool = False,
    ) -> None:
        super().__init__()
        if len(depths) != 3:
            raise ValueError(f"an Xception block has 3 separable convs, got depths {depths}.")
        if skip not in ("conv", "sum", "none"):
            raise ValueError(f"skip must be 'conv', 'sum' or 'none', got {skip!r}.")
        if skip == "sum" and (stride != 1 or in_channels != depths[-1]):
            raise ValueError("an identity shortcut (skip='sum') needs stride 1 and "
                             f"in_channels == depths[-1]; got stride {stride}, "
                             f"{in_channels} -> {depths[-1]}. Use skip='conv'.")
        self.pre_activation = not relu_out
        self.sepconv1 = SeparableConv2d(in_channels, depths[0], 1, dilation, relu_out=relu_out)
        self.sepconv2 = SeparableConv2d(depths[0], depths[1], 1, dilation, relu_out=relu_out)
        self.sepconv3 = SeparableConv2d(depths[1], depths[2], stride, dilation,
                                        relu_out=relu_out)
        self.skip = skip
        if skip == "conv":
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, depths[2], kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(depths[2]),
            )
        self.out_channels = depths[2]
        self.stride = stride
        self.dilation = dilation

    def forward_with_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(block output, output of the second separable conv)."""
        h = x
        hidden = x
        for conv in (self.sepconv1, self.sepconv2, self.sepconv3):
            if self.pre_activation:
                # Not in place: x is still needed by the shortcut, and hidden may be returned.
                h = torch.relu(h)
            h = conv(h)
            if conv is self.sepconv2:
                hidden = h
        if self.skip == "conv":
            h = h + self.shortcut(x)
        elif self.skip == "sum":
            h = h + x
        return h, hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_hidden(x)[0]


class Xception(nn.Module):
    """Aligned Xception-65, the backbone of DeepLab v3+ (Sec. 3.2, Fig. 4).

    * entry flow: 3x3/2 conv 32, 3x3 conv 64 (each + BN + ReLU), then blocks of 128, 256 and
      728 channels, each ending in a stride-2 separable conv (stride 4, 8, 16);
    * middle flow: 16 blocks of three 728-channel separable convs with identity shortcuts
      ("more layers", v3+ modification (1); the original Xception has 8);
    * exit flow: block 728-1024-1024 with stride 2 (stride 32), then separable convs 1536,
      1536, 2048, each followed by ReLU.

    All max-pools are stride-2 separable convs (modification (2)), and every depthwise conv is
    followed by BN + ReLU (modification (3); see :class:`SeparableConv2d`).

    ``output_stride`` (8, 16 or 32) makes the network *atrous* as DeepLab's reference does
    (``stack_blocks_dense``): once the stride reaches ``output_stride``, each later stride-2
    block runs at stride 1 with the current dilation, and the dilation of everything after it
    is multiplied by 2. Output stride 16: exit block 1 at dilation 1, exit block 2 at 2;
    output stride 8: entry block 3 at 1, middle flow and exit block 1 at 2, exit block 2 at 4.

    ``forward_features`` returns, in this order (channels at width 1; strides at
    ``output_stride=16``, in brackets 8 and 32):

    ================  ===========  =====  ==============================================
    name              stride       chans  what
    ================  ===========  =====  ==============================================
    ``entry_block1``  4            128    output of entry block 1
    ``low_level``     4            256    entry block 2, 2nd separable conv: the decoder's
                                          low-level input in v3+'s reference code
    ``entry_block2``  8            256    output of entry block 2
    ``entry_block3``  16 (8, 16)   728    output of entry block 3
    ``middle_flow``   16 (8, 16)   728    output of the middle flow
    ``out``           16 (8, 32)   2048   output of the exit flow
    ================  ===========  =====  ==============================================

    Every convolution pads so that stride 2 gives ``ceil(H / 2)``: any input of at least 1x1
    works (the output is ``ceil(H / output_stride)``). No ImageNet weights exist in
    torchvision, so this network trains from scratch here.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        output_stride: int = 32,
        width: float = 1.0,
        include_top: bool = True,
        in_channels: int = 3,
        middle_blocks: int = 16,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}.")
        self.in_channels = in_channels
        self.width = width
        self.output_stride = output_stride
        c32, c64 = scaled(32, width), scaled(64, width)
        # Entry flow stem: two plain 3x3 convs (stride 2).
        self.conv1 = nn.Conv2d(in_channels, c32, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c32)
        self.conv2 = nn.Conv2d(c32, c64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c64)
        self.relu = nn.ReLU(inplace=True)

        self._stride, self._dilation, self._channels = 2, 1, c64
        self.entry_flow = nn.Sequential(*(
            self._make_block((d, d, d), 2, "conv") for d in (128, 256, 728)
        ))
        self.middle_flow = nn.Sequential(*(
            self._make_block((728, 728, 728), 1, "sum") for _ in range(middle_blocks)
        ))
        self.exit_flow = nn.Sequential(
            self._make_block((728, 1024, 1024), 2, "conv"),
            self._make_block((1536, 1536, 2048), 1, "none", relu_out=True),
        )
        entry = [b.out_channels for b in self.entry_flow]
        self.feature_channels = {
            "entry_block1": entry[0], "low_level": entry[1], "entry_block2": entry[1],
            "entry_block3": entry[2], "middle_flow": entry[2],
            "out": self.exit_flow[1].out_channels,
        }
        strides = [2]
        for block in (*self.entry_flow, *self.middle_flow, *self.exit_flow):
            strides.append(strides[-1] * block.stride)
        n_mid = len(self.middle_flow)
        self.feature_strides = {
            "entry_block1": strides[1], "low_level": strides[1], "entry_block2": strides[2],
            "entry_block3": strides[3], "middle_flow": strides[3 + n_mid], "out": strides[-1],
        }
        if include_top:  # Chollet Sec. 3: global average pooling, then logistic regression
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(self._channels, num_classes)
        del self._stride, self._dilation, self._channels  # build-time state only
        init_weights(self)

    def _make_block(self, depths: Sequence[int], stride: int, skip: str,
                    relu_out: bool = False) -> XceptionBlock:
        depths = [scaled(d, self.width) for d in depths]
        dilation = self._dilation
        if self._stride == self.output_stride:  # atrous from here: trade stride for dilation
            self._dilation *= stride
            stride = 1
        else:
            self._stride *= stride
        block = XceptionBlock(self._channels, depths, stride=stride, dilation=dilation,
                              skip=skip, relu_out=relu_out)
        self._channels = depths[-1]
        return block


    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The six named maps of the class docstring."""
        check_image_batch(x, self.in_channels)
        x = self.relu(self.bn1(self.conv1(x)))                   # (N, 32, H/2, W/2)
        x = self.relu(self.bn2(self.conv2(x)))                   # (N, 64, H/2, W/2)
        features: dict[str, torch.Tensor] = OrderedDict()
        features["entry_block1"] = x = self.entry_flow[0](x)     # (N, 128, H/4, W/4)
        x, features["low_level"] = self.entry_flow[1].forward_with_hidden(x)  # 256, H/4
        features["entry_block2"] = x                             # (N, 256, H/8, W/8)
        features["entry_block3"] = x = self.entry_flow[2](x)     # (N, 728, H/16, W/16)
        features["middle_flow"] = x = self.middle_flow(x)        # (N, 728, H/16, W/16)
        features["out"] = self.exit_flow(x)                      # (N, 2048, H/os, W/os)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_top(self, "fc")
        x = self.avgpool(self.forward_features(x)["out"])
        return self.fc(torch.flatten(x, 1))


def xception65(*, pretrained: bool | str = False, **kwargs) -> Xception:
    """Aligned Xception-65 of DeepLab v3+ (16 middle-flow blocks).

    There are no ImageNet weights for it here: ``pretrained=True`` raises a ``ValueError``
    that says so (a segmentation builder passes its ``pretrained_backbone`` on to it).
    ``pretrained="shapes"`` loads the shipped width-1/8 weights
    (:mod:`segedu.backbones.pretrained`).
    """
    if pretrained == "shapes":
        return load_shapes_weights(Xception(middle_blocks=16, **kwargs), "xception65")
    if pretrained:
        raise ValueError(
            "No ImageNet weights for Xception-65: torchvision has no Xception, and DeepLab's "
            "TensorFlow checkpoints are not converted in this course. Train it from scratch "
            "(pretrained_backbone=False), or choose a backbone with torchvision weights "
            "('resnet50', 'resnet101', 'mobilenet_v3_large') for pretrained_backbone=True."
        )
    return Xception(middle_blocks=16, **kwargs)

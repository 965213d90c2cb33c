"""Chapter 3 — U-Net (Ronneberger, Fischer & Brox, MICCAI 2015).

Read this next to the paper's Fig. 1. The network is a *contracting path* (repeated "two 3x3
convolutions, each followed by a ReLU" and a 2x2 max-pool that halves the map and doubles the
channels) and a symmetric *expansive path* (a 2x2 "up-convolution" that doubles the map and
halves the channels, the *cropped* skip from the contracting path concatenated to it, and
again two 3x3 convolutions). A final 1x1 convolution maps the 64 channels to the classes.
It has 23 convolutional layers and no fully connected layer (Sec. 2).

The module builds, in order:

1. the blocks: :class:`DoubleConv`, :class:`DownBlock` (contracting step),
   :func:`crop_and_concat` and :class:`UpBlock` (expansive step);
2. the network :class:`UNet` and the zoo factory :func:`unet`;
3. the size arithmetic of valid convolutions: :func:`unet_output_size` (572 -> 388),
   :func:`valid_input_sizes`, :func:`nearest_valid_sizes` (and the error that names them);
4. the training and inference tools of Sec. 3 and Fig. 2: the loss :func:`weight_map`
   (class balance + separation border between touching cells, eq. 2) and
   :func:`overlap_tile_predict` (mirror padding, tiles, stitching).

**Two ways to handle sizes.** ``padding=False`` is the paper: valid (unpadded) convolutions,
so every 3x3 conv eats a pixel on each side, the output is *smaller* than the input (388x388
for 572x572) and only input sizes whose pooled maps are all even are allowed. This departs
from the course's model contract (logits at the input's H, W) on purpose: it is the paper's
network; :func:`overlap_tile_predict` is how the paper gets a full-size prediction from it.
``padding=True`` (the default, as most later U-Nets do) pads each 3x3 conv by 1, pads the
input at the bottom/right to a multiple of ``2**depth`` with :func:`segedu.fcn.pad_to_multiple`
and crops the logits back, so any input size works and the contract holds.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .core.model import scaled
from .core.sizes import conv_output_size, conv_transpose_output_size
from .core.validation import check_image_batch
from .fcn import pad_to_multiple

__all__ = [
    "DoubleConv",
    "DownBlock",
    "crop_and_concat",
    "UpBlock",
    "unet_output_size",
    "valid_input_sizes",
    "nearest_valid_sizes",
    "check_valid_input",
    "UNet",
    "unet",
    "weight_map",
    "separated_cells",
    "overlap_tile_predict",
]

# --------------------------------------------------------------------------------------------
# 1. Building blocks (Sec. 2, Fig. 1)
# --------------------------------------------------------------------------------------------


class DoubleConv(nn.Sequential):
    """"Two 3x3 convolutions (unpadded convolutions), each followed by a rectified linear unit".

    ``padding=False`` is the paper's valid convolution (the map loses 2 pixels per conv);
    ``padding=True`` pads by 1 and keeps the size. ``batch_norm=True`` inserts BatchNorm after
    each conv (not in the 2015 paper; it lets a narrow U-Net train from scratch in a CPU
    minute) and then drops the conv's bias, which BatchNorm's shift makes redundant.
    Layers are named ``conv1, (bn1,) relu1, conv2, (bn2,) relu2``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, padding: bool = False,
                 batch_norm: bool = False) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i, cin in enumerate((in_channels, out_channels), start=1):
            layers[f"conv{i}"] = nn.Conv2d(cin, out_channels, kernel_size=3,
                                           padding=1 if padding else 0, bias=not batch_norm)
            if batch_norm:
                layers[f"bn{i}"] = nn.BatchNorm2d(out_channels)
            layers[f"relu{i}"] = nn.ReLU(inplace=True)
        super().__init__(layers)


class DownBlock(nn.Sequential):
    """One step down the contracting path: "a 2x2 max pooling operation with stride 2 for
    downsampling", then a :class:`DoubleConv` that doubles the channels."""

    def __init__(self, in_channels: int, out_channels: int, *, padding: bool = False,
                 batch_norm: bool = False) -> None:
        super().__init__(OrderedDict(
            pool=nn.MaxPool2d(kernel_size=2, stride=2),
            conv=DoubleConv(in_channels, out_channels, padding=padding, batch_norm=batch_norm),
        ))


def crop_and_concat(skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Centre-crop the contracting path's ``skip`` to ``x``'s H, W and concatenate on channels.

    Fig. 1's grey arrows, "copy and crop": "the cropping is necessary due to the loss of border
    pixels in every convolution". Returns ``cat([cropped skip, x], dim=1)``, skip first. When
    the size difference is odd, the extra row/column is cut at the bottom/right
    (``top = (H_skip - H) // 2``).
    """
    if skip.dim() != 4 or x.dim() != 4:
        raise ValueError(f"crop_and_concat expects two (N, C, H, W) maps, got shapes "
                         f"{tuple(skip.shape)} and {tuple(x.shape)}.")
    (hs, ws), (h, w) = skip.shape[-2:], x.shape[-2:]
    if hs < h or ws < w or skip.shape[0] != x.shape[0]:
        raise ValueError(f"the skip {tuple(skip.shape)} must have x's batch size and be at "
                         f"least as large as x {tuple(x.shape)} to be cropped to it.")
    top, left = (hs - h) // 2, (ws - w) // 2
    cropped = skip[..., top:top + h, left:left + w]  # (N, C_skip, H, W)
    return torch.cat([cropped, x], dim=1)            # (N, C_skip + C_x, H, W)


class UpBlock(nn.Module):
    """One step up the expansive path (Fig. 1, green and grey arrows, then blue).

    ``up``: "a 2x2 convolution ("up-convolution") that halves the number of feature
    channels" — ``ConvTranspose2d(in, out, 2, stride=2)``, doubling H and W. With
    ``up="bilinear"`` it is a bilinear 2x upsampling followed by a 1x1 conv ``in -> out``
    (the 1x1 conv halves the channels; a 2x2 conv would shift the map by half a pixel).
    Then :func:`crop_and_concat` with the skip (``out`` channels), which gives ``2 * out``
    channels, and ``conv``: a :class:`DoubleConv` ``2 * out -> out``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, padding: bool = False,
                 batch_norm: bool = False, up: str = "transpose") -> None:
        super().__init__()
        if up == "transpose":
            self.up: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2,
                                                    stride=2)
        elif up == "bilinear":
            self.up = nn.Sequential(OrderedDict(
                upsample=nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                conv=nn.Conv2d(in_channels, out_channels, kernel_size=1),
            ))
        else:
            raise ValueError(f"up must be 'transpose' (the paper) or 'bilinear', got {up!r}.")
        self.conv = DoubleConv(2 * out_channels, out_channels, padding=padding,
                               batch_norm=batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)                   # (N, out, 2h, 2w)
        x = crop_and_concat(skip, x)     # (N, 2 * out, 2h, 2w): skip's `out` + up's `out`
        return self.conv(x)              # (N, out, 2h - 4, 2w - 4) with valid convs


# --------------------------------------------------------------------------------------------
# 2. The network
# --------------------------------------------------------------------------------------------


class UNet(nn.Module):
    """U-Net (Fig. 1). ``UNet(1, 2, padding=False)`` is the paper's network exactly: valid
    convs, biases, no BatchNorm, transposed-conv upsampling, 23 conv layers, 31,030,658
    parameters, 572x572 -> 388x388.

    Args:
        in_channels: image channels: 3 (RGB) like every network of the course; the paper's
            grey-value microscopy images have 1.
        num_classes: classes to predict (2 in the paper: cell and background).
        base: channels of the first level (64 in the paper); level ``l`` has ``base * 2**l``.
        padding: ``False``: the paper's valid convolutions; the output is smaller than the
            input and the input size must be valid (:func:`nearest_valid_sizes`).
            ``True``: padded convolutions; any input size, logits at the input's H, W.
        up: ``"transpose"`` (the paper's 2x2 up-convolution) or ``"bilinear"`` (see
            :class:`UpBlock`).
        batch_norm: BatchNorm after every 3x3 conv (not in the paper).
        depth: number of max-pools (4 in the paper).

    The paper also uses drop-out "at the end of the contracting path" (Sec. 3.1) without
    giving a rate; it is not part of this module (it has no parameters; add it if you need).

    ``model(x)["out"]``: logits (N, num_classes, H_out, W_out): the input's H, W with
    ``padding=True``, ``unet_output_size(H), unet_output_size(W)`` with ``padding=False``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        base: int = 64,
        *,
        padding: bool = True,
        up: str = "transpose",
        batch_norm: bool = False,
        depth: int = 4,
    ) -> None:
        super().__init__()
        _check_depth(depth)
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes),
                            ("base", base)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        self.in_channels, self.num_classes, self.base = in_channels, num_classes, base
        self.padding, self.depth, self.up_mode = bool(padding), depth, up
        opts = {"padding": self.padding, "batch_norm": batch_norm}
        channels = [base * 2**level for level in range(depth + 1)]  # 64, 128, ..., 1024

        # Contracting path: a DoubleConv at full resolution, then `depth` DownBlocks; the last
        # one is the bottom of the U. The outputs of all but the last are the skips.
        self.contracting = nn.ModuleList([DoubleConv(in_channels, channels[0], **opts)])
        for cin, cout in zip(channels[:-1], channels[1:], strict=True):
            self.contracting.append(DownBlock(cin, cout, **opts))
        # Expansive path: from the bottom (1024 channels) back up to 64.
        self.expansive = nn.ModuleList(
            UpBlock(cin, cout, up=up, **opts)
            for cin, cout in zip(channels[:0:-1], channels[-2::-1], strict=True))
        # "At the final layer a 1x1 convolution is used to map each 64-component feature
        # vector to the desired number of classes."
        self.classifier = nn.Conv2d(channels[0], num_classes, kernel_size=1)

    def output_size(self, size: int) -> int:
        """Output length for an input of ``size`` pixels (``size`` itself with padding)."""
        return size if self.padding else unet_output_size(size, self.depth)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_image_batch(x, self.in_channels)
        h, w = x.shape[-2:]
        if self.padding:
            x = pad_to_multiple(x, 2**self.depth)   # (N, C, H', W'): every pool halves exactly
        else:
            check_valid_input(h, w, self.depth)     # ValueError naming the nearest valid sizes
        # Shapes for the paper's 572x572 input (padding=False, base 64):
        skips = []
        for block in self.contracting[:-1]:
            x = block(x)                  # 568x568x64, 280x280x128, 136x136x256, 64x64x512
            skips.append(x)
        x = self.contracting[-1](x)       # bottom: pool 32x32x512 -> convs 28x28x1024
        for block, skip in zip(self.expansive, reversed(skips), strict=True):
            x = block(x, skip)            # 52x52x512, 100x100x256, 196x196x128, 388x388x64
        out = self.classifier(x)          # 388x388xnum_classes
        if self.padding:
            out = out[..., :h, :w]        # crop the padding: (N, num_classes, H, W)
        return {"out": out}


def unet(
    num_classes: int = 2,
    *,
    width: float = 1.0,
    in_channels: int = 3,
    padding: bool = True,
    up: str = "transpose",
    batch_norm: bool = False,
    depth: int = 4,
) -> UNet:
    """The zoo's U-Net: ``base = 64 * width`` channels (the CPU profile uses width 0.125).

    The paper's network is ``UNet(1, 2, padding=False)`` (one grey channel, valid convs).
    """
    return UNet(in_channels, num_classes, scaled(64, width), padding=padding, up=up,
                batch_norm=batch_norm, depth=depth)


# --------------------------------------------------------------------------------------------
# 3. Sizes with valid convolutions (Sec. 2: "select the input tile size such that all 2x2
#    max-pooling operations are applied to a layer with an even x- and y-size")
# --------------------------------------------------------------------------------------------


def _double_conv_size(size: int) -> int:
    for _ in range(2):
        size = conv_output_size(size, kernel_size=3)  # valid 3x3: loses 2 pixels
    return size


def _check_depth(depth: int) -> None:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth (the number of max-pools) must be a positive int, got "
                         f"{depth!r}.")


def _output_size_or_reason(size: int, depth: int) -> tuple[int | None, str]:
    """The valid U-Net's output size, or None and why ``size`` does not work."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        return None, f"the size must be a positive int, got {size!r}"
    n = size
    for level in range(depth):
        if n < 5:
            return None, f"the map at level {level} is only {n} pixels before its 3x3 convs"
        n = _double_conv_size(n)
        if n % 2:
            return None, f"the map before max-pool {level + 1} is {n} pixels, which is odd"
        n = conv_output_size(n, kernel_size=2, stride=2)
    if n < 5:
        return None, f"the bottom map is only {n} pixels before its 3x3 convs"
    n = _double_conv_size(n)                         # bottom of the U (30 -> 28 for 572)
    for _ in range(depth):
        n = conv_transpose_output_size(n, kernel_size=2, stride=2)
        if n < 5:
            return None, f"an upsampled map is only {n} pixels before its 3x3 convs"
        n = _double_conv_size(n)
    return n, ""


def unet_output_size(size: int, depth: int = 4) -> int:
    """Output length of the paper's U-Net (valid convs, ``depth`` max-pools) along one axis.

    Each level's two 3x3 convs remove 4 pixels, each max-pool halves, each up-convolution
    doubles: 572 -> 568 -> 284 -> 280 -> 140 -> 136 -> 68 -> 64 -> 32 -> 28 (bottom)
    -> 56 -> 52 -> 104 -> 100 -> 200 -> 196 -> 392 -> 388.

    Raises:
        ValueError: if a map before a max-pool is odd or the input is too small, naming the
            nearest sizes that work.
    """
    _check_depth(depth)
    out, reason = _output_size_or_reason(size, depth)
    if out is None:
        raise ValueError(_invalid_size_message(size, depth, reason))
    return out


def valid_input_sizes(low: int, high: int, depth: int = 4) -> list[int]:
    """Every input size in ``[low, high]`` a valid-convolution U-Net of ``depth`` accepts.

    They are ``2**depth`` apart (a size that works shifted by one pooling cell of the bottom).
    """
    _check_depth(depth)
    return [n for n in range(max(1, low), high + 1) if _output_size_or_reason(n, depth)[0]]


def nearest_valid_sizes(size: int, depth: int = 4) -> tuple[int | None, int]:
    """The largest valid input size ``<= size`` (None if there is none) and the smallest
    ``>= size``. For a valid ``size`` both are ``size``; for 500 (depth 4): (492, 508)."""
    _check_depth(depth)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}.")
    step = 2 ** depth
    below = next((n for n in range(size, max(size - step, 0), -1)
                  if _output_size_or_reason(n, depth)[0]), None)
    above = size
    while _output_size_or_reason(above, depth)[0] is None:
        above += 1
    return below, above


def check_valid_input(height: int, width: int, depth: int = 4) -> None:
    """Raise a ValueError that names the nearest sizes that work when a valid-convolution
    U-Net cannot take a ``height x width`` input."""
    for side in (int(height), int(width)):
        out, reason = _output_size_or_reason(side, depth)
        if out is None:
            raise ValueError(f"input is {height}x{width}: "
                             + _invalid_size_message(side, depth, reason))


def _invalid_size_message(size: int, depth: int, reason: str) -> str:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        return f"unet_output_size: {reason}."
    below, above = nearest_valid_sizes(size, depth)
    if below is None:
        reason = f"it is too small ({reason})"
    use = (f"use {below} or {above} (outputs {unet_output_size(below, depth)} and "
           f"{unet_output_size(above, depth)})" if below is not None else
           f"the smallest size that works is {above} (output {unet_output_size(above, depth)})")
    return (f"a U-Net with valid convolutions (padding=False) and {depth} max-pools cannot "
            f"take an input of {size} pixels: {reason}. Expected a size where every pooled "
            f"map is even; {use}, or build the model with padding=True for any size.")


# --------------------------------------------------------------------------------------------
# 4. Training and inference tools (Sec. 3, eq. 2; Sec. 2, Fig. 2)
# --------------------------------------------------------------------------------------------


def weight_map(instances: torch.Tensor, w0: float = 10.0, sigma: float = 5.0) -> torch.Tensor:
    """The paper's loss weight map (eq. 2) from an instance-id mask (0 = background).

    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))``, where d1 and d2 are
    the (Euclidean) distances to the nearest and the second-nearest cell.

    * ``w_c`` balances the class frequencies of this mask: a pixel of class c (background or
      cell) gets ``N / (2 * N_c)``, so both classes carry the same total weight (1 everywhere
      when only one class is present). The paper does not say how it computes ``w_c``.
    * The border term is added on background pixels only. Inside a cell d1 = 0 and the
      term would weight cell pixels near a neighbour; its purpose is the "separating
      background labels between touching cells" (Sec. 3), which is where Fig. 3d is bright.
      With fewer than two cells there is no second-nearest cell and no border term.

    Returns a float32 (H, W) tensor.
    """
    from scipy.ndimage import distance_transform_edt  # scipy is a dependency; import lazily

    if not isinstance(instances, torch.Tensor) or instances.dim() != 2 or (
            instances.is_floating_point() or instances.dtype == torch.bool):
        raise ValueError("instances must be an (H, W) integer tensor of instance ids (0 = "
                         f"background), got {getattr(instances, 'dtype', type(instances))} "
                         f"with shape {tuple(getattr(instances, 'shape', ()))}.")
    if instances.numel() and int(instances.min()) < 0:
        raise ValueError("instance ids must be >= 0 (0 = background, 1, 2, ... = cells), "
                         f"got {int(instances.min())}.")
    ids = instances.cpu().numpy()
    cell = ids > 0
    weights = np.ones(ids.shape, dtype=np.float64)
    n_cell = int(cell.sum())
    if 0 < n_cell < ids.size:  # class balance: each class gets total weight N / 2
        weights[cell] = ids.size / (2 * n_cell)
        weights[~cell] = ids.size / (2 * (ids.size - n_cell))
    labels = np.unique(ids[cell])
    if len(labels) >= 2:
        # distance from every pixel to the nearest pixel of each cell: (K, H, W)
        dist = np.stack([distance_transform_edt(ids != k) for k in labels])
        dist.partition(1, axis=0)                       # dist[0] = d1, dist[1] = d2
        border = w0 * np.exp(-((dist[0] + dist[1]) ** 2) / (2 * sigma**2))
        weights[~cell] += border[~cell]
    return torch.from_numpy(weights.astype(np.float32))


def separated_cells(pred: torch.Tensor, instances: torch.Tensor,
                    min_iou: float = 0.5) -> tuple[int, int]:
    """How many cells a prediction separates: ``(recovered, total)`` for one image.

    ``pred`` is an (H, W) label map (class 1 = cell, as in :class:`segedu.data.TouchingCells`)
    or bool mask; its connected components (4-connectivity) are the predicted cells. A
    ground-truth cell of ``instances`` (0 = background) counts as recovered when one
    component overlaps it with IoU > ``min_iou``. With ``min_iou >= 0.5`` a component can
    match at most one cell, so two touching cells predicted as one blob count at most once.
    """
    from scipy import ndimage

    if pred.shape != instances.shape or pred.dim() != 2:
        raise ValueError(f"pred and instances must both be (H, W), got {tuple(pred.shape)} "
                         f"and {tuple(instances.shape)}.")
    components, _ = ndimage.label((pred == 1).cpu().numpy())
    ids = instances.cpu().numpy()
    recovered, total = 0, 0
    for k in np.unique(ids[ids > 0]):
        cell = ids == k
        total += 1
        found, counts = np.unique(components[cell], return_counts=True)
        for c, inter in zip(found, counts, strict=True):
            if c and inter / (cell.sum() + (components == c).sum() - inter) > min_iou:
                recovered += 1
                break
    return recovered, total


def _mirror_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflect-pad (N, C, H, W); pads larger than the image are done in rounds."""
    while top or bottom or left or right:
        h, w = x.shape[-2:]
        step = [min(left, w - 1), min(right, w - 1), min(top, h - 1), min(bottom, h - 1)]
        x = F.pad(x, step, mode="reflect")
        left, right, top, bottom = (left - step[0], right - step[1], top - step[2],
                                    bottom - step[3])
    return x


@torch.no_grad()
def overlap_tile_predict(model: UNet, image: torch.Tensor, tile: int = 572) -> torch.Tensor:
    """Predict an image of any size with a valid-convolution U-Net, tile by tile (Fig. 2).

    1. Mirror the image by the network's border ``b = (tile - out) / 2`` on every side
       ("the missing context is extrapolated by mirroring the input image");
    2. cut ``tile x tile`` input tiles whose outputs cover the image. Consecutive tiles are
       ``step`` output pixels apart, where ``step`` is ``out`` rounded down to a multiple of
       ``2**depth``: then every tile sees the max-pools at the same phase as one pass over the
       whole image would, and the stitched result *equals* that pass (388 is not a multiple
       of 16, so the paper's tiles at 388-pixel steps would differ slightly);
    3. stitch the first ``step`` rows/columns of each tile's output (the last tile gives what
       is left) and return logits (N, num_classes, H, W) for the whole image.

    The model is put in eval mode. ``tile`` must be a valid input size of the model.
    """
    if not isinstance(model, UNet) or model.padding:
        raise ValueError("overlap_tile_predict needs a U-Net with valid convolutions "
                         "(UNet(..., padding=False)); a padded U-Net predicts any size "
                         "directly.")
    check_image_batch(image, model.in_channels)
    out = model.output_size(tile)  # raises with the nearest valid tile sizes
    border, step = (tile - out) // 2, out - out % 2**model.depth
    model.eval()
    n, _, h, w = image.shape
    rows, cols = range(0, h, step), range(0, w, step)
    # Reflect by the border; the last tile may reach past it: those outputs are cut off and
    # the extra input only has to exist, so it is zero-padded.
    padded = _mirror_pad(image, border, border, border, border)
    extra_h, extra_w = rows[-1] + tile - padded.shape[-2], cols[-1] + tile - padded.shape[-1]
    padded = F.pad(padded, (0, max(extra_w, 0), 0, max(extra_h, 0)))
    result = image.new_empty(n, model.num_classes, h, w)
    for top in rows:
        for left in cols:
            logits = model(padded[..., top:top + tile, left:left + tile])["out"]  # (N, K, out, out)
            hh, ww = min(step, h - top), min(step, w - left)
            result[..., top:top + hh, left:left + ww] = logits[..., :hh, :ww]
    return result

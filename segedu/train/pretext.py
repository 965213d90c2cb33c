"""Pretraining a reduced-width backbone on a CPU, as ImageNet pretraining does on a GPU.

On a GPU every chapter starts its backbone from ImageNet weights (FCN Sec. 4.1, DeepLab Sec. 4,
PSPNet Sec. 5.1, RefineNet Sec. 4). There are no ImageNet weights for the CPU profile's
networks at width 1/8, and training them on ImageNet is not a CPU job. This module is the CPU
profile's stand-in: a *pretext task* on other synthetic images, learnt once by
``benchmarks/pretrain_backbones.py`` and shipped with the package (see
:mod:`segedu.backbones.pretrained`).

The pretext is **objectness**: object or background at every pixel of ShapeScenes images
drawn with a seed no task uses (:data:`PRETEXT_SEED`), whatever the object's class. It is
dense and class-agnostic: the backbone learns edges, textures against objects, and where an
object ends, but never sees a class name of the shape task. ImageNet's own recipe in miniature
(classify one object per image) was measured beside it and helps less:
``benchmarks/results/pretrain_probe_6000it.json`` (DeepLab v3-R50 on the shape task at 768
iterations: random weights 0.205 ± 0.018 mIoU, classification-pretrained 0.273 ± 0.021,
objectness-pretrained 0.455 ± 0.022, three seeds each).

The network trained is the backbone with two 1x1 scorers (:class:`Objectness`): one on the
deepest map and one on a stride-4 map, summed after upsampling the deep one (FCN's skip idea,
chapter 1), so that the early layers get a direct signal too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import mobilenet_v3_large, resnet50, resnet101, vgg16_bn, xception65
from ..core.metrics import ConfusionMatrix
from ..data import ShapeScenes
from ..data.transforms import eval_transforms

__all__ = ["PRETEXT_SEED", "PRETEXT_BACKBONES", "PretextRecipe", "Objectness",
           "objectness_targets", "foreground_iou", "pretext_images", "pretrain_objectness",
           "stack"]

#: The ShapeScenes seed of the pretext images: no task's training or validation split uses it.
PRETEXT_SEED = 1009

#: Backbone name -> (builder, options, deep map, stride-4 map). ResNets and MobileNetV3 are
#: dilated as their segmentation networks use them (stride 8 and 16); dilation changes no
#: weight, so the weights serve the undilated network as well.
PRETEXT_BACKBONES: dict[str, tuple[Callable[..., nn.Module], dict, str, str]] = {
    "resnet50": (resnet50, {"replace_stride_with_dilation": [False, True, True]},
                 "layer4", "layer1"),
    "resnet101": (resnet101, {"replace_stride_with_dilation": [False, True, True]},
                  "layer4", "layer1"),
    "vgg16_bn": (vgg16_bn, {}, "pool5", "pool2"),
    "mobilenet_v3_large": (mobilenet_v3_large, {"dilated": True}, "C5", "C1"),
    "xception65": (xception65, {}, "out", "low_level"),
}


@dataclass(frozen=True)
class PretextRecipe:
    """Everything that decides the pretrained weights (stored with them)."""

    arch: str
    width: float = 0.125
    iterations: int = 6000
    images: int = 4096       # pretext training images (64x64, up to 4 objects each)
    val_images: int = 256
    batch_size: int = 8
    lr: float = 3e-3         # AdamW, one-cycle schedule
    weight_decay: float = 1e-4
    image_size: int = 64
    seed: int = 0            # model initialisation and batch order

    def as_dict(self) -> dict:
        return asdict(self)


class Objectness(nn.Module):
    """A backbone with two 1x1 scorers (object / background): on the deep map and on the
    stride-4 map, summed at stride 4 and upsampled to the input."""

    def __init__(self, arch: str, width: float = 0.125) -> None:
        super().__init__()
        if arch not in PRETEXT_BACKBONES:
            raise ValueError(f"no pretext recipe for backbone {arch!r}; choose one of "
                             f"{sorted(PRETEXT_BACKBONES)}.")
        build, options, self.deep_name, self.shallow_name = PRETEXT_BACKBONES[arch]
        self.backbone = build(include_top=False, width=width, **options)
        channels = self.backbone.feature_channels
        self.deep = nn.Conv2d(channels[self.deep_name], 2, 1)
        self.shallow = nn.Conv2d(channels[self.shallow_name], 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone.forward_features(x)
        low = f[self.shallow_name]                                   # (N, C1, H/4, W/4)
        y = self.shallow(low) + F.interpolate(self.deep(f[self.deep_name]), size=low.shape[-2:],
                                              mode="bilinear", align_corners=False)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


def objectness_targets(mask: torch.Tensor) -> torch.Tensor:
    """A class mask as object (1) / background (0); the ignored edge band (255) stays 255."""
    return torch.where(mask == 255, mask, (mask > 0).long())


def stack(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole data set as one image batch and one mask batch."""
    pairs = [dataset[i] for i in range(len(dataset))]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


@torch.no_grad()
def foreground_iou(model: nn.Module, images: torch.Tensor, masks: torch.Tensor) -> float:
    """IoU of the object class of an :class:`Objectness` model on ``images`` (eval mode)."""
    was_training = model.training
    model.eval()
    iou = ConfusionMatrix(2).update(model(images), objectness_targets(masks)).compute()["iou"]
    model.train(was_training)
    return float(iou[1])


def pretext_images(recipe: PretextRecipe, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The pretext's training or held-out images and masks (ShapeScenes, :data:`PRETEXT_SEED`)."""
    n = recipe.images if split == "train" else recipe.val_images
    return stack(ShapeScenes(split, recipe.image_size, n, PRETEXT_SEED,
                              eval_transforms(None)))


def pretrain_objectness(recipe: PretextRecipe, log: Callable[[str], None] = print,
                        every: int = 250) -> tuple[Objectness, list[dict]]:
    """Train :class:`Objectness` for ``recipe.iterations`` steps; returns the model and its
    learning curve (loss, held-out foreground IoU and seconds, every ``every`` steps)."""
    torch.manual_seed(recipe.seed)
    model = Objectness(recipe.arch, recipe.width)
    x, m = pretext_images(recipe, "train")
    vx, vm = pretext_images(recipe, "val")
    y = objectness_targets(m)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, recipe.lr, total_steps=recipe.iterations)
    draw = torch.Generator().manual_seed(recipe.seed)
    curve, start = [], time.perf_counter()
    model.train()
    for step in range(1, recipe.iterations + 1):
        i = torch.randint(0, len(x), (recipe.batch_size,), generator=draw)
        xb, yb = x[i], y[i]
        if torch.rand(1, generator=draw).item() < 0.5:  # horizontal flip
            xb, yb = xb.flip(-1), yb.flip(-1)
        loss = F.cross_entropy(model(xb), yb, ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        if step % every == 0 or step == recipe.iterations:
            curve.append({"iteration": step, "loss": round(loss.item(), 4),
                          "val_foreground_iou": round(foreground_iou(model, vx, vm), 4),
                          "seconds": round(time.perf_counter() - start, 1)})
            log(f"  {recipe.arch} {curve[-1]}")
    model.eval()
    return model, curve

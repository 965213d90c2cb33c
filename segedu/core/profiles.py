"""Profiles: one set of sizes for a GPU, one for a CPU, so every notebook runs anywhere.

On a GPU (Colab) a chapter uses real data (Oxford-IIIT Pet through torchvision), the
full-width network of the paper and ImageNet-pretrained backbones. On a CPU it uses the
offline synthetic set at 64x64 and the *same* architecture at reduced width (a width
multiplier on every channel count) with BatchNorm, because a 134M-parameter FCN cannot learn
anything in a CPU minute. Parameter counts and paper facts are always quoted for the
full-width network.

Force a profile with ``get_profile("cpu")`` or the environment variable
``SEGEDU_PROFILE=cpu`` (useful to check the CPU path on a GPU machine).

``SEGEDU_PROFILE=ci`` is the CPU profile shrunk to a smoke test (64 training images, one epoch):
the test suite runs every lesson notebook with it, to prove that every cell runs and that the
deterministic outputs (shapes, parameter counts, receptive fields) are reproduced, while the
stored outputs a learner reads come from the full CPU profile. Never draw a conclusion from a
``ci`` run: its models are barely trained.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import torch

from .utils import get_device

__all__ = ["Profile", "get_profile", "PROFILES"]


@dataclass(frozen=True)
class Profile:
    """Sizes and data for one kind of machine. ``device`` is filled in by :func:`get_profile`."""

    name: str
    dataset: str          # "synthetic" (offline) or "oxford_pet" (downloaded)
    image_size: int       # training crops are image_size x image_size
    width: float          # channel multiplier of the networks (1.0 = the paper's)
    batch_norm: bool      # VGG16 with BatchNorm (needed to train reduced width from scratch)
    pretrained: bool      # ImageNet-pretrained backbones (needs the internet)
    batch_size: int
    epochs: int
    lr: float
    train_length: int | None = None  # None: the whole split
    val_length: int | None = None
    augment: bool = True  # random scale/crop/flip/colour jitter (train_transforms)
    dropout: float = 0.5  # FCN's fc6/fc7 dropout (0.5 in the paper)
    device: torch.device = torch.device("cpu")

    def images(self, n: int) -> int:
        """``n`` training images, capped at this profile's ``train_length`` (a notebook asks for
        what its experiment needs; the CI profile's cap keeps the suite fast)."""
        return n if self.train_length is None else min(n, self.train_length)

    def describe(self) -> str:
        net = ("full-width networks (as in the papers)" if self.width == 1.0 else
               f"networks at width x{self.width:g} of the paper's (same layers, fewer channels)")
        data = "" if self.augment else " (not augmented: every synthetic image is new)"
        return (f"profile {self.name!r}: {self.dataset} data at {self.image_size}x"
                f"{self.image_size}{data}, {net}{', with BatchNorm' if self.batch_norm else ''}, "
                f"{'ImageNet-pretrained' if self.pretrained else 'randomly initialised'} "
                f"backbones, {self.epochs} epochs of batch {self.batch_size}, on {self.device}.")


PROFILES: dict[str, Profile] = {
    "cpu": Profile(name="cpu", dataset="synthetic", image_size=64, width=0.125,
                   batch_norm=True, pretrained=False, batch_size=8, epochs=3, lr=3e-3,
                   train_length=2048, val_length=128, augment=False, dropout=0.1),
    "ci": Profile(name="ci", dataset="synthetic", image_size=64, width=0.125,
                  batch_norm=True, pretrained=False, batch_size=8, epochs=1, lr=3e-3,
                  train_length=64, val_length=16, augment=False, dropout=0.1),
    "gpu": Profile(name="gpu", dataset="oxford_pet", image_size=256, width=1.0,
                   batch_norm=False, pretrained=True, batch_size=16, epochs=8, lr=1e-4),
}


def get_profile(name: str | None = None, *, device: torch.device | str | None = None,
                verbose: bool = True) -> Profile:
    """The profile for this machine: ``"gpu"`` when CUDA is available, else ``"cpu"``.

    ``name`` (or ``SEGEDU_PROFILE``) forces one; ``device`` forces the device.
    """
    dev = torch.device(device) if device is not None else get_device(verbose=verbose)
    name = name or os.environ.get("SEGEDU_PROFILE") or ("gpu" if dev.type == "cuda" else "cpu")
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}.")
    profile = replace(PROFILES[name], device=dev)
    if verbose:
        print(profile.describe())
    return profile

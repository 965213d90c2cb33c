"""Global context, measured: FCN head vs PSP head on the same dilated ResNet-50 (width 1/8),
trained on ContextShapes (the same object is a boat on water and a car on a road, inside fog).

Reports, per model and seed, the boat/car confusion (the share of object pixels given the other
vehicle class), mIoU and training time. Run: ``python3 benchmarks/pspnet_context.py [seeds]``.

Measured (CPU, ``OMP_NUM_THREADS=1``, seeds 0-4; 512 training images, 3 epochs of batch 8, AdamW
3e-3 with poly decay, as notebook 04's CPU profile):

    boat/car confusion   FCN head  0.000 0.291 0.261 0.008 0.014   mean 0.115
                         PSP head  0.064 0.064 0.289 0.275 0.005   mean 0.139
    mIoU                 FCN head  0.777 0.547 0.550 0.771 0.761   mean 0.681
                         PSP head  0.693 0.703 0.529 0.510 0.766   mean 0.640

No advantage for the pyramid at 64x64: the dilated ResNet-50's receptive field (~450 px) covers
the whole image, so the FCN head has global context too (notebook 04, section 5). Seed 0 was run
with two threads; the others with one.
"""

from __future__ import annotations

import sys
import time

import torch
from torch.utils.data import DataLoader

import segedu
from segedu.core.metrics import ConfusionMatrix
from segedu.data import ContextShapes, eval_transforms
from segedu.pspnet import pspnet
from segedu.train import fit, predict


def vehicle_confusion(model: torch.nn.Module, loader: DataLoader) -> dict[str, float]:
    """Share of boat/car pixels labelled as the *other* vehicle, and the mIoU."""
    cm = ConfusionMatrix(3)
    for images, target in loader:
        cm.update(predict(model, images), target)
    m = cm.matrix.double()
    wrong, vehicles = m[1, 2] + m[2, 1], m[1:].sum()
    return {"confusion": float(wrong / vehicles), "miou": cm.compute()["miou"]}


def loaders(n_train: int = 512, batch: int = 8, size: int = 64, seed: int = 0):
    tf = eval_transforms()
    train = ContextShapes("train", size=size, length=n_train, transforms=tf)
    val = ContextShapes("val", size=size, length=128, transforms=tf)
    generator = torch.Generator().manual_seed(seed)
    return (DataLoader(train, batch_size=batch, shuffle=True, drop_last=True, generator=generator),
            DataLoader(val, batch_size=64))


def run(seed: int, epochs: int = 3, n_train: int = 512) -> dict[str, dict[str, float]]:
    train_loader, val_loader = loaders(n_train, seed=seed)
    builders = {"FCN head": lambda: segedu.build_model("fcn_resnet50", 3, width=0.125, aux=True),
                "PSP head": lambda: pspnet(3, width=0.125, aux=True)}
    results = {}
    for name, build in builders.items():
        segedu.set_seed(seed)
        model = build()
        start = time.perf_counter()
        fit(model, train_loader, num_classes=3, epochs=epochs, lr=3e-3, progress=False,
            log=lambda line, name=name: print(f"  {name}: {line}", flush=True))
        results[name] = {**vehicle_confusion(model, val_loader),
                         "seconds": time.perf_counter() - start}
    return results


if __name__ == "__main__":
    seeds = [int(s) for s in sys.argv[1:]] or [0, 1, 2]
    for seed in seeds:
        for name, r in run(seed).items():
            print(f"seed {seed} {name}: boat/car confusion {r['confusion']:.3f}  "
                  f"mIoU {r['miou']:.3f}  {r['seconds']:.0f} s", flush=True)

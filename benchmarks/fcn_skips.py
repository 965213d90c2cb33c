"""What FCN's skips buy, over several seeds: FCN-32s vs FCN-16s vs FCN-8s on the CPU profile.

    python benchmarks/fcn_skips.py [--seeds 0 1 2] [--epochs 3] [--train-images 2048]

Same data, widths, epochs and learning rate as notebook 01's CPU profile (synthetic 64x64,
VGG16 at 1/8 width with BatchNorm). Reports mean and spread of mIoU, boundary F1 (2 px
tolerance) and training time. Measured here (2-core CPU, torch 2.15, 2026-11-25, seeds 0-2,
defaults):

    model     mIoU           boundary F1    train s
    fcn32s    0.199 ± 0.013  0.122 ± 0.026  25.9
    fcn16s    0.621 ± 0.025  0.616 ± 0.014  23.4
    fcn8s     0.825 ± 0.009  0.891 ± 0.004  23.3

At 64x64 pool5 is 2x2, so FCN-32s barely localises anything; the gap is far larger than the
paper's (63.6 / 65.0 / 65.5 mean IU on VOC seg11valid at ~500 px).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import segedu
from segedu.core.metrics import ConfusionMatrix, boundary_f1
from segedu.data import make_loaders
from segedu.train import fit, predict


def run(name: str, seed: int, args: argparse.Namespace) -> dict[str, float]:
    profile = segedu.get_profile("cpu", device="cpu", verbose=False)
    segedu.set_seed(seed)
    train_loader, val_loader, classes = make_loaders(
        "synthetic", size=profile.image_size, batch_size=profile.batch_size,
        train_length=args.train_images, val_length=profile.val_length, seed=seed,
        augment=profile.augment)
    model = segedu.build_model(name, len(classes), width=profile.width,
                               batch_norm=profile.batch_norm, dropout=profile.dropout)
    start = time.perf_counter()
    fit(model, train_loader, val_loader, num_classes=len(classes), epochs=args.epochs,
        lr=profile.lr, progress=False, log=None)
    seconds = time.perf_counter() - start
    cm, preds, targets = ConfusionMatrix(len(classes)), [], []
    for images, target in val_loader:
        pred = predict(model, images)
        cm.update(pred, target)
        preds.append(pred)
        targets.append(target)
    return {"miou": cm.compute()["miou"],
            "boundary_f1": boundary_f1(torch.cat(preds), torch.cat(targets)),
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["fcn32s", "fcn16s", "fcn8s"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=2048)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, seeds {args.seeds}, "
          f"{args.epochs} epochs of {args.train_images} images")
    print(f"{'model':<8}{'mIoU':>16}{'boundary F1':>16}{'train s':>10}")
    for name in args.models:
        runs = [run(name, seed, args) for seed in args.seeds]

        def stat(key: str, runs: list[dict[str, float]] = runs) -> str:
            values = [r[key] for r in runs]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.mean(values):.3f} ± {spread:.3f}"

        seconds = statistics.mean(r["seconds"] for r in runs)
        print(f"{name:<8}{stat('miou'):>16}{stat('boundary_f1'):>16}{seconds:>10.1f}",
              flush=True)


if __name__ == "__main__":
    main()

"""What U-Net's loss weight map buys on touching cells, over seeds and training lengths.

    python benchmarks/unet_weight_map.py [--seeds 0 1 2] [--epochs 3 6] [--train-images 512]

The experiment of notebook 03 (CPU profile): a padded U-Net at 1/8 width (base 8) with
BatchNorm, trained on TouchingCells (64x64) with plain cross-entropy and with the paper's
weight map (w0 = 10, sigma = 5 px), same data, seed, epochs and learning rate. Reports
validation mIoU and the share of ground-truth cells recovered as their own connected
component (IoU > 0.5, :func:`segedu.unet.separated_cells`). Measured here (2-core CPU shared
with other jobs, torch 2.14, 2026-11-27, seeds 0-2, 512 training images; training times were
distorted by the other jobs, 3-10 s per epoch, and are left out):

    epochs  loss        mIoU           cells separated
         3  plain CE    0.936 ± 0.009  0.595 ± 0.159
         3  weighted    0.946 ± 0.002  0.932 ± 0.020
         6  plain CE    0.953 ± 0.001  0.860 ± 0.036
         6  weighted    0.953 ± 0.001  0.960 ± 0.017

With the weight map most cells come out separated after 3 epochs; plain cross-entropy needs
longer and stays behind at 6, while mIoU hardly tells the two apart.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader

import segedu
from segedu.core.metrics import ConfusionMatrix
from segedu.data import TouchingCells
from segedu.train import fit, predict
from segedu.unet import separated_cells, weight_map


def run(weighted: bool, seed: int, epochs: int, args: argparse.Namespace) -> dict[str, float]:
    profile = segedu.get_profile("cpu", device="cpu", verbose=False)
    train = TouchingCells("train", length=args.train_images, seed=seed,
                          weight_map=weight_map if weighted else None)
    val = TouchingCells("val", length=128, seed=seed)
    segedu.set_seed(seed)
    model = segedu.build_model("unet", 2, width=profile.width, in_channels=1,
                               batch_norm=profile.batch_norm)
    loader = DataLoader(train, batch_size=profile.batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    start = time.perf_counter()
    fit(model, loader, num_classes=2, epochs=epochs, lr=profile.lr, progress=False, log=None)
    seconds = time.perf_counter() - start
    cm, found, total = ConfusionMatrix(2), 0, 0
    images = torch.stack([val[i][0] for i in range(len(val))])
    preds = predict(model, images)
    for i, pred in enumerate(preds):
        cm.update(pred[None], val[i][1][None])
        got, n = separated_cells(pred, val.instances(i))
        found, total = found + got, total + n
    return {"miou": cm.compute()["miou"], "separated": found / total, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", nargs="+", type=int, default=[3, 6])
    parser.add_argument("--train-images", type=int, default=512)
    args = parser.parse_args()
    print(f"{'epochs':>6} {'loss':>10} {'mIoU':>15} {'cells separated':>17} {'train s':>8}")
    for epochs in args.epochs:
        for weighted in (False, True):
            runs = [run(weighted, seed, epochs, args) for seed in args.seeds]

            def stat(key: str, runs: list = runs) -> str:
                values = [r[key] for r in runs]
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                return f"{statistics.mean(values):.3f} ± {spread:.3f}"

            name = "weighted" if weighted else "plain CE"
            print(f"{epochs:>6} {name:>10} {stat('miou'):>15} {stat('separated'):>17} "
                  f"{statistics.mean(r['seconds'] for r in runs):>8.1f}", flush=True)


if __name__ == "__main__":
    main()

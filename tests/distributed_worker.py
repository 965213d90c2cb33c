"""Run by tests/test_distributed.py: once in-process (a world of one) and once per process under
``torchrun --nproc_per_node 2`` with gloo. Same model, data and schedule; the per-process batch
is the global batch divided by the number of processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch import nn

from segedu.data import SyntheticShapes, train_transforms
from segedu.train import Trainer
from segedu.train import distributed as dist_utils

GLOBAL_BATCH = 4


class Net(nn.Module):
    """No BatchNorm (without SyncBatchNorm, which needs GPUs, each process would normalise its
    own half batch) and no dropout (each process draws its own masks): what remains must
    match exactly, up to the order of floating-point sums."""

    def __init__(self, num_classes=5):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.ReLU())
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, x):
        return {"out": self.head(self.body(x))}


def run(out_dir: str | Path) -> dict | None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    torch.manual_seed(0)
    model = Net()
    # Scale >= 1 (crops never need padding) and no ignore band around objects: every process
    # has the same number of labelled pixels, so DDP's average of per-process means is the
    # mean over the whole batch (with ignored pixels they weight pixels slightly differently).
    train = SyntheticShapes("train", size=32, length=16, ignore_boundary=False,
                            transforms=train_transforms(24, scale=(1.0, 1.5), normalize=False))
    val = SyntheticShapes("val", size=32, length=6)
    trainer = Trainer(model, train, val, num_classes=5, epochs=2,
                      batch_size=GLOBAL_BATCH // world, lr=0.05, progress=False,
                      out_dir=Path(out_dir) / f"rank{dist_utils.rank()}")
    trainer.fit()
    result = {"state": {k: v.clone() for k, v in model.state_dict().items()},
              "metrics": trainer.evaluate(), "losses": trainer.history.iterations,
              "world": dist_utils.world_size()}
    if dist_utils.is_main():
        torch.save(result, Path(out_dir) / f"result_world{world}.pt")
    return result


if __name__ == "__main__":
    run(sys.argv[1])
    if dist_utils.world_size() > 1:
        torch.distributed.destroy_process_group()

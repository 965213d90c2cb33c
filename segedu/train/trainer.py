"""The chapter 7 Trainer: the papers' recipe, checkpoints that resume exactly, one or many GPUs.

Read it top to bottom; it is plain PyTorch:

1. ``__init__`` builds the data pipeline (:class:`SeededSamples` + :class:`ResumableSampler`),
   the optimizer with parameter groups (heads at ``head_lr_mult`` x lr), the poly schedule
   (with warm-up and a floor), the loss (:class:`~segedu.losses.SegmentationLoss`), and, on
   CUDA with ``amp=True``, autocast + a gradient scaler.
2. :meth:`Trainer.train_step` is one iteration: forward, loss, backward, step, schedule.
3. :meth:`Trainer.fit` loops over epochs, evaluates after each, writes ``history.csv``,
   ``history.png``, ``last.pt`` and ``best.pt`` (write to a temporary file, then rename, so a
   crash never leaves half a checkpoint), and can stop after any iteration (``stop_after``).
4. :meth:`Trainer.evaluate` counts a confusion matrix (summed over processes), optionally with
   sliding-window or multi-scale + flip inference.

**Exact resume.** On the CPU, training ``k`` iterations, saving, building a new Trainer and
resuming gives bit for bit the loss curve and weights of an uninterrupted run. What must be
saved for that: model, optimizer (momentum buffers), scheduler, gradient scaler, the RNG
states (torch CPU and CUDA, NumPy, Python: dropout draws from them), and where the sampler
was. Augmentation randomness is made a function of (seed, epoch, sample index) by
:class:`SeededSamples`, so it does not depend on how many iterations ran before, on the number
of loader workers, or on the number of processes. The loader gets its own ``torch.Generator``,
because creating a loader iterator otherwise draws a number from the global RNG.
(On GPUs, cuDNN's non-deterministic kernels make runs differ slightly anyway.)
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ..core.metrics import ConfusionMatrix
from ..losses import SegmentationLoss
from . import distributed as dist_utils
from .inference import multiscale_probs, sliding_window_probs
from .loop import History
from .schedule import param_groups, poly_schedule

__all__ = ["TrainConfig", "Trainer", "SeededSamples", "evaluate_model"]


@dataclass
class TrainConfig:
    """Everything that defines a run (stored in every checkpoint)."""

    epochs: int = 5
    batch_size: int = 8            # per process
    lr: float = 0.01
    optimizer: str = "sgd"         # "sgd" (momentum; the papers) or "adamw"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    head_lr_mult: float = 1.0      # 10 with a pretrained backbone
    power: float = 0.9             # poly exponent
    warmup_iters: int = 0
    min_lr: float = 0.0
    loss: str | dict = "ce"        # "ce", "ce+dice", {"ce": 1.0, "dice": 0.5}, ...
    loss_options: dict = field(default_factory=dict)
    class_weights: list[float] | None = None
    aux_weight: float = 0.4
    amp: bool = False              # float16 autocast + GradScaler, CUDA only
    sync_bn: bool = False          # SyncBatchNorm across processes (GPUs)
    seed: int = 0
    num_workers: int = 0
    eval_every: int = 1            # epochs between evaluations; 0: never
    checkpoint_every: int = 0      # also save last.pt every this many iterations; 0: per epoch
    progress: bool = True


class SeededSamples(Dataset):
    """Wraps a data set so that sample ``i`` of epoch ``e`` is transformed with the torch RNG
    seeded from ``(seed, e, i)``: its random scale, crop, flip and jitter are the same whoever
    loads it, in whichever worker or process, after whatever came before."""

    def __init__(self, dataset: Dataset, seed: int = 0) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        # Seed the CPU generator for this sample and put its state back afterwards, so the
        # training loop's own draws (dropout) are untouched. torch.default_generator directly:
        # torch.manual_seed / fork_rng also visit every device and cost ~50x more per sample.
        generator = torch.default_generator
        state = generator.get_state()
        generator.manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index)
        try:
            return self.dataset[index]
        finally:
            generator.set_state(state)


@torch.no_grad()
def evaluate_model(model: nn.Module, dataset: Dataset, num_classes: int, *,
                   device: torch.device | str = "cpu", batch_size: int = 8,
                   multiscale: bool = False,
                   scales: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75),
                   window: int | None = None, num_workers: int = 0) -> dict:
    """Confusion-matrix metrics of ``model`` on ``dataset``: each process counts its shard and
    the matrices are summed (a world of one: the whole set). ``window`` evaluates in sliding
    windows, ``multiscale`` averages over ``scales`` and left-right flips."""
    shard = Subset(dataset, dist_utils.shard_indices(len(dataset)))
    loader = DataLoader(shard, batch_size=batch_size, num_workers=num_workers)
    model.eval()
    cm = ConfusionMatrix(num_classes, device=device)
    for images, targets, *_ in loader:
        images, targets = images.to(device), targets.to(device)
        if multiscale:
            scores = multiscale_probs(model, images, scales, flip=True, window=window)
        elif window:
            scores = sliding_window_probs(model, images, window)
        else:
            scores = model(images)["out"]
        cm.update(scores, targets)
    dist_utils.all_reduce_sum(cm.matrix)
    return cm.compute()


def _atomic_save(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # a rename is atomic: readers see the old file or the new one


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Train ``model`` on ``train_set`` (pairs ``(image, mask)``), evaluate on ``val_set``.

    ``config`` is a :class:`TrainConfig`; keyword arguments override its fields. ``out_dir``
    receives ``history.csv``, ``history.png``, ``last.pt`` and ``best.pt`` (rank 0 only).
    ``meta`` is stored in checkpoints as is (the CLI keeps the model name and data there).
    Under ``torchrun`` the process group is joined here and the model wrapped in
    ``DistributedDataParallel``.
    """

    def __init__(self, model: nn.Module, train_set: Dataset, val_set: Dataset | None = None, *,
                 num_classes: int, config: TrainConfig | None = None,
                 out_dir: str | Path | None = None, device: torch.device | str | None = None,
                 meta: Mapping | None = None, **overrides) -> None:
        self.config = cfg = replace(config or TrainConfig(), **overrides)
        self.num_classes, self.meta = num_classes, dict(meta or {})
        self.device = dist_utils.init_distributed() or torch.device(device or "cpu")
        self.out_dir = Path(out_dir) if out_dir is not None else None
        if self.out_dir is not None and dist_utils.is_main():
            self.out_dir.mkdir(parents=True, exist_ok=True)

        # Data: augmentation seeded per sample, a sampler that can start mid-epoch.
        self.train_samples = SeededSamples(train_set, cfg.seed)
        self.sampler = dist_utils.ResumableSampler(self.train_samples, seed=cfg.seed)
        self.train_loader = DataLoader(
            self.train_samples, batch_size=cfg.batch_size, sampler=self.sampler, drop_last=True,
            num_workers=cfg.num_workers, pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed))
        self.iters_per_epoch = self.sampler.num_samples // cfg.batch_size
        if self.iters_per_epoch < 1:
            raise ValueError(f"{len(train_set)} training images give no full batch of "
                             f"{cfg.batch_size} per process; lower batch_size.")
        self.val_set = val_set

        # Model (SyncBatchNorm and DDP only when there are several processes).
        if cfg.sync_bn and dist_utils.world_size() > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(self.device)
        self.net = self.model
        if dist_utils.world_size() > 1:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device] if self.device.type == "cuda" else None)

        # Optimizer, poly schedule over every iteration of the run, loss, AMP.
        groups = param_groups(self.model, cfg.lr, cfg.head_lr_mult, cfg.weight_decay)
        if cfg.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(groups, lr=cfg.lr,
                                                                    momentum=cfg.momentum)
        elif cfg.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
        else:
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {cfg.optimizer!r}.")
        self.total_iters = cfg.epochs * self.iters_per_epoch
        self.scheduler = poly_schedule(self.optimizer, self.total_iters, cfg.power,
                                       warmup_iters=cfg.warmup_iters, min_lr=cfg.min_lr)
        self.loss_fn = SegmentationLoss(cfg.loss, aux_weight=cfg.aux_weight,
                                        class_weights=cfg.class_weights,
                                        options=cfg.loss_options)
        self.amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

        # Where we are.
        self.step, self.epoch, self.best_miou = 0, 0, float("-inf")
        self.history = History()

    # -- one iteration ------------------------------------------------------------------------
    def train_step(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Forward, loss, backward, optimizer and scheduler step. Returns the loss (detached)."""
        images = images.to(self.device, non_blocking=True)
        targets = targets.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            outputs = self.net(images)
        loss = self.loss_fn(outputs, targets)  # in float32: the losses upcast the logits
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.detach()

    # -- the loop -----------------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> History:
        """Train until ``config.epochs`` are done (or ``stop_after`` iterations in total, then
        save ``last.pt`` and return: what a pre-empted job does). Resumable with :meth:`resume`."""
        cfg, main = self.config, dist_utils.is_main()
        while self.epoch < cfg.epochs:
            done_in_epoch = self.step - self.epoch * self.iters_per_epoch
            self.train_samples.epoch = self.epoch
            self.sampler.set_epoch(self.epoch)
            self.sampler.start = done_in_epoch * cfg.batch_size
            self.net.train()
            start = time.perf_counter()
            bar = tqdm(self.train_loader, desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                       leave=False, dynamic_ncols=True, disable=not (cfg.progress and main),
                       initial=done_in_epoch, total=self.iters_per_epoch)
            for images, targets, *_ in bar:
                loss = self.train_step(images, targets)
                if dist_utils.world_size() > 1:  # log the mean over processes
                    loss = dist_utils.all_reduce_sum(loss.clone()) / dist_utils.world_size()
                self.history.iterations.append(loss.item())
                self.step += 1
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save("last.pt")
                if stop_after is not None and self.step >= stop_after:
                    bar.close()
                    self.save("last.pt")
                    return self.history
            bar.close()
            self.epoch += 1
            self._end_of_epoch(time.perf_counter() - start)
        return self.history

    def _end_of_epoch(self, seconds: float) -> None:
        cfg = self.config
        losses = self.history.iterations[-self.iters_per_epoch:]
        record = {"epoch": self.epoch, "loss": sum(losses) / len(losses),
                  "lr": self.optimizer.param_groups[0]["lr"], "seconds": seconds}
        if self.val_set is not None and cfg.eval_every and self.epoch % cfg.eval_every == 0:
            metrics = self.evaluate()
            record.update(miou=metrics["miou"], pixel_acc=metrics["pixel_acc"],
                          iou=metrics["iou"])
        self.history.epochs.append(record)
        if cfg.progress and dist_utils.is_main():
            extra = f"  val mIoU {record['miou']:.3f}" if "miou" in record else ""
            tqdm.write(f"epoch {self.epoch}/{cfg.epochs}  loss {record['loss']:.3f}{extra}")
        if record.get("miou", float("-inf")) > self.best_miou:
            self.best_miou = record["miou"]
            self.save("best.pt")
        self.save("last.pt")
        if self.out_dir is not None and dist_utils.is_main():
            self.history.to_csv(self.out_dir / "history.csv")
            self.history.plot(self.out_dir / "history.png")

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, dataset: Dataset | None = None, **options) -> dict:
        """Metrics on ``dataset`` (default: the validation set); ``options`` go to
        :func:`evaluate_model` (``multiscale``, ``scales``, ``window``, ``batch_size``)."""
        dataset = self.val_set if dataset is None else dataset
        if dataset is None:
            raise ValueError("no validation set: pass one to Trainer(...) or to evaluate().")
        options.setdefault("batch_size", self.config.batch_size)
        return evaluate_model(self.model, dataset, self.num_classes, device=self.device,
                              num_workers=self.config.num_workers, **options)

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": _rng_state(), "step": self.step, "epoch": self.epoch,
                "best_miou": self.best_miou, "history": asdict(self.history),
                "config": asdict(self.config), "num_classes": self.num_classes,
                "meta": self.meta}

    def save(self, name: str) -> Path | None:
        """Write a checkpoint to ``out_dir / name`` atomically (rank 0; others return None)."""
        if self.out_dir is None or not dist_utils.is_main():
            return None
        path = self.out_dir / name
        _atomic_save(self.state_dict(), path)
        return path

    def resume(self, path: str | Path) -> Trainer:
        """Restore everything from a checkpoint; the next :meth:`fit` continues exactly."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state["config"]["epochs"] != self.config.epochs or \
                state["config"]["batch_size"] != self.config.batch_size:
            raise ValueError(f"{path} was made with epochs={state['config']['epochs']}, "
                             f"batch_size={state['config']['batch_size']}; resume with the same "
                             "values (the schedule depends on them).")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        self.step, self.epoch, self.best_miou = state["step"], state["epoch"], state["best_miou"]
        self.history = History(**state["history"])
        return self

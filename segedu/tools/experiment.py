"""The experiment harness: models compared on a diagnostic task under one budget, over seeds.

What a learner who wants to believe a comparison needs, and what this module guarantees:

* **equal budgets**: every model trains on the same images, in the same order for a given seed,
  for the same number of iterations of the same batch size, with the same optimizer and
  schedule (:class:`Budget`: AdamW and poly decay, the CPU profile's recipe, through chapter 7's
  :class:`~segedu.train.Trainer`);
* **both per-pixel baselines in every table**: ``colour-only`` (notebook 00's per-pixel MLP on
  the pixel's colour) and ``windowed`` (the same MLP given the mean and spread of the colours in
  5x5, 15x15 and 31x31 windows). A network that does not beat them has not shown that its
  architecture matters on this task;
* **seeds**: each model is trained once per seed (initialisation and sample order; the data set
  is the same), and the table gives mean ± sd;
* **cost**: parameters, FLOPs per image (:class:`torch.utils.flop_counter.FlopCounterMode`:
  convolutions and matrix products, 2 per multiply-add), and training time, with the number of
  threads and the machine's load average (``os.getloadavg()``) before and after each run,
  because a time measured on a busy machine is a property of the machine, not of the model;
* **stored results**: JSON (every run) and CSV (the table), each naming the command that made it.

Measured per model: mIoU, boundary F1 (2-pixel tolerance) and the trimap mIoU (within 2 pixels of
a true boundary; DeepLab v3+ Fig. 5), on the task's validation set.

From a shell::

    segedu experiment --task shapes --models fcn8s unet --seeds 3 --out results/shapes
    segedu experiment --task shapes --models fcn8s --quick --out /tmp/smoke   # proves it runs

The task registry is :mod:`segedu.data.tasks`; chapter 9's model selection runs the same tasks.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import math
import os
import platform
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from ..core.metrics import ConfusionMatrix, boundary_f1, trimap_confusion
from ..core.profiles import PROFILES
from ..core.utils import count_parameters, set_seed
from ..data.tasks import Task, get_task
from ..train import Trainer
from ..train.experiment import PixelClassifier, WindowedPixelClassifier, mean_sd
from ..zoo import build_model, get_factory, list_models

__all__ = ["BASELINES", "Budget", "build", "model_cost", "evaluate", "run_one", "run_comparison",
           "summarize", "format_table", "write_results", "context", "describe",
           "command_line", "run_cli"]


#: The per-pixel baselines, in every comparison: name -> factory(num_classes).
BASELINES: dict[str, Callable[[int], nn.Module]] = {
    "colour-only": lambda num_classes: PixelClassifier(num_classes, hidden=32,
                                                       standardize=True),
    "windowed": lambda num_classes: WindowedPixelClassifier(num_classes, windows=(5, 15, 31)),
}


@dataclass(frozen=True)
class Budget:
    """What every model in a comparison gets: ``iterations`` of ``batch_size`` images (whole
    epochs: rounded to a multiple of the iterations per epoch), AdamW at ``lr`` with poly decay
    (exponent ``power``) to zero over the run. Defaults: the CPU profile's batch and rate."""

    iterations: int = 768
    batch_size: int = PROFILES["cpu"].batch_size
    lr: float = PROFILES["cpu"].lr
    weight_decay: float = 1e-4
    power: float = 0.9

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"a budget needs iterations >= 1, batch_size >= 1 and lr > 0, got "
                             f"iterations={self.iterations}, batch_size={self.batch_size}, "
                             f"lr={self.lr}.")

    def epochs(self, train_images: int) -> int:
        per_epoch = train_images // self.batch_size
        if per_epoch < 1:
            raise ValueError(f"{train_images} training images give no full batch of "
                             f"{self.batch_size}; lower the batch size.")
        return max(1, round(self.iterations / per_epoch))


def build(name: str, num_classes: int, *, width: float = PROFILES["cpu"].width,
          batch_norm: bool = PROFILES["cpu"].batch_norm,
          dropout: float = PROFILES["cpu"].dropout) -> nn.Module:
    """A baseline (:data:`BASELINES`) or a zoo model built as the CPU profile builds it: reduced
    ``width``, BatchNorm and ``dropout`` where the model's factory takes them, random weights.

    ``name + "+shapes"`` (``"fcn8s+shapes"``) is the same model with the shipped shape-pretrained
    backbone (``pretrained_backbone="shapes"``, :mod:`segedu.backbones.pretrained`): a run of
    each, side by side, measures what pretraining gives under the same budget."""
    if name in BASELINES:
        return BASELINES[name](num_classes)
    base, plus, weights = name.partition("+")
    if plus and weights != "shapes":
        raise ValueError(f"{name!r}: the only weights a name can ask for are '+shapes' (the "
                         f"shipped shape-pretrained backbone), as in '{base}+shapes'.")
    if base not in list_models():
        raise ValueError(f"unknown model {name!r}; choose a baseline ({', '.join(BASELINES)}) "
                         f"or a zoo model ({', '.join(list_models())}), optionally with "
                         "'+shapes'.")
    wanted = {"width": width, "batch_norm": batch_norm, "dropout": dropout,
              "pretrained_backbone": weights or False}
    params = inspect.signature(get_factory(base)).parameters
    open_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if weights and "pretrained_backbone" not in params:
        raise ValueError(f"{base} has no pretrained backbone to load (its factory takes no "
                         f"pretrained_backbone): drop '+{weights}'.")
    if open_kwargs:  # factories that forward **kwargs: ask the chapter's network what it takes
        return _build_forwarding(base, num_classes, wanted)
    return build_model(base, num_classes, **{k: v for k, v in wanted.items() if k in params})


def _build_forwarding(name: str, num_classes: int, wanted: dict) -> nn.Module:
    """Build a model whose factory forwards ``**kwargs``: drop the options it refuses."""
    options = dict(wanted)
    while True:
        try:
            return build_model(name, num_classes, **options)
        except ValueError as err:
            refused = [k for k in options if k != "pretrained_backbone" and f"'{k}'" in str(err)]
            if not refused:
                raise
            options.pop(refused[0])


def model_cost(model: nn.Module, size: int, in_channels: int = 3) -> dict:
    """Parameters and forward FLOPs for one ``size`` x ``size`` image (as FlopCounterMode counts:
    convolutions and matrix products, 2 FLOPs per multiply-add), in eval mode."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, in_channels, size, size))
    model.train(was_training)
    return {"parameters": count_parameters(model), "flops": int(counter.get_total_flops())}


@torch.no_grad()
def evaluate(model: nn.Module, val_set: Dataset, num_classes: int, *, batch_size: int = 16,
             boundary_tolerance: int = 2, trimap_width: int = 2) -> dict:
    """mIoU and per-class IoU, pixel accuracy, boundary F1 and trimap mIoU on ``val_set``."""
    model.eval()
    cm, trimap = ConfusionMatrix(num_classes), ConfusionMatrix(num_classes)
    preds, targets = [], []
    for images, target, *_ in DataLoader(val_set, batch_size=batch_size):
        pred = model(images)["out"].argmax(1)
        cm.update(pred, target)
        trimap.merge(trimap_confusion(pred, target, num_classes, trimap_width))
        preds.append(pred)
        targets.append(target)
    metrics = cm.compute()
    return {"miou": metrics["miou"], "iou": metrics["iou"], "pixel_acc": metrics["pixel_acc"],
            "boundary_f1": boundary_f1(torch.cat(preds), torch.cat(targets),
                                       tolerance=boundary_tolerance),
            "trimap_miou": trimap.compute()["miou"]}


def run_one(task: Task, name: str, seed: int, budget: Budget, *, train_set: Dataset,
            val_set: Dataset, initialise: Callable[[nn.Module], None] | None = None) -> dict:
    """Train model ``name`` with ``seed`` under ``budget``; its scores, cost and time.

    ``initialise(model)``, when given, runs on the freshly built model before training (to
    load pretrained backbone weights, say): the budget counts the training that follows."""
    set_seed(seed)
    model = build(name, task.num_classes)
    if initialise is not None:
        initialise(model)
    cost = model_cost(model, task.size)
    trainer = Trainer(model, train_set, None, num_classes=task.num_classes,
                      epochs=budget.epochs(len(train_set)), batch_size=budget.batch_size,
                      seed=seed, optimizer="adamw", lr=budget.lr,
                      weight_decay=budget.weight_decay, power=budget.power, eval_every=0,
                      progress=False)
    load_before = os.getloadavg()
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    load_after = os.getloadavg()
    scores = evaluate(model, val_set, task.num_classes)
    return {"model": name, "seed": seed, **scores, **cost, "iterations": trainer.step,
            "images_seen": trainer.step * budget.batch_size, "train_seconds": seconds,
            "threads": torch.get_num_threads(), "loadavg_before": load_before,
            "loadavg_after": load_after, "final_loss": trainer.history.iterations[-1]}


def _with_baselines(models: Sequence[str]) -> list[str]:
    return list(BASELINES) + [m for m in models if m not in BASELINES]


def run_comparison(task: Task | str, models: Sequence[str], seeds: Sequence[int] = (0, 1, 2),
                   budget: Budget | None = None, *, train_length: int | None = None,
                   val_length: int | None = None,
                   log: Callable[[str], None] | None = print,
                   on_run: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Train the baselines and ``models`` on ``task``, once per seed, under one ``budget``.

    Every model sees the same training images (the task's training split, ``train_length``
    of them) and is scored on the same validation images. Returns one record per run;
    ``on_run(runs)`` is called after each (to store partial results of a long comparison).
    """
    task = get_task(task) if isinstance(task, str) else task
    budget = budget or Budget()
    for name in models:  # fail before hours of training, not after
        if name not in BASELINES and name not in list_models():
            build(name, task.num_classes)
    train_set, val_set = task.train_set(length=train_length), task.val_set(length=val_length)
    runs = []
    for name in _with_baselines(models):
        for seed in seeds:
            runs.append(run_one(task, name, seed, budget, train_set=train_set, val_set=val_set))
            if on_run:
                on_run(runs)
            if log:
                r = runs[-1]
                log(f"{task.name:>10}  {name:<14} seed {seed}  mIoU {r['miou']:.3f}  boundary F1 "
                    f"{r['boundary_f1']:.3f}  trimap {r['trimap_miou']:.3f}  "
                    f"({r['train_seconds']:.1f} s, {r['threads']} threads, load "
                    f"{r['loadavg_before'][0]:.2f})")
    return runs


_SCORES = ("miou", "boundary_f1", "trimap_miou", "train_seconds")


def summarize(runs: Sequence[dict]) -> list[dict]:
    """One row per model (in run order): mean and sd over seeds of the scores and train time,
    parameters, FLOPs, seeds, and the highest load average seen during its runs."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(run["model"], []).append(run)
    rows = []
    for name, group in groups.items():
        row = {"model": name, "seeds": len(group), "parameters": group[0]["parameters"],
               "flops": group[0]["flops"], "threads": group[0]["threads"],
               "max_loadavg": max(max(r["loadavg_before"][0], r["loadavg_after"][0])
                                  for r in group)}
        for key in _SCORES:
            row[key], row[f"{key}_sd"] = mean_sd([r[key] for r in group])
        rows.append(row)
    return rows


def format_table(rows: Sequence[dict]) -> str:
    """The summary as a text table (scores as mean ± sd)."""
    width = max(8, *(len(r["model"]) for r in rows))
    head = (f"{'model':<{width}}  {'mIoU':>13}  {'boundary F1':>13}  {'trimap mIoU':>13}  "
            f"{'params':>9}  {'MFLOPs':>8}  {'train s':>12}")
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = "".join(f"  {r[k]:6.3f} ±{r[k + '_sd']:5.3f}"
                        for k in ("miou", "boundary_f1", "trimap_miou"))
        lines.append(f"{r['model']:<{width}}{cells}  {r['parameters']:>9,}  "
                     f"{r['flops'] / 1e6:>8.1f}  "
                     f"{r['train_seconds']:6.1f} ±{r['train_seconds_sd']:4.1f}")
    seeds = sorted({r["seeds"] for r in rows})
    lines.append(f"(mean ± sd over {', '.join(map(str, seeds))} seeds; {rows[0]['threads']} "
                 f"threads; load average up to {max(r['max_loadavg'] for r in rows):.2f})")
    return "\n".join(lines)


def _finite(value):
    """JSON has no nan: write null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_results(out_dir: str | Path, name: str, payload: dict) -> tuple[Path, Path]:
    """``payload`` (with ``runs``) to ``out_dir/name.json``; its summary to ``name.csv``, whose
    first line names the command. Written to a temporary file and renamed (no half files)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = summarize(payload["runs"])
    payload = {**payload, "summary": rows}
    json_path, csv_path = out / f"{name}.json", out / f"{name}.csv"
    clean = json.loads(json.dumps(payload, default=_finite), parse_constant=lambda c: None)
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(clean, indent=1, allow_nan=False))
    os.replace(tmp, json_path)
    tmp = csv_path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        f.write(f"# {payload['command']}\n")
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, csv_path)
    return json_path, csv_path


def context(command: str) -> dict:
    """What a reader needs to judge the numbers: the command, versions, threads, load."""
    return {"command": command, "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(), "loadavg_before": os.getloadavg(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}


def describe(task: Task, budget: Budget, train_length: int | None = None,
             val_length: int | None = None) -> dict:
    """The task and budget of a comparison, as stored with its results."""
    return {"task": task.name, "isolates": task.isolates, "classes": list(task.classes),
            "budget": asdict(budget), "train_images": train_length or task.train_length,
            "val_images": val_length or task.val_length, "image_size": task.size,
            "val_size": task.val_size or task.size}


#: ``--quick``: a smoke run that proves the pipeline works; no conclusion may be drawn from it.
QUICK_BUDGET, QUICK_TRAIN, QUICK_VAL = Budget(iterations=4, batch_size=4), 16, 8


def command_line(args: argparse.Namespace) -> str:
    """The ``segedu experiment`` command that reproduces ``args`` (stored with the results)."""
    parts = ["segedu", "experiment", "--task", args.task]
    if args.models:
        parts += ["--models", *args.models]
    parts += ["--seeds", str(args.seeds), "--iterations", str(args.iterations),
              "--batch-size", str(args.batch_size), "--lr", f"{args.lr:g}"]
    for flag, value in (("--train-length", args.train_length), ("--val-length", args.val_length),
                        ("--threads", args.threads)):
        if value is not None:
            parts += [flag, str(value)]
    parts += ["--out", str(args.out)] + (["--quick"] if args.quick else [])
    return shlex.join(parts)


def run_cli(args: argparse.Namespace) -> int:
    """Run ``segedu experiment`` with parsed ``args``; prints the table, writes the files."""
    if args.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {args.seeds}.")
    get_task(args.task)  # an unknown task: a ValueError naming the tasks, before anything runs
    for option in ("iterations", "batch_size", "lr"):  # not given: the Budget's defaults
        if getattr(args, option) is None:
            setattr(args, option, getattr(Budget, option))
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = Budget(iterations=args.iterations, batch_size=args.batch_size, lr=args.lr)
    seeds, train_length, val_length = range(args.seeds), args.train_length, args.val_length
    if args.quick:
        budget, train_length, val_length = QUICK_BUDGET, QUICK_TRAIN, QUICK_VAL
        seeds = range(1)
    payload = context(command_line(args))
    task = get_task(args.task)
    runs = run_comparison(task, args.models, seeds, budget, train_length=train_length,
                          val_length=val_length)
    payload.update(describe(task, budget, train_length, val_length), quick=bool(args.quick),
                   loadavg_after=os.getloadavg(), runs=runs)
    print(format_table(summarize(runs)))
    if args.quick:
        print("(--quick: a smoke run; these numbers say nothing about the models)")
    for path in write_results(args.out, task.name, payload):
        print(f"wrote {path}")
    return 0

"""Chapter 7's measurements, stored for notebook 07.

    python benchmarks/training.py experiments [--seeds 0 1 2] [--only losses ...]
        each training trick against its absence (segedu.train.experiment: equal budgets, the
        colour-only baseline in every table, mean ± sd over seeds) ->
        benchmarks/results/training_experiments.json
    python benchmarks/training.py throughput [--rounds 5 --iters 10]
        the Trainer's iterations per second against a plain hand-written loop on the same
        model, data and optimizer, timed interleaved (plain, Trainer, plain, Trainer, ...) in
        one process so that both see the same machine load ->
        benchmarks/results/training_throughput.json

Every file records the command that made it, the threads, and ``os.getloadavg()`` before and
after (the machine is shared: read timings as ratios, not as properties of a model).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from segedu.core.utils import set_seed
from segedu.data import SyntheticShapes, train_transforms
from segedu.train import Trainer, poly_schedule
from segedu.train.experiment import EXPERIMENTS, make_experiments, run_experiment
from segedu.unet import unet

RESULTS = Path(__file__).parent / "results"


def _context(args) -> dict:
    return {"command": "python benchmarks/training.py " + " ".join(sys.argv[1:]),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "loadavg_before": os.getloadavg(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}


def _write(name: str, payload: dict) -> Path:
    payload["loadavg_after"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / name
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)
    print(f"wrote {path}")
    return path


def experiments(args) -> None:
    payload = _context(args)
    payload.update(seeds=args.seeds, size=args.size, experiments={})
    all_experiments = make_experiments(size=args.size)
    for name in args.only or EXPERIMENTS:
        experiment = all_experiments[name]
        runs = run_experiment(experiment, args.seeds)
        payload["experiments"][name] = {
            "question": experiment.question, "classes": list(experiment.classes),
            "epochs": experiment.epochs, "batch_size": experiment.batch_size,
            "train_images": len(experiment.arms[0].train_set()), "runs": runs}
        _write("training_experiments.json", dict(payload))  # after each: partial results survive


def _plain_loop(model, loader, optimizer, scheduler, iters) -> float:
    """What a learner writes by hand: the baseline the Trainer's overhead is measured against."""
    model.train()
    start, done = time.perf_counter(), 0
    while done < iters:
        for images, targets in loader:
            loss = F.cross_entropy(model(images)["out"], targets, ignore_index=255)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss.item()  # the Trainer logs every loss; so does everyone's loop
            done += 1
            if done == iters:
                break
    return time.perf_counter() - start


def throughput(args) -> None:
    """Same model, data (with augmentation), batch, optimizer and schedule; the Trainer adds
    per-sample seeded augmentation, loss-input checks, history and (disabled) progress bars."""
    payload = _context(args)
    batch, size = 8, args.size
    data = SyntheticShapes("train", size=size, length=batch * args.iters,
                           transforms=train_transforms(size, scale=(0.75, 1.25)))
    for i in range(len(data)):  # render every image once, so both start from a warm cache
        data[i]
    set_seed(0)
    plain_model = unet(5, width=0.125, batch_norm=True)
    trainer_model = unet(5, width=0.125, batch_norm=True)
    trainer_model.load_state_dict(plain_model.state_dict())
    opt = torch.optim.SGD(plain_model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    sched = poly_schedule(opt, args.iters * (args.rounds + 1))
    loader = DataLoader(data, batch_size=batch, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(0))
    plain, trained = [], []
    _plain_loop(plain_model, loader, opt, sched, 2)  # warm-up
    for _ in range(args.rounds):
        plain.append(_plain_loop(plain_model, loader, opt, sched, args.iters))
        trainer = Trainer(trainer_model, data, num_classes=5, epochs=1, batch_size=batch,
                          lr=0.01, optimizer="sgd", progress=False, eval_every=0)
        start = time.perf_counter()
        trainer.fit()
        trained.append(time.perf_counter() - start)
        assert trainer.step == args.iters
    ratio = statistics.median(plain) / statistics.median(trained)  # Trainer it/s / plain it/s
    payload.update(model="unet width 1/8 + BN", image_size=size, batch_size=batch,
                   iters_per_round=args.iters, rounds=args.rounds, plain_seconds=plain,
                   trainer_seconds=trained, throughput_ratio_trainer_over_plain=ratio,
                   plain_it_per_s=args.iters / statistics.median(plain),
                   trainer_it_per_s=args.iters / statistics.median(trained))
    print(f"plain loop {payload['plain_it_per_s']:.2f} it/s, Trainer "
          f"{payload['trainer_it_per_s']:.2f} it/s: ratio {ratio:.3f} (median of {args.rounds} "
          f"interleaved rounds; load {payload['loadavg_before']} -> {os.getloadavg()})")
    _write("training_throughput.json", payload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    exp = sub.add_parser("experiments")
    exp.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    exp.add_argument("--only", nargs="+", choices=EXPERIMENTS)
    exp.add_argument("--size", type=int, default=48)
    exp.set_defaults(func=experiments)
    tp = sub.add_parser("throughput")
    tp.add_argument("--rounds", type=int, default=5)
    tp.add_argument("--iters", type=int, default=10)
    tp.add_argument("--size", type=int, default=48)
    tp.set_defaults(func=throughput)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()

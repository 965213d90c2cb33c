"""Can a reduced-width backbone be pretrained on a CPU so that the chapters' networks learn the
shape task faster, as ImageNet weights do on a GPU? This probe chose the recipe the package
now ships (objectness: :mod:`segedu.train.pretext`, files made by ``pretrain_backbones.py``).

    OMP_NUM_THREADS=1 python benchmarks/pretrain_probe.py [--iterations 2000] [--seeds 3] [--tag T]
        -> benchmarks/results/pretrain_probe[_T].json and .csv

Two pretext tasks, each on 4,096 *other* ShapeScenes images (seed 1009: none of them is a
training or validation image of the shape task), for the same number of iterations, on the
ResNet-50 at width 1/8 that the CPU profile builds:

* ``classify``: ImageNet's recipe in miniature: one object per image, a 4-way classifier on
  the pooled last map (batch 32, cross-entropy), accuracy on 512 held-out images;
* ``objectness``: dense and class-agnostic: object or background at every pixel (batch 8, a
  1x1 scorer on the stride-8 map plus one on the stride-4 map), foreground IoU on 256
  held-out images. The shape classes are never seen.

Then DeepLab v3 (torchvision's ResNet-50 variant, width 1/8) trains on the shape task under the
harness's budget from random weights and from each pretrained backbone, ``--seeds`` seeds each
(the pretraining itself is seeded once). Each pretext's time is stored with its learning curve;
the downstream budget is the same for all three and for the colour-only and windowed baselines
run beside them.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from segedu.backbones import resnet50
from segedu.data import ShapeScenes, get_task
from segedu.data.transforms import eval_transforms
from segedu.tools.experiment import (
    Budget,
    context,
    describe,
    format_table,
    run_one,
    summarize,
    write_results,
)
from segedu.train.pretext import PRETEXT_SEED, PretextRecipe, pretrain_objectness, stack

RESULTS = Path(__file__).parent / "results"
WIDTH = 0.125


def _object_class(mask: torch.Tensor) -> int:
    """The class (0-3: circle, square, triangle, ring) of a one-object mask."""
    labels = mask[(mask > 0) & (mask < 255)]
    return int(torch.bincount(labels, minlength=5)[1:].argmax())


def pretrain(pretext: str, iterations: int, log) -> tuple[dict, list[dict]]:
    """The backbone's state_dict after ``iterations`` on ``pretext``, and its learning curve.

    ``objectness`` is the recipe the package ships (:func:`segedu.train.pretext.pretrain_objectness`
    on ResNet-50); ``classify`` is ImageNet's recipe in miniature, kept here as the comparison."""
    if pretext == "objectness":
        model, curve = pretrain_objectness(PretextRecipe(arch="resnet50", width=WIDTH,
                                                         iterations=iterations), log)
        return model.backbone.state_dict(), curve
    torch.manual_seed(0)
    tf = eval_transforms(None)
    x, m = stack(ShapeScenes("train", 64, 4096, PRETEXT_SEED, tf, max_shapes=1))
    vx, vm = stack(ShapeScenes("val", 64, 512, PRETEXT_SEED, tf, max_shapes=1))
    net = resnet50(num_classes=4, width=WIDTH)
    y = torch.tensor([_object_class(k) for k in m])
    vy = torch.tensor([_object_class(k) for k in vm])
    batch = 32
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=iterations)
    draw = torch.Generator().manual_seed(0)
    curve, start = [], time.perf_counter()
    for step in range(1, iterations + 1):
        i = torch.randint(0, len(x), (batch,), generator=draw)
        xb, yb = x[i], y[i]
        if torch.rand(1, generator=draw).item() < 0.5:  # horizontal flip
            xb = xb.flip(-1)
        loss = F.cross_entropy(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        if step % 250 == 0 or step == iterations:
            net.eval()
            with torch.no_grad():
                score = {"val_accuracy": (net(vx).argmax(1) == vy).float().mean().item()}
            net.train()
            curve.append({"iteration": step, "loss": loss.item(), **score,
                          "seconds": time.perf_counter() - start})
            log(f"  {pretext} {curve[-1]}")
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    return state, curve


def loader(state: dict):
    def initialise(model: nn.Module) -> None:
        model.backbone.load_state_dict(state, strict=True)  # dilation changes no weight
    return initialise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=2000, help="pretext iterations")
    parser.add_argument("--downstream-iterations", type=int, default=768)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--tag", help="results go to pretrain_probe_<tag>.json/.csv")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = "python benchmarks/pretrain_probe.py " + shlex.join(sys.argv[1:])
    task, budget, model = get_task("shapes"), Budget(iterations=args.downstream_iterations), \
        "deeplabv3_resnet50"
    payload = {**context(command), **describe(task, budget), "pretext_seed": PRETEXT_SEED,
               "pretext_iterations": args.iterations, "pretexts": {}, "runs": []}
    train_set, val_set = task.train_set(), task.val_set()
    for name in ("colour-only", "windowed"):  # the per-pixel baselines, same budget
        for seed in range(args.seeds):
            payload["runs"].append(run_one(task, name, seed, budget, train_set=train_set,
                                           val_set=val_set))
    variants = {"random weights": None}
    for pretext in ("classify", "objectness"):
        state, curve = pretrain(pretext, args.iterations, print)
        payload["pretexts"][pretext] = {"curve": curve}
        variants[f"{pretext}-pretrained"] = state
    for label, state in variants.items():
        for seed in range(args.seeds):
            run = run_one(task, model, seed, budget, train_set=train_set, val_set=val_set,
                          initialise=None if state is None else loader(state))
            payload["runs"].append({**run, "model": f"{model} ({label})"})
            write_results(args.out, "pretrain_probe" + (f"_{args.tag}" if args.tag else ""),
                          payload)
            print(f"{label:24} seed {seed}: mIoU {run['miou']:.3f}", flush=True)
    print(format_table(summarize(payload["runs"])))


if __name__ == "__main__":
    main()

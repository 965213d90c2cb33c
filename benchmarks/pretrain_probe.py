"""Can a reduced-width backbone be pretrained on a CPU so that the chapters' networks learn the
shape task faster, as ImageNet weights do on a GPU? (Issue 13, item 4: a probe, not yet a
feature.)

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
from segedu.core.metrics import ConfusionMatrix
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

RESULTS = Path(__file__).parent / "results"
PRETEXT_SEED = 1009  # not a seed of any task's split
WIDTH = 0.125


def _stack(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [dataset[i] for i in range(len(dataset))]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def _object_class(mask: torch.Tensor) -> int:
    """The class (0-3: circle, square, triangle, ring) of a one-object mask."""
    labels = mask[(mask > 0) & (mask < 255)]
    return int(torch.bincount(labels, minlength=5)[1:].argmax())


class Objectness(nn.Module):
    """The backbone, dilated to stride 8, with two 1x1 scorers (object / background)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = resnet50(include_top=False, width=WIDTH,
                                 replace_stride_with_dilation=[False, True, True])
        channels = self.backbone.feature_channels
        self.deep = nn.Conv2d(channels["layer4"], 2, 1)
        self.shallow = nn.Conv2d(channels["layer1"], 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone.forward_features(x)
        y = self.shallow(f["layer1"]) + F.interpolate(self.deep(f["layer4"]),
                                                      size=f["layer1"].shape[-2:],
                                                      mode="bilinear", align_corners=False)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


def pretrain(pretext: str, iterations: int, log) -> tuple[dict, list[dict]]:
    """The backbone's state_dict after ``iterations`` on ``pretext``, and its learning curve."""
    torch.manual_seed(0)
    one = pretext == "classify"
    tf = eval_transforms(None)
    x, m = _stack(ShapeScenes("train", 64, 4096, PRETEXT_SEED, tf, max_shapes=1 if one else 4))
    vx, vm = _stack(ShapeScenes("val", 64, 512 if one else 256, PRETEXT_SEED, tf,
                                max_shapes=1 if one else 4))
    if one:
        net: nn.Module = resnet50(num_classes=4, width=WIDTH)
        y = torch.tensor([_object_class(k) for k in m])
        vy = torch.tensor([_object_class(k) for k in vm])
        batch = 32
    else:
        net = Objectness()
        y = torch.where(m == 255, m, (m > 0).long())  # object 1, background 0, edge band 255
        vy = torch.where(vm == 255, vm, (vm > 0).long())
        batch = 8
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=iterations)
    draw = torch.Generator().manual_seed(0)
    curve, start = [], time.perf_counter()
    for step in range(1, iterations + 1):
        i = torch.randint(0, len(x), (batch,), generator=draw)
        xb, yb = x[i], y[i]
        if torch.rand(1, generator=draw).item() < 0.5:  # horizontal flip
            xb = xb.flip(-1)
            yb = yb if one else yb.flip(-1)
        loss = F.cross_entropy(net(xb), yb, ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        if step % 250 == 0 or step == iterations:
            net.eval()
            with torch.no_grad():
                if one:
                    score = {"val_accuracy": (net(vx).argmax(1) == vy).float().mean().item()}
                else:
                    iou = ConfusionMatrix(2).update(net(vx), vy).compute()["iou"]
                    score = {"val_foreground_iou": float(iou[1])}
            net.train()
            curve.append({"iteration": step, "loss": loss.item(), **score,
                          "seconds": time.perf_counter() - start})
            log(f"  {pretext} {curve[-1]}")
    backbone = net if one else net.backbone
    state = {k: v for k, v in backbone.state_dict().items() if not k.startswith("fc.")}
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

"""Make the shape-pretrained backbones the package ships (the CPU profile's stand-in for
ImageNet weights; :mod:`segedu.train.pretext` has the recipe and the evidence for it).

    OMP_NUM_THREADS=1 python benchmarks/pretrain_backbones.py --arch resnet50 [--iterations 6000]
        -> segedu/backbones/shapes_weights/resnet50_w0.125_objectness.pt
           benchmarks/results/pretrain_backbones_resnet50.json (recipe, curve, time, machine)

Data, initialisation and batch order are seeded, and one process gives the same weights twice
(the tests check a short run). Another process reproduces a file's learning curve, not its
bits: the same ResNet-50 recipe run inside ``pretrain_probe.py`` ended at a held-out
foreground IoU of 0.804 against this script's 0.810. ``--out`` writes the weights elsewhere.

What the shipped files reached (6,000 iterations, one thread, the other core busy): ResNet-50
0.810 (230 s), ResNet-101 0.689 (407 s), MobileNetV3-Large 0.624 (164 s), VGG16-BN 0.563 (140 s:
its deepest map is 2x2 at 64x64); each run's curve is in
``benchmarks/results/pretrain_backbones_<arch>.json``. Xception-65 reached 0.127 (396 s) and is
not shipped (:data:`segedu.backbones.pretrained.SHAPES_BACKBONES`).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch
from _common import write_results

from segedu.backbones.pretrained import SHAPES_WIDTH, shapes_weights_path
from segedu.tools.experiment import context
from segedu.train.pretext import PRETEXT_BACKBONES, PRETEXT_SEED, PretextRecipe, pretrain_objectness

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", required=True, choices=sorted(PRETEXT_BACKBONES))
    parser.add_argument("--iterations", type=int, default=PretextRecipe.iterations)
    parser.add_argument("--images", type=int, default=PretextRecipe.images)
    parser.add_argument("--lr", type=float, default=PretextRecipe.lr, help="peak learning rate")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="weights file (default: the shipped one)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = PretextRecipe(arch=args.arch, width=SHAPES_WIDTH, iterations=args.iterations,
                           images=args.images, lr=args.lr)
    model, curve = pretrain_objectness(recipe)
    out = args.out or shapes_weights_path(args.arch)
    out.parent.mkdir(parents=True, exist_ok=True)
    final_iou = curve[-1]["val_foreground_iou"]
    torch.save({"backbone": model.backbone.state_dict(),
                "head": {"deep": model.deep.state_dict(), "shallow": model.shallow.state_dict()},
                "recipe": {**recipe.as_dict(), "pretext_seed": PRETEXT_SEED},
                "val_foreground_iou": final_iou}, out)
    command = "python benchmarks/pretrain_backbones.py " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    write_results({**context(command), "recipe": recipe.as_dict(), "pretext_seed": PRETEXT_SEED,
                   "weights": str(out), "bytes": out.stat().st_size,
                   "val_foreground_iou": final_iou, "curve": curve},
                  args.results / f"pretrain_backbones_{args.arch}.json")
    print(f"{args.arch}: held-out foreground IoU {final_iou:.3f}, "
          f"{curve[-1]['seconds']:.0f} s, {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()

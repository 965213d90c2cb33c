"""From-scratch vs torchvision: the same network should run as fast (ratio ~1.0).

    python benchmarks/parity_speed.py [--size 224] [--repeats 5] [--device cpu]

For each pair the two models get the same weights (strict load), and forward passes are
timed alternately (ours, theirs, ours, ...) after a warm-up, so machine noise hits both
alike; the median of each is reported with the ratio ours / torchvision.
"""

from __future__ import annotations

import argparse

import torch
import torchvision

from segedu import backbones, deeplab, fcn
from segedu.deploy import compare_latency


def pairs():
    seg = torchvision.models.segmentation
    yield "vgg16", backbones.vgg16(), torchvision.models.vgg16()
    yield "resnet50", backbones.resnet50(), torchvision.models.resnet50()
    yield ("fcn_resnet50", fcn.fcn_resnet50(21),
           seg.fcn_resnet50(weights=None, weights_backbone=None, aux_loss=False))
    yield ("deeplabv3_resnet50", deeplab.deeplabv3_resnet50(21),
           seg.deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=False))
    yield ("deeplabv3_mobilenet_v3_large", deeplab.deeplabv3_mobilenet_v3_large(21),
           seg.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None,
                                             aux_loss=False))
    yield ("mobilenet_v3_large", backbones.mobilenet_v3_large(),
           torchvision.models.mobilenet_v3_large())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    print(f"device {device}, input {tuple(x.shape)}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, torchvision {torchvision.__version__}")
    print(f"{'model':<14}{'ours ms':>10}{'tv ms':>10}{'ratio':>8}")
    for name, ours, theirs in pairs():
        ours.load_state_dict(theirs.state_dict(), strict=True)
        ours, theirs = ours.eval().to(device), theirs.eval().to(device)
        with torch.inference_mode():
            runners = {key: (lambda m=m: m(x)) for key, m in (("ours", ours), ("theirs", theirs))}
            times = compare_latency(runners, warmup=1, repeats=args.repeats, device=device)
        a, b = times["ours"].median, times["theirs"].median
        print(f"{name:<14}{a:>10.1f}{b:>10.1f}{a / b:>8.2f}")


if __name__ == "__main__":
    main()

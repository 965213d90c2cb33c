"""Chapter 8's accuracy measurements, on the CPU profile (synthetic shapes at 64x64, networks at
width 1/8 — full-width networks cannot be trained on a CPU; the latency of those is
``benchmarks/quantize.py``'s job):

1. **Light against heavy backbones after equal training**: DeepLab v3 on MobileNetV3-Large
   against DeepLab v3 on ResNet-50, LR-ASPP, and the colour-only baseline (a 1x1 conv: a
   per-pixel classifier that sees only each pixel's colour), each trained on the same images
   with the same schedule (the CPU profile's: 3 epochs of 2048 images, batch 8, AdamW 3e-3,
   poly decay) for 3 seeds; validation mIoU on the profile's 128 validation images, as mean
   +- sd. Also: parameters and FLOPs at this width and at full width, and eager latency at
   64x64 (batch 1, ``--threads``), interleaved, as ratios to the ResNet-50 DeepLab.
2. **What INT8 costs in accuracy**: every seed-0 model (and ``--int8-only`` models trained
   once: FCN-ResNet50, and U-Net, whose transposed convs stay FP32) is
   exported to ONNX, quantized with ONNX Runtime (QDQ, per-channel, ``--calibrate`` training
   images at the deployment size 64x64) twice — signed activations (S8S8, the documented first
   choice: ``miou_ort_int8``) and unsigned ones (U8S8, faster where S8S8 leaves additions in
   float: ``miou_ort_int8_u8s8``) — and evaluated: mIoU of eager FP32, ORT FP32 and ORT INT8
   on the same validation images, the ops left in floating point and their share of INT8
   time, and INT8 latency against eager (interleaved).

    python3 benchmarks/mobile_vs_resnet.py      # writes benchmarks/results/mobile_vs_resnet.json
    python3 benchmarks/mobile_vs_resnet.py --seeds 0 --epochs 1     # a quick look
    python3 benchmarks/mobile_vs_resnet.py --train-images 1024 --threads 1 --seeds 0 \
        --out benchmarks/results/int8_accuracy.json   # S8S8 and U8S8 on every seed-0 model

Measured, not asserted. The JSON names the command, the machine and its load.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import write_results
from torch import nn

import segedu
from segedu.core.profiles import get_profile
from segedu.core.utils import count_parameters, set_seed
from segedu.data import make_loaders
from segedu.deploy import (
    compare_latency,
    count_flops,
    evaluate_onnx,
    export_onnx,
    int8_report,
    machine_info,
    onnx_session,
    quantize_onnx,
)
from segedu.train import evaluate, fit

RESULTS = Path(__file__).resolve().parent / "results" / "mobile_vs_resnet.json"
COMPARED = ["colour_only", "lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large",
            "deeplabv3_resnet50"]
INT8_ONLY = ["fcn_resnet50", "unet"]


class ColourOnly(nn.Module):
    """The colour-only baseline: one 1x1 convolution, a linear classifier of each pixel's RGB."""

    in_channels = 3

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.classify = nn.Conv2d(3, num_classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.classify(x)}


def build(name: str, num_classes: int, profile) -> nn.Module:
    if name == "colour_only":
        return ColourOnly(num_classes)
    options = {"width": profile.width, "batch_norm": profile.batch_norm,
               "dropout": profile.dropout}
    accepted = inspect.signature(segedu.zoo.get_factory(name)).parameters
    return segedu.build_model(name, num_classes,
                              **{k: v for k, v in options.items() if k in accepted})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="default: the profile's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibrate", type=int, default=64,
                        help="training images used to calibrate INT8 (64)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=COMPARED)
    parser.add_argument("--int8-only", nargs="*", default=INT8_ONLY)
    parser.add_argument("--train-images", type=int, default=None, help="default: the profile's")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    profile = get_profile("cpu", device="cpu", verbose=False)
    epochs = args.epochs or profile.epochs
    size = profile.image_size
    results = {"command": "python3 benchmarks/" + Path(sys.argv[0]).name + " "
               + " ".join(sys.argv[1:]),
               "profile": profile.describe(), "epochs": epochs,
               "train_images": args.train_images or profile.train_length, "threads": args.threads,
               "machine_at_start": machine_info(), "models": {}}
    train_loader, val_loader, classes = make_loaders(
        "synthetic", size=size, batch_size=profile.batch_size,
        train_length=args.train_images or profile.train_length,
        val_length=profile.val_length, seed=0, augment=profile.augment)
    calibration = []
    for images, _ in train_loader:
        calibration.append(images)
        if sum(len(b) for b in calibration) >= args.calibrate:
            break
    x1 = next(iter(val_loader))[0][:1]
    trained: dict[str, nn.Module] = {}
    plan = [(n, s) for n in args.models for s in args.seeds] + [(n, args.seeds[0])
                                                                for n in args.int8_only]
    for name, seed in plan:
        set_seed(seed)
        model = build(name, len(classes), profile)
        start = time.perf_counter()
        fit(model, train_loader, None, num_classes=len(classes), epochs=epochs, lr=profile.lr,
            progress=False, log=None)
        seconds = time.perf_counter() - start
        miou = evaluate(model, val_loader, len(classes))["miou"]
        entry = results["models"].setdefault(name, {"miou": {}, "train_seconds": {}})
        entry["miou"][str(seed)] = miou
        entry["train_seconds"][str(seed)] = seconds
        print(f"{name:30} seed {seed}: mIoU {miou:.3f} ({seconds:.0f} s)", flush=True)
        if seed == args.seeds[0]:
            trained[name] = model.eval()

    for name, entry in results["models"].items():
        values = list(entry["miou"].values())
        entry["miou_mean"] = statistics.mean(values)
        entry["miou_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        model = trained[name]
        entry["params"] = count_parameters(model)
        entry["flops_64"] = count_flops(model, x1)
        if name != "colour_only":
            full = segedu.build_model(name, 21)
            entry["params_full_width"] = count_parameters(full)
            with torch.device("meta"):
                entry["flops_full_width_256"] = count_flops(
                    segedu.build_model(name, 21), torch.empty(1, 3, 256, 256))

    with tempfile.TemporaryDirectory() as tmp:
        runners, sessions = {}, {}
        for name, model in trained.items():
            entry = results["models"][name]
            fp32 = export_onnx(model, Path(tmp) / f"{name}.onnx", x1)
            int8 = quantize_onnx(fp32, Path(tmp) / f"{name}_int8.onnx", calibration)
            u8s8 = quantize_onnx(fp32, Path(tmp) / f"{name}_u8s8.onnx", calibration,
                                 activations="uint8")
            entry["miou_ort_fp32"] = evaluate_onnx(fp32, val_loader, len(classes))["miou"]
            entry["miou_ort_int8"] = evaluate_onnx(int8, val_loader, len(classes))["miou"]
            entry["miou_ort_int8_u8s8"] = evaluate_onnx(u8s8, val_loader, len(classes))["miou"]
            entry["miou_eager_fp32_seed0"] = entry["miou"][str(args.seeds[0])]
            entry["int8_report_64"] = int8_report(int8, x1, threads=args.threads).to_json()
            entry["int8_report_64_u8s8"] = int8_report(u8s8, x1,
                                                       threads=args.threads).to_json()
            sessions[name] = onnx_session(int8, threads=args.threads)
            sessions[f"{name}/u8s8"] = onnx_session(u8s8, threads=args.threads)
            print(f"{name:30} INT8: mIoU {entry['miou_eager_fp32_seed0']:.3f} -> "
                  f"S8S8 {entry['miou_ort_int8']:.3f}, U8S8 {entry['miou_ort_int8_u8s8']:.3f} "
                  f"(ORT FP32 {entry['miou_ort_fp32']:.3f}); "
                  f"float ops {entry['int8_report_64']['nodes'].get('float', {})}", flush=True)
            feed = {"image": x1.numpy()}
            runners[f"{name}/eager"] = lambda m=model: m(x1)
            runners[f"{name}/int8"] = lambda s=sessions[name], f=feed: s.run(None, f)
            runners[f"{name}/u8s8"] = lambda s=sessions[f"{name}/u8s8"], f=feed: s.run(None, f)
        with torch.no_grad():
            timings = compare_latency(runners, warmup=3, repeats=args.repeats,
                                      threads=args.threads)
    for key, latency in timings.items():
        name, runtime = key.split("/")
        results["models"][name][f"latency_64_{runtime}"] = latency.to_json()
    reference = timings["deeplabv3_resnet50/eager"].median if (
        "deeplabv3_resnet50/eager" in timings) else None
    for name, entry in results["models"].items():
        eager = timings[f"{name}/eager"].median
        entry["int8_over_eager_64"] = timings[f"{name}/int8"].median / eager
        entry["u8s8_over_eager_64"] = timings[f"{name}/u8s8"].median / eager
        if reference:
            entry["eager_over_deeplabv3_resnet50_64"] = eager / reference
    write_results(results, args.out)


if __name__ == "__main__":
    main()

"""``segedu demo``: chapter 1's FCN-32s against FCN-8s on the synthetic set, on a CPU."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

DEMO_HELP = """\
Train chapter 1's networks on the offline synthetic shapes set and show what skips buy.

With no arguments this runs on the CPU with no network in about two minutes on 2 cores:
it trains FCN-32s and FCN-8s (VGG16 at 1/8 width, with BatchNorm: the CPU profile's
networks) for 5 epochs on 2048 synthetic 64x64 images, prints per-class IoU and mIoU on
128 validation images, and writes demo.png with inputs, ground truth and both models'
predictions. FCN-8s reaches about 0.85 mIoU; FCN-32s, which predicts from a 2x2 map at
this size, far less: that gap is what the skips buy.
"""


def run_demo(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")

    from ..core.metrics import format_report
    from ..core.profiles import get_profile
    from ..core.utils import count_parameters, set_seed
    from ..data import make_loaders
    from ..tools.viz import show_predictions
    from ..train import evaluate, fit, predict
    from ..zoo import build_model

    profile = get_profile("cpu", device=args.device)
    set_seed(args.seed)
    train_loader, val_loader, classes = make_loaders(
        "synthetic", size=profile.image_size, batch_size=profile.batch_size,
        train_length=args.train_images, val_length=profile.val_length, seed=args.seed,
        augment=profile.augment)
    epochs = args.epochs
    images, targets = next(iter(val_loader))
    images, targets = images[: args.rows], targets[: args.rows]
    predictions, results = {}, {}
    for name in args.models:
        set_seed(args.seed)
        model = build_model(name, len(classes), width=profile.width,
                            batch_norm=profile.batch_norm, dropout=profile.dropout)
        print(f"\n== {name}: {count_parameters(model):,} parameters at width "
              f"{profile.width:g} ({count_parameters(build_model(name, 21)):,} at full width, "
              "21 classes) ==")
        start = time.perf_counter()
        history = fit(model, train_loader, val_loader, num_classes=len(classes), epochs=epochs,
                      lr=profile.lr, device=profile.device, progress=not args.quiet,
                      log=None if args.quiet else print)
        seconds = time.perf_counter() - start
        metrics = evaluate(model, val_loader, len(classes), device=profile.device)
        results[name] = {"miou": metrics["miou"], "pixel_acc": metrics["pixel_acc"],
                         "iou": metrics["iou"], "train_seconds": seconds,
                         "final_loss": history.final["loss"]}
        print(format_report(metrics, classes))
        print(f"{name}: mIoU {metrics['miou']:.3f} on {len(val_loader.dataset)} validation "
              f"images after {epochs} epochs ({seconds:.0f} s)")
        predictions[name] = predict(model, images, profile.device)

    fig = show_predictions(images, targets, predictions, class_names=classes)
    out = Path(args.out)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(f"\nwrote {out} (inputs, ground truth, " + ", ".join(predictions) + ")")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if len(results) > 1:
        summary = "  ".join(f"{n} {r['miou']:.3f}" for n, r in results.items())
        print(f"mIoU: {summary}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``demo`` to the subcommands."""
    demo = sub.add_parser("demo", help="train FCN-32s vs FCN-8s on synthetic data (CPU, ~2 min)",
                          description=DEMO_HELP,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--models", nargs="+", default=["fcn32s", "fcn8s"],
                      help="zoo models to train and compare (default: fcn32s fcn8s)")
    demo.add_argument("--epochs", type=int, default=5, help="training epochs per model (5)")
    demo.add_argument("--train-images", type=int, default=2048,
                      help="synthetic training images (2048)")
    demo.add_argument("--out", default="demo.png", help="where to write the figure")
    demo.add_argument("--json", default=None, help="also write the metrics as JSON here")
    demo.add_argument("--rows", type=int, default=4, help="validation images in the figure")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default="cpu",
                      help="cpu (default), cuda or mps; the demo's sizes are the CPU profile's")
    demo.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    demo.set_defaults(func=run_demo)

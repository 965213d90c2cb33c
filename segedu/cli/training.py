"""``segedu train``, ``segedu eval`` and ``segedu models``: chapter 7's Trainer on a zoo model, a
checkpoint's evaluation, and the zoo's list."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Per-device defaults for `segedu train` (the CPU ones are the CPU profile's).
TRAIN_DEFAULTS = {
    "cuda": {"size": 512, "width": 1.0, "batch_size": 8, "epochs": 30, "lr": 0.01,
             "optimizer": "sgd"},
    "cpu": {"size": 64, "width": 0.125, "batch_size": 8, "epochs": 3, "lr": 3e-3,
            "optimizer": "adamw"},
}
TRAIN_DATASETS = {"synthetic": "synthetic", "pets": "oxford_pet", "voc": "voc",
                  "voc_aug": "voc_aug", "cityscapes": "cityscapes",
                  "small_objects": "small_objects"}


def _build(name: str, num_classes: int, width: float):
    import inspect

    from ..zoo import build_model, get_factory

    params = inspect.signature(get_factory(name)).parameters
    kwargs = {"width": width}
    if "batch_norm" in params and width < 1:  # reduced width from scratch needs BatchNorm
        kwargs["batch_norm"] = True
    return build_model(name, num_classes, **kwargs), kwargs


def _dataset(name: str, split: str, root: str, size: int, images: int | None, transforms):
    from torch.utils.data import Subset

    from ..data import SmallObjects, load_dataset

    if name == "small_objects":
        return SmallObjects(split, size, images, transforms=transforms)
    data = load_dataset(name, split, root, size, fallback=False, transforms=transforms,
                        length=images)
    if name != "synthetic" and images:
        data = Subset(data, range(min(images, len(data))))
    return data


def _datasets(name: str, root: str, size: int, train_images: int | None,
              val_images: int | None, augment: bool = True):
    """(train, val): real sets augmented with scale 0.5-2 and validated resized to ``size``;
    the offline sets with a milder scale jitter and validated as they are."""
    from ..data import eval_transforms, train_transforms

    real = name not in ("synthetic", "small_objects")
    scale = (0.5, 2.0) if real else (0.75, 1.25)
    train_tf = train_transforms(size, scale) if augment else eval_transforms(size if real else None)
    val_tf = eval_transforms(size if real else None)
    return (_dataset(name, "train", root, size, train_images, train_tf),
            _dataset(name, "val", root, size, val_images, val_tf))


def _classes(dataset) -> tuple[str, ...]:
    return tuple(getattr(dataset, "dataset", dataset).classes)


def run_train(args: argparse.Namespace) -> int:

    from ..core.utils import get_device, set_seed
    from ..data import DatasetUnavailableError
    from ..train import Trainer

    device = get_device(args.device, verbose=not args.quiet)
    defaults = TRAIN_DEFAULTS["cuda" if device.type == "cuda" else "cpu"]
    opts = {k: getattr(args, k) if getattr(args, k) is not None else v
            for k, v in defaults.items()}
    set_seed(args.seed)
    dataset = TRAIN_DATASETS[args.dataset]
    try:
        train_set, val_set = _datasets(dataset, args.data_root, opts["size"], args.train_images,
                                       args.val_images, augment=not args.no_augment)
    except DatasetUnavailableError as error:
        print(f"segedu train: {error}", file=sys.stderr)
        return 2
    classes = _classes(train_set)
    model, model_kwargs = _build(args.model, len(classes), opts["width"])
    out = Path(args.out or f"runs/{args.model}-{args.dataset}")
    meta = {"model": args.model, "model_kwargs": model_kwargs, "dataset": dataset,
            "data_root": args.data_root, "size": opts["size"], "classes": classes}
    trainer = Trainer(model, train_set, val_set, num_classes=len(classes), out_dir=out,
                      device=device, meta=meta, epochs=opts["epochs"],
                      batch_size=opts["batch_size"], lr=opts["lr"], optimizer=opts["optimizer"],
                      loss=args.loss, aux_weight=args.aux_weight, amp=args.amp,
                      sync_bn=args.sync_bn, head_lr_mult=args.head_lr_mult, seed=args.seed,
                      num_workers=args.workers, warmup_iters=args.warmup,
                      progress=not args.quiet)
    if args.resume:
        trainer.resume(args.resume)
    history = trainer.fit()
    final = history.final
    if "miou" in final:
        print(f"{args.model} on {args.dataset}: val mIoU {final['miou']:.3f} after "
              f"{final['epoch']} epochs; checkpoints and history in {out}/")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import torch

    from ..core.metrics import format_report
    from ..core.utils import get_device
    from ..train import evaluate_model

    device = get_device(args.device, verbose=False)
    state = torch.load(args.checkpoint, map_location=device, weights_only=False)
    meta = state.get("meta") or {}
    if "model" not in meta:
        raise ValueError(f"{args.checkpoint} has no model name in its meta; it was not written "
                         "by `segedu train`.")
    from ..zoo import build_model

    model = build_model(meta["model"], state["num_classes"], **meta["model_kwargs"])
    model.load_state_dict(state["model"])
    model.to(device)
    from ..data import eval_transforms

    real = meta["dataset"] not in ("synthetic", "small_objects")
    val_set = _dataset(meta["dataset"], "val", args.data_root or meta["data_root"], meta["size"],
                       args.val_images, eval_transforms(meta["size"] if real else None))
    metrics = evaluate_model(model, val_set, state["num_classes"], device=device,
                             multiscale=args.multiscale, window=args.window,
                             batch_size=args.batch_size)
    print(format_report(metrics, meta.get("classes")))
    how = "multi-scale + flip" if args.multiscale else "single scale"
    print(f"{meta['model']} ({args.checkpoint}): mIoU {metrics['miou']:.4f} on "
          f"{len(val_set)} {meta['dataset']} validation images, {how}")
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2))
    return 0


def run_models(args: argparse.Namespace) -> int:
    from ..core.utils import count_parameters
    from ..zoo import build_model, list_models

    for name in list_models():
        line = name
        if args.params:
            line += f"  {count_parameters(build_model(name, 21)):,} parameters (21 classes)"
        print(line)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``train``, ``eval`` and ``models`` to the subcommands (in that order)."""
    train = sub.add_parser(
        "train", help="train a zoo model with chapter 7's Trainer",
        description="Train a zoo model. Defaults depend on the device: on a GPU 512-pixel "
                    "crops, full width, SGD lr 0.01, batch 8 per GPU; on a CPU the CPU "
                    "profile (64 px, width 1/8, AdamW 3e-3). Many GPUs: "
                    "`torchrun --standalone --nproc_per_node N -m segedu.cli train ...` "
                    "(--batch-size is per process). See segedu/train/distributed.py.")
    train.add_argument("--model", required=True, help="a name from `segedu models`")
    train.add_argument("--dataset", choices=sorted(TRAIN_DATASETS), default="synthetic")
    train.add_argument("--data-root", default="data", help="where real data sets live")
    train.add_argument("--epochs", type=int, default=None)
    train.add_argument("--batch-size", type=int, default=None, help="per process")
    train.add_argument("--lr", type=float, default=None)
    train.add_argument("--optimizer", choices=["sgd", "adamw"], default=None)
    train.add_argument("--size", type=int, default=None, help="training crop size")
    train.add_argument("--width", type=float, default=None, help="channel multiplier")
    train.add_argument("--loss", default="ce", help="ce, dice, focal, ohem, lovasz or a sum "
                       "such as ce+dice (default ce)")
    train.add_argument("--aux-weight", type=float, default=0.4)
    train.add_argument("--head-lr-mult", type=float, default=1.0,
                       help="learning-rate multiplier of the heads (10 with pretrained backbones)")
    train.add_argument("--warmup", type=int, default=0, help="warm-up iterations")
    train.add_argument("--train-images", type=int, default=None)
    train.add_argument("--val-images", type=int, default=None)
    train.add_argument("--no-augment", action="store_true")
    train.add_argument("--resume", default=None, metavar="CKPT", help="continue from last.pt")
    train.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    train.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under torchrun")
    train.add_argument("--workers", type=int, default=0, help="data loader workers")
    train.add_argument("--out", default=None, help="output folder (runs/MODEL-DATASET)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best)")
    train.add_argument("--quiet", action="store_true")
    train.set_defaults(func=run_train)

    evaluate = sub.add_parser("eval", help="evaluate a checkpoint written by `segedu train`")
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--multiscale", action="store_true",
                          help="average scales 0.5-1.75 and left-right flips")
    evaluate.add_argument("--window", type=int, default=None, help="sliding-window size")
    evaluate.add_argument("--data-root", default=None)
    evaluate.add_argument("--val-images", type=int, default=None)
    evaluate.add_argument("--batch-size", type=int, default=8)
    evaluate.add_argument("--json", default=None)
    evaluate.add_argument("--device", default=None)
    evaluate.set_defaults(func=run_eval)

    models = sub.add_parser("models", help="list the model zoo")
    models.add_argument("--params", action="store_true", help="also count parameters")
    models.set_defaults(func=run_models)

"""The ``segedu`` command line.

    segedu demo                      train FCN-32s and FCN-8s on the synthetic set, report, plot
    segedu models                    list the model zoo
    segedu train --model NAME ...    train a zoo model (chapter 7's Trainer; torchrun for many
                                     GPUs); checkpoints, history.csv and history.png in --out
    segedu eval --checkpoint FILE    evaluate a checkpoint (--multiscale, --window)
    segedu export --model NAME       export to ONNX (dynamic batch; --dynamic: also H and W),
                                     --int8 --calibrate N: quantized with ONNX Runtime
    segedu bench --model NAME        latency of eager PyTorch, ONNX Runtime FP32 and INT8, FLOPs
    segedu assign [--check]          generate exercises/ from solutions/ (or check it is current);
                                     --bundle DIR also writes the instructor bundle
    segedu check NOTEBOOK            run a notebook's public exercise checks (for students)
    segedu grade SUBMISSION [...]    grade notebooks or folders of them against all tests;
                                     print "score: X / Y" or one row per student, and write
                                     a gradebook (--csv, --json, --markdown); --bundle DIR
                                     grades with the bundle's secret seed and private tests
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

__all__ = ["main"]

DEMO_HELP = """\
Train chapter 1's networks on the offline synthetic shapes set and show what skips buy.

With no arguments this runs on the CPU with no network in about two minutes on 2 cores:
it trains FCN-32s and FCN-8s (VGG16 at 1/8 width, with BatchNorm: the CPU profile's
networks) for 5 epochs on 2048 synthetic 64x64 images, prints per-class IoU and mIoU on
128 validation images, and writes demo.png with inputs, ground truth and both models'
predictions. FCN-8s reaches about 0.85 mIoU; FCN-32s, which predicts from a 2x2 map at
this size, far less: that gap is what the skips buy.
"""


def _demo(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")

    from .core.metrics import format_report
    from .core.profiles import get_profile
    from .core.utils import count_parameters, set_seed
    from .data import make_loaders
    from .tools.viz import show_predictions
    from .train import evaluate, fit, predict
    from .zoo import build_model

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

    from .zoo import build_model, get_factory

    params = inspect.signature(get_factory(name)).parameters
    kwargs = {"width": width}
    if "batch_norm" in params and width < 1:  # reduced width from scratch needs BatchNorm
        kwargs["batch_norm"] = True
    return build_model(name, num_classes, **kwargs), kwargs


def _dataset(name: str, split: str, root: str, size: int, images: int | None, transforms):
    from torch.utils.data import Subset

    from .data import SmallObjects, load_dataset

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
    from .data import eval_transforms, train_transforms

    real = name not in ("synthetic", "small_objects")
    scale = (0.5, 2.0) if real else (0.75, 1.25)
    train_tf = train_transforms(size, scale) if augment else eval_transforms(size if real else None)
    val_tf = eval_transforms(size if real else None)
    return (_dataset(name, "train", root, size, train_images, train_tf),
            _dataset(name, "val", root, size, val_images, val_tf))


def _classes(dataset) -> tuple[str, ...]:
    return tuple(getattr(dataset, "dataset", dataset).classes)


def _train(args: argparse.Namespace) -> int:

    from .core.utils import get_device, set_seed
    from .data import DatasetUnavailableError
    from .train import Trainer

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


def _eval(args: argparse.Namespace) -> int:
    import torch

    from .core.metrics import format_report
    from .core.utils import get_device
    from .train import evaluate_model

    device = get_device(args.device, verbose=False)
    state = torch.load(args.checkpoint, map_location=device, weights_only=False)
    meta = state.get("meta") or {}
    if "model" not in meta:
        raise ValueError(f"{args.checkpoint} has no model name in its meta; it was not written "
                         "by `segedu train`.")
    from .zoo import build_model

    model = build_model(meta["model"], state["num_classes"], **meta["model_kwargs"])
    model.load_state_dict(state["model"])
    model.to(device)
    from .data import eval_transforms

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


def _models(args: argparse.Namespace) -> int:
    from .core.utils import count_parameters
    from .zoo import build_model, list_models

    for name in list_models():
        line = name
        if args.params:
            line += f"  {count_parameters(build_model(name, 21)):,} parameters (21 classes)"
        print(line)
    return 0


def _build_for_deployment(args: argparse.Namespace):
    import torch

    from .zoo import build_model

    model = build_model(args.model, args.num_classes, width=args.width)
    if args.checkpoint:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("model", state), strict=True)
    return model.eval()


def _export(args: argparse.Namespace) -> int:
    import torch

    from .deploy import calibration_images, export_onnx, input_shape, quantize_onnx

    if args.format != "onnx":
        raise ValueError(f"--format {args.format!r} is not supported; use --format onnx")
    if args.calibrate < 1:
        raise ValueError(f"--calibrate needs at least one image, got {args.calibrate}")
    model = _build_for_deployment(args)
    out = Path(args.out or f"{args.model}.onnx")
    example = torch.randn(1, 3, args.size, args.size)
    start = time.perf_counter()
    export_onnx(model, out, example, dynamic_batch=True, dynamic_size=args.dynamic)
    print(f"wrote {out} (input {input_shape(out)}, {time.perf_counter() - start:.1f} s)")
    if args.int8:
        int8 = out.with_name(out.stem + "_int8.onnx")
        quantize_onnx(out, int8, calibration_images(args.calibrate, args.size))
        print(f"wrote {int8} (INT8: QDQ, per-channel weights, calibrated on {args.calibrate} "
              f"synthetic images at {args.size}x{args.size})")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import tempfile

    import torch

    from .core.utils import count_parameters
    from .deploy import (
        calibration_images,
        compare_latency,
        count_flops,
        export_onnx,
        machine_info,
        onnx_session,
        quantize_onnx,
    )

    model = _build_for_deployment(args)
    x = torch.randn(1, 3, args.size, args.size)
    info = machine_info()
    print(f"{args.model} (width {args.width:g}): {count_parameters(model):,} parameters, "
          f"{count_flops(model, x) / 1e9:.2f} GFLOPs at 1x3x{args.size}x{args.size}")
    print(f"{info['cpu']}, {info['cores']} cores, load average {info['load_average']}, "
          f"{args.threads} threads, median of {args.repeats} interleaved runs")
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", x, dynamic_batch=False)
        int8 = quantize_onnx(fp32, Path(tmp) / "int8.onnx",
                             calibration_images(args.calibrate, args.size))
        feed = {"image": x.numpy()}
        sessions = {"onnxruntime FP32": onnx_session(fp32, threads=args.threads),
                    "onnxruntime INT8": onnx_session(int8, threads=args.threads)}
        runners = {"PyTorch eager FP32": lambda: model(x)}
        runners.update({k: (lambda s=s: s.run(None, feed)) for k, s in sessions.items()})
        timings = compare_latency(runners, warmup=2, repeats=args.repeats, threads=args.threads)
    eager = timings["PyTorch eager FP32"].median
    print(f"{'runtime':22} {'median ms':>10} {'IQR ms':>15} {'vs eager':>9}")
    for name, t in timings.items():
        print(f"{name:22} {t.median:10.1f} {f'{t.q1:.1f}-{t.q3:.1f}':>15} "
              f"{t.median / eager:9.2f}")
    return 0


def _assign(args: argparse.Namespace) -> int:
    from .grading import assign

    if args.seed is not None and not args.bundle:
        raise ValueError("--seed sets the instructor bundle's grading seed; use it with --bundle")
    paths = assign(args.solutions, args.exercises, check=args.check)
    if args.bundle and not args.check:
        from .grading.engine.bundle import write_bundle

        bundle = write_bundle(args.bundle, args.solutions, args.exercises, seed=args.seed)
        print(f"wrote the instructor bundle {bundle.directory}/ (manifest.json, README.md, "
              "tests/): keep it away from students")
    if args.check:
        if paths:
            print("exercises/ is out of date; run `segedu assign` and commit the result:")
            for p in paths:
                print(f"  {p}")
            return 1
        print("exercises/ is up to date.")
        return 0
    for p in paths:
        print(f"wrote {p}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from .grading import check_notebook

    report = check_notebook(args.notebook, timeout=args.timeout)
    print(report.format())
    return 0 if report.full_marks else 1


def _grade(args: argparse.Namespace) -> int:
    from .grading.engine.batch import find_submissions, grade_submissions
    from .grading.engine.isolation import IsolationUnavailable
    from .grading.engine.judge import Grader
    from .grading.engine.reports import check_output_path, summary_line, write_json, write_text

    seed, tests = args.seed, list(args.tests)
    if args.bundle:
        from .grading.engine.bundle import bundle_mismatches, read_bundle

        if seed is not None:
            raise ValueError("--seed and --bundle: the bundle fixes the grading seed")
        bundle = read_bundle(args.bundle)
        problems = bundle_mismatches(bundle)
        if problems:
            raise ValueError(f"the installed segedu's exercises differ from the bundle "
                             f"{args.bundle!r} ({'; '.join(problems)}); grade with the segedu "
                             "version that made it, or refresh it with `segedu assign --bundle`")
        seed = bundle.seed
        tests = [str(p) for p in bundle.private_tests()] + tests
    submissions = find_submissions(args.submissions)
    single = len(submissions) == 1
    if args.gradescope and not single:
        raise ValueError("--gradescope writes one submission's results.json; "
                         f"got {len(submissions)} notebooks (use --json or --csv for a batch).")
    outputs = [p for p in (args.json, args.csv, args.markdown, args.gradescope) if p]
    for path in outputs:  # before any grading: a FIFO or a link there is refused now
        check_output_path(path)
    try:
        grader = Grader(extra_exercises=tests, seed=seed or 0, timeout=args.timeout,
                        case_timeout=args.case_timeout, memory_limit_mb=args.memory or None,
                        allow_unisolated=args.allow_unisolated,
                        protect=[s.path for s in submissions])
    except IsolationUnavailable as error:
        raise ValueError(f"{error} (segedu grade --allow-unisolated)") from None
    print(grader.isolation, flush=True)

    def on_graded(submission, report) -> None:
        if single or args.verbose:
            if not single:
                print(f"== {submission.student}: {submission.path}")
            print(report.format(), flush=True)
        else:
            print(summary_line(submission, report), flush=True)

    book = grade_submissions(
        submissions, on_graded=on_graded, chapter=args.chapter, grader=grader,
        timeout=args.timeout, case_timeout=args.case_timeout,
        memory_limit_mb=args.memory or None, extra_exercises=tests, jobs=args.jobs)
    first = book.rows[0][1]
    if args.json:
        write_json(args.json, book.to_json())
    if args.csv:
        write_text(args.csv, book.to_csv())
    if args.markdown:
        write_text(args.markdown, first.to_markdown() if single else book.to_markdown())
    if args.gradescope:
        write_json(args.gradescope, first.to_gradescope())
    not_graded = [s.student for s, r in book.rows if r.status.startswith("not graded")]
    if not single:
        line = (f"graded {len(book.rows) - len(not_graded)} of {len(book.rows)} submissions "
                f"in {book.elapsed:.1f} s")
        if not_graded:
            line += f"; not graded: {', '.join(not_graded)}"
        print(line)
    return 1 if not_graded else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segedu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

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
    demo.set_defaults(func=_demo)

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
    train.set_defaults(func=_train)

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
    evaluate.set_defaults(func=_eval)

    models = sub.add_parser("models", help="list the model zoo")
    models.add_argument("--params", action="store_true", help="also count parameters")
    models.set_defaults(func=_models)

    for command, helptext in (("export", "export a zoo model to ONNX (and INT8)"),
                              ("bench", "time a zoo model: eager, ONNX Runtime FP32 and INT8")):
        deploy = sub.add_parser(command, help=helptext)
        deploy.add_argument("--model", required=True, help="a zoo model (segedu models)")
        deploy.add_argument("--checkpoint", default=None,
                            help="a state_dict (or a dict with 'model') saved by torch.save")
        deploy.add_argument("--num-classes", type=int, default=21)
        deploy.add_argument("--width", type=float, default=1.0,
                            help="channel multiplier (1 = the paper's network)")
        deploy.add_argument("--size", type=int, default=256,
                            help="input side: the example/deployment size (256)")
        deploy.add_argument("--calibrate", type=int, default=16,
                            help="synthetic images to calibrate INT8 with (16)")
        if command == "export":
            deploy.add_argument("--format", default="onnx", help="onnx (the only one)")
            deploy.add_argument("--out", default=None, help="output file (NAME.onnx)")
            deploy.add_argument("--int8", action="store_true",
                                help="also write NAME_int8.onnx, quantized with ONNX Runtime")
            deploy.add_argument("--dynamic", action="store_true",
                                help="dynamic height and width too (not every model allows it)")
            deploy.set_defaults(func=_export)
        else:
            deploy.add_argument("--threads", type=int, default=1,
                                help="threads for every runtime (1)")
            deploy.add_argument("--repeats", type=int, default=10)
            deploy.set_defaults(func=_bench)

    assign = sub.add_parser("assign", help="generate exercises/ from solutions/")
    assign.add_argument("--solutions", default="solutions")
    assign.add_argument("--exercises", default="exercises")
    assign.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if exercises/ is out of date")
    assign.add_argument("--bundle", default=None, metavar="DIR",
                        help="also write the instructor bundle (manifest with points and the "
                             "grading seed, private tests folder) to DIR, outside exercises/")
    assign.add_argument("--seed", type=int, default=None,
                        help="the bundle's grading seed (default: kept, or drawn at random)")
    assign.set_defaults(func=_assign)

    check = sub.add_parser("check", help="run a notebook's public checks (students)")
    check.add_argument("notebook")
    check.add_argument("--timeout", type=float, default=120)
    check.set_defaults(func=_check)

    grade = sub.add_parser(
        "grade", help="grade notebooks or folders of them; prints 'score: X / Y' or a row each",
        description="Grade submissions, each in an operating-system sandbox (bubblewrap, else "
                    "a separate user; the level is printed) with time, memory, process and "
                    "disk limits. "
                    "A folder is searched for notebooks; its first level names the students "
                    "(submissions/alice.ipynb or submissions/alice/01_fcn.ipynb). Exits 1 if "
                    "a submission could not be graded at all. See docs/instructor.md.")
    grade.add_argument("submissions", nargs="+", metavar="SUBMISSION",
                       help="a notebook, or a folder of notebooks")
    grade.add_argument("--tests", action="append", default=[], metavar="PATH",
                       help="instructor's test file (.py registering exercises) or folder of "
                            "them; repeatable. Submissions cannot read them")
    grade.add_argument("--chapter", default=None,
                       help="chNN of every submission (default: from the file name NN_*.ipynb "
                            "or the notebook's answer cells)")
    grade.add_argument("--timeout", type=float, default=120,
                       help="seconds per submission before it is stopped (120)")
    grade.add_argument("--case-timeout", type=float, default=10,
                       help="seconds one case may run before it fails (10)")
    grade.add_argument("--memory", type=int, default=4096, metavar="MB",
                       help="memory a submission may allocate, in MiB; 0 for no limit (4096)")
    grade.add_argument("--jobs", type=int, default=1,
                       help="submissions graded at the same time, each in its own process (1)")
    grade.add_argument("--seed", type=int, default=None,
                       help="grading seed: seeds torch, random and NumPy before every case and "
                            "shifts every case's random inputs (0)")
    grade.add_argument("--bundle", default=None, metavar="DIR",
                       help="instructor bundle from `segedu assign --bundle`: its seed and "
                            "private tests")
    grade.add_argument("--json", default=None, help="write the gradebook with every case here")
    grade.add_argument("--csv", default=None,
                       help="write the gradebook here: one row per submission, a column per "
                            "exercise")
    grade.add_argument("--gradescope", default=None,
                       help="write Gradescope's results.json for one submission here")
    grade.add_argument("--markdown", default=None, help="write a Markdown report here")
    grade.add_argument("--allow-unisolated", action="store_true",
                       help="grade even where neither bubblewrap nor a separate user can "
                            "isolate the submissions: they then run with your own rights "
                            "(see docs/instructor.md)")
    grade.add_argument("--verbose", action="store_true",
                       help="with several submissions, print each one's full report")
    grade.set_defaults(func=_grade)

    from .tools import experiment as harness  # its own module: options, run and stored results

    experiment = sub.add_parser(
        "experiment", help="compare models with both per-pixel baselines on a diagnostic task "
                           "(equal budgets, seeds, stored results)")
    harness.add_arguments(experiment)
    experiment.set_defaults(func=harness.run_cli)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:  # bad input: say what was wrong, no traceback
        print(f"segedu {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``segedu`` command line.

    segedu demo                      train FCN-32s and FCN-8s on the synthetic set, report, plot
    segedu models                    list the model zoo
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
        from .grading.bundle import write_bundle

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
    from .grading.gradebook import (
        find_submissions,
        grade_submissions,
        summary_line,
        write_json,
    )

    seed, tests = args.seed, list(args.tests)
    if args.bundle:
        from .grading.bundle import bundle_mismatches, read_bundle

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

    def on_graded(submission, report) -> None:
        if single or args.verbose:
            if not single:
                print(f"== {submission.student}: {submission.path}")
            print(report.format(), flush=True)
        else:
            print(summary_line(submission, report), flush=True)

    book = grade_submissions(
        submissions, on_graded=on_graded, chapter=args.chapter, timeout=args.timeout,
        case_timeout=args.case_timeout, memory_limit_mb=args.memory or None,
        extra_exercises=tests, seed=seed or 0, jobs=args.jobs)
    first = book.rows[0][1]
    if args.json:
        write_json(args.json, book.to_json())
    if args.csv:
        Path(args.csv).write_text(book.to_csv(), encoding="utf-8")
    if args.markdown:
        Path(args.markdown).write_text(first.to_markdown() if single else book.to_markdown(),
                                       encoding="utf-8")
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
        description="Grade submissions, each in its own process with a time and memory limit. "
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
    grade.add_argument("--verbose", action="store_true",
                       help="with several submissions, print each one's full report")
    grade.set_defaults(func=_grade)
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

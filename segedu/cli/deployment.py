"""``segedu export`` and ``segedu bench``: chapter 8's ONNX export, INT8 quantization and
latency."""

from __future__ import annotations

import argparse
import inspect
import time
from pathlib import Path


def _build_for_deployment(args: argparse.Namespace):
    import torch

    from ..zoo import build_model

    model = build_model(args.model, args.num_classes, width=args.width)
    if args.checkpoint:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("model", state), strict=True)
    return model.eval()


def run_export(args: argparse.Namespace) -> int:
    import torch

    from ..deploy import calibration_images, export_onnx, input_shape, quantize_onnx

    if args.format != "onnx":
        raise ValueError(f"--format {args.format!r} is not supported; use --format onnx")
    if args.calibrate < 1:
        raise ValueError(f"--calibrate needs at least one image, got {args.calibrate}")
    if args.activations is not None and not args.int8:
        raise ValueError(f"--activations {args.activations} sets the INT8 graph's activation "
                         "type; add --int8 to write that graph")
    activations = args.activations or inspect.signature(quantize_onnx).parameters[
        "activations"].default                       # the library's default, said once there
    model = _build_for_deployment(args)
    out = Path(args.out or f"{args.model}.onnx")
    example = torch.randn(1, 3, args.size, args.size)
    start = time.perf_counter()
    export_onnx(model, out, example, dynamic_batch=True, dynamic_size=args.dynamic)
    print(f"wrote {out} (input {input_shape(out)}, {time.perf_counter() - start:.1f} s)")
    if args.int8:
        int8 = out.with_name(out.stem + "_int8.onnx")
        quantize_onnx(out, int8, calibration_images(args.calibrate, args.size),
                      activations=activations)
        print(f"wrote {int8} (INT8: QDQ, {activations} activations, per-channel int8 weights, "
              f"calibrated on {args.calibrate} synthetic images at {args.size}x{args.size})")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    import tempfile

    import torch

    from ..core.utils import count_parameters
    from ..deploy import (
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


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``export`` and ``bench`` to the subcommands."""
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
            deploy.add_argument("--activations", choices=("int8", "uint8"), default=None,
                                help="with --int8: the activations' type, int8 (S8S8, the "
                                     "default) or uint8 (U8S8: on x86 more ops get integer "
                                     "kernels, e.g. ResNet's residual additions)")
            deploy.add_argument("--dynamic", action="store_true",
                                help="dynamic height and width too (not every model allows it)")
            deploy.set_defaults(func=run_export)
        else:
            deploy.add_argument("--threads", type=int, default=1,
                                help="threads for every runtime (1)")
            deploy.add_argument("--repeats", type=int, default=10)
            deploy.set_defaults(func=run_bench)

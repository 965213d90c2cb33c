"""Latency of every zoo model three ways: eager PyTorch, torch.compile (inductor) and ONNX
Runtime, with the time each needs to get ready (compile, export) and the largest difference
from eager, relative to the largest logit. Measured, not asserted (the shared model test
checks correctness).

    python3 benchmarks/deploy_speed.py                       # every model, width 1/8, 128x128
    python3 benchmarks/deploy_speed.py --models fcn8s unet --width 0.25 --size 256
    python3 benchmarks/deploy_speed.py --no-compile          # skip inductor (slow to compile)

Times are medians over ``--repeats`` runs after one warm-up, batch 1, on the CPU unless
``--device cuda`` (ONNX Runtime always runs on its CPU provider here).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import segedu
from segedu.deploy import export_onnx, measure_latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=None)
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-onnx", action="store_true")
    args = parser.parse_args()

    device = torch.device(args.device)
    names = args.models or segedu.list_models()
    print(f"torch {torch.__version__}, {segedu.core.utils.describe_device(device)}, width "
          f"{args.width}, input 1x3x{args.size}x{args.size}, median of {args.repeats}")
    header = (f"{'model':30} {'eager ms':>9} {'compile s':>9} {'compiled ms':>11} {'ratio':>6} "
              f"{'export s':>8} {'onnxrt ms':>9} {'ratio':>6} {'rel. diff':>10}")
    print(header)
    for name in names:
        model = segedu.build_model(name, 21, width=args.width).eval().to(device)
        x = torch.randn(1, 3, args.size, args.size, device=device)
        with torch.no_grad():
            expected = model(x)["out"]
            # Random-init deep nets (no BN in training mode) give logits up to ~1e5: compare
            # the largest difference with the largest logit.
            scale = float(expected.abs().max().clamp(min=1e-12))

            eager_ms = measure_latency(lambda model=model, x=x: model(x), warmup=1,
                                       repeats=args.repeats, device=device).median
            row = f"{name:30} {eager_ms:9.1f}"
            diffs = []
            if args.no_compile:
                row += f" {'-':>9} {'-':>11} {'-':>6}"
            else:
                compiled = torch.compile(model)
                start = time.perf_counter()
                got = compiled(x)["out"]
                compile_s = time.perf_counter() - start
                diffs.append(float((got - expected).abs().max() / scale))

                compiled_ms = measure_latency(lambda compiled=compiled, x=x: compiled(x),
                                              warmup=1, repeats=args.repeats,
                                              device=device).median
                row += f" {compile_s:9.1f} {compiled_ms:11.1f} {compiled_ms / eager_ms:6.2f}"
                torch._dynamo.reset()
            if args.no_onnx:
                row += f" {'-':>8} {'-':>9} {'-':>6}"
            else:
                import onnxruntime as ort

                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / f"{name}.onnx"
                    cpu_model, cpu_x = model.cpu(), x.cpu()
                    start = time.perf_counter()
                    export_onnx(cpu_model, path, cpu_x)
                    export_s = time.perf_counter() - start
                    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                    feed = {"image": cpu_x.numpy()}
                    got = torch.from_numpy(session.run(["out"], feed)[0])
                    diffs.append(float((got - expected.cpu()).abs().max() / scale))
                    ort_ms = measure_latency(
                        lambda session=session, feed=feed: session.run(None, feed), warmup=1,
                        repeats=args.repeats).median
                    model.to(device)
                eager_cpu = eager_ms if device.type == "cpu" else float("nan")
                row += f" {export_s:8.1f} {ort_ms:9.1f} {ort_ms / eager_cpu:6.2f}"
            row += f" {max(diffs) if diffs else float('nan'):10.1e}"
        print(row, flush=True)


if __name__ == "__main__":
    main()

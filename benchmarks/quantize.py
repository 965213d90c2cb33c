"""INT8 that is really faster? Full-width networks at 256x256, batch 1, on ``--threads`` threads:

* eager PyTorch FP32, ONNX Runtime FP32 and ONNX Runtime INT8 (QDQ, per-channel weights,
  calibrated on ``--calibrate`` synthetic images at 256x256, the deployment size) with signed
  activations (S8S8, the documented first choice) and unsigned ones (U8S8), timed
  **interleaved** in one loop (a, b, c, a, b, c, ...) so the machine's load hits all three alike:
  report the ratios INT8/eager and ORT FP32/eager, not the absolute numbers;
* which ops stayed in floating point after quantization and their share of INT8 time (ONNX
  Runtime's profiler on the optimised session);
* ``--compile``: ``torch.compile`` (inductor) once per model: its compile time and latency;
* ``--pt2e``: PyTorch's own INT8 flow (torchao's PT2E with the X86 inductor quantizer), where
  torchao is installed: its preparation + compile time and latency;
* TensorRT through ONNX Runtime's TensorRT execution provider when CUDA and TensorRT are there,
  else the reason it was skipped.

The networks are randomly initialised (full-width networks cannot be trained here); speed
does not depend on the weights' values. Accuracy is ``benchmarks/mobile_vs_resnet.py``'s job.

    python3 benchmarks/quantize.py       # writes benchmarks/results/quantize.json
    python3 benchmarks/quantize.py --models lraspp_mobilenet_v3_large --size 128 --repeats 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import write_results

import segedu
from segedu.deploy import (
    calibration_images,
    compare_latency,
    export_onnx,
    int8_report,
    machine_info,
    measure_latency,
    onnx_session,
    quantize_onnx,
    tensorrt_status,
)

RESULTS = Path(__file__).resolve().parent / "results" / "quantize.json"
MODELS = ["deeplabv3_mobilenet_v3_large", "fcn_resnet50", "lraspp_mobilenet_v3_large"]


def pt2e_int8(model: torch.nn.Module, x: torch.Tensor, calibration: list[torch.Tensor]):
    """torchao's PT2E INT8 flow with the X86 inductor quantizer; returns the compiled model and
    the seconds it took to prepare, calibrate, convert and compile (first call included)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    start = time.perf_counter()
    exported = torch.export.export(model, (x,)).module()
    config = xiq.get_default_x86_inductor_quantization_config()
    quantizer = xiq.X86InductorQuantizer().set_global(config)
    prepared = prepare_pt2e(exported, quantizer)
    for batch in calibration:
        prepared(batch)
    converted = convert_pt2e(prepared)
    compiled = torch.compile(converted)
    compiled(x)
    return compiled, time.perf_counter() - start


def measure_model(name: str, args: argparse.Namespace, x: torch.Tensor,
                  calibration: list[torch.Tensor], trt_available: bool) -> tuple[dict, dict]:
    """Export, quantize and time one full-width model (see the module docstring)."""
    model = segedu.build_model(name, 21).eval()
    entry: dict = {}
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        start = time.perf_counter()
        fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", x, dynamic_batch=False)
        entry["export_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        int8 = quantize_onnx(fp32, Path(tmp) / "int8.onnx", calibration)
        entry["quantize_seconds"] = time.perf_counter() - start
        u8 = quantize_onnx(fp32, Path(tmp) / "u8s8.onnx", calibration, activations="uint8")
        feed = {"image": x.numpy()}
        expected = model(x)["out"]
        got = torch.from_numpy(onnx_session(int8).run(None, feed)[0])
        entry["int8_agreement"] = float((got.argmax(1) == expected.argmax(1)).float().mean())
        entry["latency_ms"], entry["ratios"] = {}, {}
        for threads in args.threads:  # each runtime with the same number of threads
            fp32_session = onnx_session(fp32, threads=threads)
            int8_session = onnx_session(int8, threads=threads)
            u8_session = onnx_session(u8, threads=threads)
            timings = compare_latency({
                "eager_fp32": lambda: model(x),
                "ort_fp32": lambda s=fp32_session: s.run(None, feed),
                "ort_int8": lambda s=int8_session: s.run(None, feed),
                "ort_int8_u8s8": lambda s=u8_session: s.run(None, feed),
            }, warmup=3, repeats=args.repeats, threads=threads)
            entry["latency_ms"][str(threads)] = {k: v.to_json() for k, v in timings.items()}
            eager = timings["eager_fp32"].median
            entry["ratios"][str(threads)] = {
                "int8_over_eager": timings["ort_int8"].median / eager,
                "ort_fp32_over_eager": timings["ort_fp32"].median / eager,
                "int8_over_ort_fp32": timings["ort_int8"].median / timings["ort_fp32"].median,
                "u8s8_over_eager": timings["ort_int8_u8s8"].median / eager,
                "u8s8_over_ort_fp32": (timings["ort_int8_u8s8"].median
                                       / timings["ort_fp32"].median),
            }
        entry["int8_report"] = int8_report(int8, x, threads=min(args.threads)).to_json()
        entry["int8_report_u8s8"] = int8_report(u8, x, threads=min(args.threads)).to_json()
        if args.compile:
            compiled = torch.compile(model)
            start = time.perf_counter()
            compiled(x)
            entry["compile_seconds"] = time.perf_counter() - start
            both = compare_latency({"eager_fp32": lambda: model(x),
                                    "compiled_fp32": lambda: compiled(x)},
                                   warmup=2, repeats=args.repeats, threads=min(args.threads))
            entry["ratio_compiled_over_eager"] = (both["compiled_fp32"].median
                                                  / both["eager_fp32"].median)
            torch._dynamo.reset()
        if args.pt2e:
            try:
                quantized, seconds = pt2e_int8(model, x, calibration)
                entry["pt2e_prepare_compile_seconds"] = seconds
                both = compare_latency({"eager_fp32": lambda: model(x),
                                        "pt2e_int8": lambda: quantized(x)},
                                       warmup=2, repeats=args.repeats, threads=min(args.threads))
                entry["ratio_pt2e_int8_over_eager"] = (both["pt2e_int8"].median
                                                       / both["eager_fp32"].median)
            except ImportError as err:
                entry["pt2e"] = f"skipped: {err}"
            torch._dynamo.reset()
        if trt_available:
            trt = onnx_session(fp32, providers=["TensorrtExecutionProvider",
                                                "CUDAExecutionProvider"])
            entry["latency_tensorrt_fp32_ms"] = measure_latency(
                lambda: trt.run(None, feed), warmup=5, repeats=args.repeats).to_json()
    return entry, timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1],
                        help="thread counts to time at, each in its own interleaved loop")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--calibrate", type=int, default=16)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--pt2e", action="store_true", help="also time torchao's PT2E INT8")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    calibration = calibration_images(args.calibrate, args.size)
    available, reason = tensorrt_status()
    results = {"command": "python3 benchmarks/" + Path(sys.argv[0]).name + " "
               + " ".join(sys.argv[1:]),
               "input": [1, 3, args.size, args.size], "threads": args.threads,
               "width": 1.0, "calibration_images": args.calibrate,
               "machine_at_start": machine_info(),
               "tensorrt": {"available": available, "reason": reason}, "models": {}}
    print(f"{results['machine_at_start']}\nTensorRT: {reason}", flush=True)
    for name in args.models:
        entry, timings = measure_model(name, args, x, calibration, available)
        results["models"][name] = entry
        share = entry["int8_report"]["share"]
        ratios = "; ".join(f"{t} threads: INT8/eager {r['int8_over_eager']:.2f} (U8S8 "
                           f"{r['u8s8_over_eager']:.2f}), ORT FP32/eager "
                           f"{r['ort_fp32_over_eager']:.2f}, INT8/ORT FP32 "
                           f"{r['int8_over_ort_fp32']:.2f}" for t, r in entry["ratios"].items())
        print(f"{name:30} {ratios} (eager {timings['eager_fp32']}); "
              f"INT8 time: float ops {share.get('float', 0):.0%}, Q/DQ "
              f"{share.get('convert', 0):.0%}; float ops "
              f"{entry['int8_report']['nodes'].get('float', {})}", flush=True)
    write_results(results, args.out)


if __name__ == "__main__":
    main()

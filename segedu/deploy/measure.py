"""Measuring a deployed model: latency, FLOPs, and which accelerators are there.

Latency is a property of a model *and* a machine *and* its load: :func:`measure_latency` warms
up, repeats, and reports the median with the spread (min, quartiles, max) and the thread
count, so a number is never printed without what it was measured with. On a shared machine
compare runtimes by ratios measured interleaved in one run (:func:`compare_latency`), not by
absolute numbers taken minutes apart.

FLOPs come from PyTorch's own counter, :class:`torch.utils.flop_counter.FlopCounterMode`: it
counts the floating-point operations of matrix multiplications and convolutions (2 per
multiply-add) as the model really runs them, and nothing else (element-wise ops, pooling and
interpolation are not counted — they are memory-bound anyway).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["Latency", "measure_latency", "compare_latency", "count_flops", "tensorrt_status",
           "machine_info"]


@dataclass(frozen=True)
class Latency:
    """Milliseconds per call: ``median`` and the spread of ``repeats`` timed calls after
    ``warmup`` untimed ones, with ``threads`` intra-op threads."""

    median: float
    q1: float
    q3: float
    min: float
    max: float
    repeats: int
    warmup: int
    threads: int

    def __str__(self) -> str:
        return (f"{self.median:.1f} ms (IQR {self.q1:.1f}-{self.q3:.1f}, {self.repeats} runs, "
                f"{self.threads} threads)")

    def to_json(self) -> dict:
        return asdict(self)


def _summary(times_ms: list[float], warmup: int, threads: int) -> Latency:
    q = statistics.quantiles(times_ms, n=4) if len(times_ms) > 1 else [times_ms[0]] * 3
    return Latency(median=statistics.median(times_ms), q1=q[0], q3=q[2], min=min(times_ms),
                   max=max(times_ms), repeats=len(times_ms), warmup=warmup, threads=threads)


def _timer(device: torch.device | str | None) -> Callable[[Callable[[], object]], float]:
    """A function that calls ``fn()`` once and returns its milliseconds. On a CUDA ``device``
    it waits for the GPU before starting and before stopping the clock: kernels run
    asynchronously, and without the wait the time would be the launch's, not the work's."""
    if device is not None and torch.device(device).type == "cuda":
        def timed(fn: Callable[[], object]) -> float:
            torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize(device)
            return 1000 * (time.perf_counter() - start)
    else:
        def timed(fn: Callable[[], object]) -> float:
            start = time.perf_counter()
            fn()
            return 1000 * (time.perf_counter() - start)
    return timed


def measure_latency(fn: Callable[[], object], *, warmup: int = 2, repeats: int = 10,
                    threads: int | None = None,
                    device: torch.device | str | None = None) -> Latency:
    """Time ``fn()``: ``warmup`` calls first (caches, lazy initialisation, one-off compiles),
    then ``repeats`` timed calls. ``threads`` sets ``torch.set_num_threads`` for the
    measurement (and restores it); ``None`` keeps the current setting. A session of ONNX
    Runtime has its own thread count, set when it is created (``onnx_session(threads=...)``).
    ``device``: where ``fn`` computes; on a CUDA device each timed call waits for the GPU.
    """
    return compare_latency({"fn": fn}, warmup=warmup, repeats=repeats, threads=threads,
                           device=device)["fn"]


def compare_latency(fns: dict[str, Callable[[], object]], *, warmup: int = 2,
                    repeats: int = 10, threads: int | None = None,
                    device: torch.device | str | None = None) -> dict[str, Latency]:
    """Time several runners *interleaved* (round-robin: a, b, c, a, b, c, ...), so a change in
    the machine's load hits all of them alike and their ratios stay meaningful. ``warmup``,
    ``repeats``, ``threads`` and ``device`` as in :func:`measure_latency`."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}.")
    timed = _timer(device)
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        times: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(repeats):
            for name, fn in fns.items():
                times[name].append(timed(fn))
        n = torch.get_num_threads()
        return {name: _summary(t, warmup, n) for name, t in times.items()}
    finally:
        torch.set_num_threads(before)


def count_flops(model: nn.Module, example: torch.Tensor) -> int:
    """Floating-point operations of one eval-mode forward pass on ``example``
    (:class:`torch.utils.flop_counter.FlopCounterMode`: convolutions and matrix products,
    2 per multiply-add). Runs on the ``meta`` device when the model is there."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(example)
    finally:
        model.train(was_training)
    return counter.get_total_flops()


def tensorrt_status() -> tuple[bool, str]:
    """``(True, "...")`` when ONNX Runtime's TensorRT execution provider can run here; else
    ``(False, reason)`` naming what is missing (a CUDA GPU, the provider, TensorRT itself)."""
    if not torch.cuda.is_available():
        return False, "no CUDA GPU on this machine (TensorRT runs on NVIDIA GPUs only)"
    try:
        import onnxruntime as ort
    except ImportError:
        return False, "onnxruntime is not installed"
    providers = ort.get_available_providers()
    if "TensorrtExecutionProvider" not in providers:
        return False, (f"this onnxruntime build has no TensorRT provider (it has "
                       f"{', '.join(providers)}); install onnxruntime-gpu and TensorRT")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, "the TensorRT libraries are not installed (pip install tensorrt)"
    return True, "TensorRT execution provider available"


def machine_info() -> dict:
    """What a timing was measured on: CPU model and cores, the load averages at that moment
    (``uptime``'s three numbers), INT8-relevant CPU flags, PyTorch's threads, library versions."""
    from .quantize import cpu_int8_support

    model = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": model, "cores": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()]
            if hasattr(os, "getloadavg") else None,
            "cpu_flags": cpu_int8_support(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info

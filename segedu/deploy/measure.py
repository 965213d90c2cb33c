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

The same numbers by hand (the lesson, and the chapter's exercise): :func:`conv_cost` gives a
convolution's parameters and multiply-accumulates (MACs) from its hyper-parameters and output
size, :func:`network_cost` sums them over a plain stack of layers. **Convention:** one MAC is
one multiplication of a weight by an input value added into an output; a bias's addition and
BatchNorm (folded into the conv before deployment, :mod:`~segedu.deploy.fold`) cost none. So
``FLOPs = 2 * MACs`` exactly as :func:`count_flops` counts them. Papers mix the two ("FLOPs"
often means MACs, as in MobileNetV3's table): say which.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..core.sizes import conv_output_size

__all__ = ["Latency", "measure_latency", "compare_latency", "count_flops", "conv_cost",
           "network_cost", "tensorrt_status", "machine_info"]


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
    #: Every timed call in order: with :func:`compare_latency`, call ``i`` of each runner
    #: belongs to the same round, so ``a.times_ms[i] / b.times_ms[i]`` is a paired ratio.
    times_ms: tuple[float, ...] = field(default=(), repr=False)

    def __str__(self) -> str:
        return (f"{self.median:.1f} ms (IQR {self.q1:.1f}-{self.q3:.1f}, {self.repeats} runs, "
                f"{self.threads} threads)")

    def to_json(self) -> dict:
        return asdict(self)


def _summary(times_ms: list[float], warmup: int, threads: int) -> Latency:
    q = statistics.quantiles(times_ms, n=4) if len(times_ms) > 1 else [times_ms[0]] * 3
    return Latency(median=statistics.median(times_ms), q1=q[0], q3=q[2], min=min(times_ms),
                   max=max(times_ms), repeats=len(times_ms), warmup=warmup, threads=threads,
                   times_ms=tuple(times_ms))


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


def _pair(value: int | tuple[int, ...], name: str, minimum: int = 1) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= minimum for v in pair):
        raise ValueError(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}.")
    return pair


def conv_cost(in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
              out_height: int, out_width: int, groups: int = 1,
              bias: bool = True) -> tuple[int, int]:
    """``(parameters, MACs)`` of an ``nn.Conv2d`` producing an ``out_height x out_width`` map.

    Each output value is a dot product of one filter, ``in_channels / groups`` channels by
    ``kh x kw`` taps, with the input window under it: that many MACs per output value, for
    ``out_channels x out_height x out_width`` values. The weights are ``out_channels`` such
    filters, plus ``out_channels`` biases (additions, not MACs: see the module docstring).
    A depthwise conv (``groups = in_channels``, MobileNet) has one channel per filter.

    >>> conv_cost(64, 128, 3, 56, 56)              # a VGG conv: 74k weights, 231M MACs
    (73856, 231211008)
    """
    kh, kw = _pair(kernel_size, "kernel_size")
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("groups", groups), ("out_height", out_height),
                        ("out_width", out_width)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"groups={groups} must divide both in_channels={in_channels} and "
                         f"out_channels={out_channels} (as nn.Conv2d requires).")
    per_output = (in_channels // groups) * kh * kw       # MACs of one output value
    params = out_channels * per_output + (out_channels if bias else 0)
    return params, out_channels * out_height * out_width * per_output


#: Layers that change neither the size nor the count (activations, dropout).
_FREE = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Identity,
         nn.Dropout, nn.Dropout2d)


def network_cost(layers: nn.Sequential, height: int, width: int) -> tuple[int, int]:
    """``(parameters, MACs)`` of a plain stack of layers on a ``height x width`` input, by
    hand: each ``Conv2d`` by :func:`conv_cost` at the size it outputs (sizes pushed through
    with :func:`~segedu.core.sizes.conv_output_size`); ``BatchNorm2d`` adds its scale and shift
    (2 per channel) and no MACs; pooling changes the size; activations cost nothing.

    The parameters equal ``sum(p.numel() for p in layers.parameters())`` and ``2 * MACs``
    equals :func:`count_flops` (the tests check both). Any other layer raises ``ValueError``.
    """
    params = macs = 0
    for index, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d):
            if isinstance(layer.padding, str):           # "same" keeps the size, "valid" is 0
                pads = (None, None) if layer.padding == "same" else (0, 0)
            else:
                pads = layer.padding
            height, width = (
                n if p is None else conv_output_size(n, k, s, p, d)
                for n, k, s, p, d in zip((height, width), layer.kernel_size, layer.stride,
                                         pads, layer.dilation, strict=True))
            p, m = conv_cost(layer.in_channels, layer.out_channels, layer.kernel_size,
                             height, width, layer.groups, layer.bias is not None)
            params, macs = params + p, macs + m
        elif isinstance(layer, nn.BatchNorm2d):
            params += 2 * layer.num_features if layer.affine else 0
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            dilation = getattr(layer, "dilation", 1)
            stride = layer.stride if layer.stride is not None else layer.kernel_size
            height, width = (
                conv_output_size(n, k, s, p, d, ceil_mode=layer.ceil_mode)
                for n, k, s, p, d in zip((height, width), _pair(layer.kernel_size, "kernel_size"),
                                         _pair(stride, "stride"),
                                         _pair(layer.padding, "padding", minimum=0),
                                         _pair(dilation, "dilation"), strict=True))
        elif not isinstance(layer, _FREE):
            raise ValueError(f"network_cost counts Conv2d, BatchNorm2d, max/average pooling and "
                             f"activations; layer {index} is a {type(layer).__name__}. Count "
                             "other networks with count_flops.")
    return params, macs


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

"""INT8 post-training static quantization with ONNX Runtime, and what stays in floating point.

Static quantization stores weights as 8-bit integers and runs activations as 8-bit integers
too, with a scale (and zero point) per tensor fixed *before* deployment from a calibration set:
a few hundred real inputs at the deployment size, whose activation ranges the calibrator
records. The recipe, in ONNX Runtime's words (its "quantize ONNX models" guide):

1. **Pre-process** (:func:`onnxruntime.quantization.shape_inference.quant_pre_process`): shape
   inference and graph optimisation — which folds BatchNorm into the convolutions
   (:mod:`segedu.deploy.fold` does it by hand), so the folded weights are what gets quantized.
2. **Calibrate and quantize** (``quantize_static``) in the **QDQ** format: the float graph with
   QuantizeLinear/DequantizeLinear pairs around each quantizable op, signed INT8 for weights and
   activations (S8S8), weights **per channel** — the guide's first choice for CNNs on x86.
3. At session creation ONNX Runtime fuses ``DQ -> Conv -> Q`` into an integer kernel
   (``QLinearConv``). An op with no integer kernel stays a float op between a DQ and a Q —
   it pays the conversions and gains nothing. :func:`int8_report` lists them and times them.

The speed-up needs integer dot-product instructions (AVX-512 VNNI or AVX-VNNI on x86;
:func:`cpu_int8_support` reads the CPU flags). Without them INT8 can be *slower* than FP32.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .export import onnx_session

__all__ = ["quantize_onnx", "calibration_images", "int8_report", "Int8Report",
           "cpu_int8_support", "INTEGER_OPS"]

#: Op types that run in integer arithmetic after ONNX Runtime's QDQ fusion (CPU provider).
INTEGER_OPS = frozenset({
    "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QLinearConcat",
    "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearSigmoid", "QLinearLeakyRelu",
    "QLinearSoftmax", "QLinearReduceMean", "QLinearWhere", "QGemm", "ConvInteger",
    "MatMulInteger", "DynamicQuantizeLinear", "MatMulIntegerToFloat", "QLinearConvTranspose",
})
#: The conversions between the two worlds.
CONVERSION_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
#: Ops that move or reshape data without arithmetic; they run on INT8 tensors as they are.
DATA_MOVEMENT_OPS = frozenset({
    "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Slice", "Gather", "GatherND",
    "Concat", "Split", "Shape", "Identity", "MaxPool", "Pad", "Cast", "Constant", "Expand",
    "ReorderInput", "ReorderOutput", "Range", "Tile", "Resize",
})


def cpu_int8_support() -> dict[str, bool]:
    """The x86 CPU flags INT8 kernels are fast with: ``avx512_vnni``, ``avx_vnni`` (VNNI: an
    8-bit dot product in one instruction), and ``avx2`` (the fallback ONNX Runtime uses). All
    ``False`` where ``/proc/cpuinfo`` is not there (macOS, Windows, ARM)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    return {f: f in flags for f in ("avx512_vnni", "avx_vnni", "avx2")}


def calibration_images(n: int, size: int, *, seed: int = 1) -> list[torch.Tensor]:
    """``n`` synthetic *training* images (1, 3, size, size), normalised as in training — a
    calibration set at the deployment size, never the validation images it is judged on."""
    # Imported here: the data sets import torchvision, which costs as much as torch itself, and
    # `import segedu` (every notebook, every graded submission) should not pay for it.
    from ..data import SyntheticShapes, eval_transforms

    data = SyntheticShapes("train", size=size, length=n, seed=seed,
                           transforms=eval_transforms())
    return [data[i][0].as_subclass(torch.Tensor)[None] for i in range(n)]


class _Images:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over batches of images."""

    def __init__(self, batches: Iterable[torch.Tensor], input_name: str) -> None:
        self._batches = iter(batches)
        self._name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        if batch is None:
            return None
        if isinstance(batch, (tuple, list)):  # (images, masks) from a loader
            batch = batch[0]
        array = batch.detach().cpu().numpy() if isinstance(batch, torch.Tensor) else batch
        return {self._name: np.ascontiguousarray(array, dtype=np.float32)}

    def rewind(self) -> None:  # part of the protocol; calibration reads the batches once
        pass


def quantize_onnx(fp32_path: str | os.PathLike, int8_path: str | os.PathLike,
                  calibration: Iterable[torch.Tensor] | torch.Tensor, *,
                  activations: str = "int8", per_channel: bool = True,
                  exclude_ops: Iterable[str] = ()) -> Path:
    """Quantize the FP32 graph at ``fp32_path`` to INT8 (QDQ, S8S8, per-channel weights,
    min-max calibration) and write it to ``int8_path``.

    ``calibration``: image batches (tensors (N, 3, H, W), or ``(images, masks)`` pairs from a
    loader, or one tensor) at the deployment size, normalised as the model was trained.
    ``activations``: ``"int8"`` (S8S8, ONNX Runtime's documented first choice) or ``"uint8"``
    (U8S8). Measured here (ONNX Runtime 1.32, x86 with VNNI): with S8S8 the residual additions
    of a ResNet get no integer kernel, so the convolutions feeding them stay float between Q/DQ
    pairs; with U8S8 every conv and addition runs in integers (``benchmarks/quantize.py``).
    ``exclude_ops``: op types to leave in floating point (e.g. ``["ConvTranspose"]``).
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    if activations not in types:
        raise ValueError(f"activations must be 'int8' or 'uint8', got {activations!r}.")
    if isinstance(calibration, torch.Tensor):
        calibration = list(calibration.split(1))
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
        import onnx

        graph = onnx.load(str(prepared))
        op_types = sorted({node.op_type for node in graph.graph.node} - set(exclude_ops))
        input_name = graph.graph.input[0].name
        quantize_static(
            str(prepared), str(int8_path), _Images(calibration, input_name),
            quant_format=QuantFormat.QDQ, activation_type=types[activations],
            weight_type=QuantType.QInt8, per_channel=per_channel,
            calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=op_types,
        )
    return int8_path


@dataclass
class Int8Report:
    """What runs in INT8 and what stays in floating point in an optimised INT8 session.

    ``nodes``: count per op type, split into ``"int8"``, ``"convert"`` (Q/DQ), ``"move"`` (data
    movement) and ``"float"``. ``ms``: measured time per op type (ONNX Runtime's profiler, summed
    over the profiled runs and divided by their number). ``share``: the fraction of the
    profiled node time each group takes.
    """

    nodes: dict[str, dict[str, int]] = field(default_factory=dict)
    ms: dict[str, float] = field(default_factory=dict)
    share: dict[str, float] = field(default_factory=dict)

    def float_ops(self) -> dict[str, int]:
        """Float op types that do arithmetic, with their counts (the ones INT8 missed)."""
        return dict(self.nodes.get("float", {}))

    def to_json(self) -> dict:
        return {"nodes": self.nodes, "ms": self.ms, "share": self.share}


def _group(op_type: str) -> str:
    if op_type in INTEGER_OPS:
        return "int8"
    if op_type in CONVERSION_OPS:
        return "convert"
    if op_type in DATA_MOVEMENT_OPS:
        return "move"
    return "float"


def int8_report(int8_path: str | os.PathLike, example: torch.Tensor, *, threads: int = 1,
                runs: int = 3) -> Int8Report:
    """Optimise and profile the INT8 graph at ``int8_path`` on ``example`` (``runs`` runs after a
    warm-up) and say which ops run in INT8, which stay float, and what each group costs."""
    import onnx

    report = Int8Report()
    with tempfile.TemporaryDirectory() as tmp:
        optimised = Path(tmp) / "optimised.onnx"
        session = onnx_session(int8_path, threads=threads, profile=True,
                               optimized_path=optimised)
        feed = {session.get_inputs()[0].name: example.numpy().astype(np.float32)}
        for _ in range(runs + 1):
            session.run(None, feed)
        profile_file = session.end_profiling()
        events = json.loads(Path(profile_file).read_text())
        Path(profile_file).unlink(missing_ok=True)
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for node in onnx.load(str(optimised), load_external_data=False).graph.node:
            counts[_group(node.op_type)][node.op_type] += 1
    report.nodes = {g: dict(sorted(c.items())) for g, c in counts.items()}
    totals: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            totals[e["args"]["op_name"]] += e["dur"] / 1000.0
    # the first run is a warm-up: keep the per-run average of all runs (it is close)
    report.ms = {op: ms / (runs + 1) for op, ms in sorted(totals.items(), key=lambda t: -t[1])}
    total = sum(report.ms.values()) or 1.0
    groups: dict[str, float] = defaultdict(float)
    for op, ms in report.ms.items():
        groups[_group(op)] += ms
    report.share = {g: ms / total for g, ms in sorted(groups.items())}
    return report

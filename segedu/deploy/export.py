"""Export a segedu model to ONNX and run it with ONNX Runtime.

Every model of the course follows the dict contract (``model(x)["out"]``). ONNX graphs have
positional outputs, so :func:`export_onnx` wraps the model in :class:`OutputOnly` and exports
the ``"out"`` logits as the graph's single output ``"out"`` for an input named ``"image"``.

We use PyTorch's default exporter (``torch.onnx.export(..., dynamo=True)``, built on
``torch.export``; it needs the ``onnxscript`` package). The legacy TorchScript exporter
(``dynamo=False``) cannot export ``adaptive_avg_pool2d`` when the pooled size does not divide
the map ("output size that are not factor of input size") — PSPNet's pyramid pooling at most
input sizes. The new exporter decomposes the operation into index arithmetic and exports it.

**Dynamic shapes.** ``dynamic_batch=True`` (the default) exports the batch dimension as a
symbol: one file serves batch 1 and batch 32. ``dynamic_size=True`` also makes H and W symbols
(32 to 4096 pixels).
That works where every size the network computes is a formula of H and W that ``torch.export``
can trace: U-Net, the DeepLabs, LR-ASPP. FCN depends on the example: exported at 64x48 its graph
is right at other sizes, exported at 64x64 or 32x32 it is not (sizes the exporter specialised
on). It does not work where the code needs the size's *value*:

* RefineNet and Light-Weight RefineNet, SegNet: their code turns sizes into Python integers
  (``int(s)`` in ``refinenet.upsample_aligned``, in ``segnet.max_unpool``'s output size and its
  index check), so the exporter fixes H and W to the example's (it *specialises* them);
* PSPNet: pooling to 2, 3 and 6 bins that need not divide the map becomes index lists computed
  for the example's size. The exporter keeps H and W symbolic, but the graph is wrong at any
  other size (ONNX Runtime fails with an out-of-range index). :func:`export_onnx` refuses such
  a model before tracing it (its pyramid pooling, or any ``nn.AdaptiveAvgPool2d``/``MaxPool2d``
  to more than one cell: :func:`size_bound_modules`). Deploy it at a size every bin divides
  (:func:`pspnet_export_size` finds the nearest): each bin is then a plain average pool of
  equal cells, as the paper draws it.

Export at a size where no feature map is 1x1: ``torch.export`` treats a size of 1 as a special
case and bakes it in. :func:`export_onnx` checks all of this: it raises a
``ValueError`` when a dimension was fixed, and runs the graph at a second size against PyTorch
before it returns. Export those models once per
deployment size (the file then checks the size it is given, :func:`run_onnx`).

    >>> import segedu, torch
    >>> from segedu.deploy import export_onnx, run_onnx
    >>> model = segedu.build_model("fcn8s", 3, width=0.125).eval()
    >>> x = torch.randn(1, 3, 64, 64)
    >>> path = export_onnx(model, "fcn8s.onnx", x)            # doctest: +SKIP
    >>> run_onnx(path, x).shape                                # doctest: +SKIP
    (1, 3, 64, 64)
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.sizes import resnet_feature_size
from ..core.validation import check_image_batch
from ..pspnet import PAPER_BINS, PyramidPoolingModule

__all__ = ["OutputOnly", "export_onnx", "onnx_session", "run_onnx", "input_shape", "evaluate_onnx",
           "pspnet_export_size", "size_bound_modules"]


class OutputOnly(nn.Module):
    """``model(x)["out"]`` as a module with one tensor output (what ONNX graphs return)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def _require(*packages: str) -> None:
    for package in packages:
        try:
            __import__(package)
        except ImportError as err:
            raise ImportError(f"exporting and running ONNX models needs the {package!r} "
                              "package: pip install onnx onnxscript onnxruntime") from err


def size_bound_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules whose exported graph is right only at the example's size, by name: adaptive
    pools to more than one cell, as modules or as PSPNet's pyramid (its 2-, 3- and 6-bin
    levels). Each output cell averages a window from ``floor(i * H / bins)`` to
    ``ceil((i + 1) * H / bins)``; the exporter writes those bounds down as index lists for the
    example's H and W.

    A pool to one cell (global average pooling, ASPP's image pooling) is a mean over the whole
    map at any size and is not listed.

    >>> from torch import nn
    >>> size_bound_modules(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.AdaptiveAvgPool2d(3)))
    [('1', AdaptiveAvgPool2d(output_size=3))]
    """
    found = []
    for name, module in model.named_modules():
        if isinstance(module, PyramidPoolingModule):
            cells = tuple(module.bins)
        elif isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            size = module.output_size
            cells = tuple(size) if isinstance(size, (tuple, list)) else (size,)
        else:
            continue
        if any(c is not None and c != 1 for c in cells):
            found.append((name, module))
    return found


def _dynamic_shapes(example: torch.Tensor, dynamic_batch: bool, dynamic_size: bool):
    from torch.export import Dim

    dims: dict[int, object] = {}
    if dynamic_batch:
        dims[0] = Dim("batch", min=1, max=1024)
    if dynamic_size:
        dims[2] = Dim("height", min=32, max=4096)
        dims[3] = Dim("width", min=32, max=4096)
    return ({**dims},) if dims else None


def export_onnx(model: nn.Module, path: str | os.PathLike, example: torch.Tensor, *,
                dynamic_batch: bool = True, dynamic_size: bool = False,
                verbose: bool = False) -> Path:
    """Export ``model`` (in eval mode) for inputs shaped like ``example`` to ``path``.

    Returns the path of one self-contained ``.onnx`` file (weights inside). The model is put
    in eval mode (BatchNorm uses its running statistics, Dropout is off), as a deployed model
    must be. ``dynamic_batch``/``dynamic_size``: see the module docstring (a batch-1 example is
    repeated to batch 2 for a dynamic batch: ``torch.export`` fixes a dimension whose example
    value is 1).

    Raises ``ValueError`` for a bad example, or a size the network cannot make dynamic;
    ``ImportError`` naming the package to install when ``onnx``/``onnxscript`` are missing.
    """
    in_channels = getattr(model, "in_channels", None)
    check_image_batch(example, in_channels, name="example")
    _require("onnx", "onnxscript")
    path = Path(path)
    model.eval()
    bound = size_bound_modules(model) if dynamic_size else []
    if bound:  # refused before tracing: the trace takes seconds and its graph would be wrong
        name, module = bound[0]
        what = (f"pyramid pooling {name!r} (bins {tuple(module.bins)})"
                if isinstance(module, PyramidPoolingModule) else f"module {name!r} ({module})")
        raise ValueError(
            f"{type(model).__name__} cannot be exported with a dynamic height and width: its "
            f"{what} pools to a fixed number of cells, which the exporter "
            f"writes down as index lists for the example's {list(example.shape[-2:])} "
            f"({len(bound)} such module(s)). Export it with dynamic_size=False at the deployment "
            "size (for PSPNet, pspnet_export_size finds one every bin divides).")
    shapes = _dynamic_shapes(example, dynamic_batch, dynamic_size)
    if shapes is not None and dynamic_batch and example.shape[0] == 1:
        example = example.expand(2, *example.shape[1:]).contiguous()
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    try:
        with torch.no_grad(), quiet, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(OutputOnly(model).eval(), (example,), None,
                                        input_names=["image"], output_names=["out"],
                                        dynamo=True, dynamic_shapes=shapes)
    except Exception as err:  # torch.export's constraint errors come wrapped in several types
        if not dynamic_size:
            raise
        name = type(model).__name__
        raise ValueError(
            f"{name} cannot be exported with a dynamic height and width: its graph depends on "
            "the input size's value (bins that need not divide the map, crops or unpooling "
            "to exact sizes). Export it with dynamic_size=False at the deployment size."
        ) from err
    program.save(str(path), external_data=False)
    _check_dims(path, example, dynamic_batch, dynamic_size, type(model).__name__)
    if dynamic_size:
        _check_other_size(model, path, example)
    return path


def pspnet_export_size(height: int, width: int, output_stride: int = 8,
                       bins: tuple[int, ...] = PAPER_BINS) -> tuple[int, int]:
    """The input size nearest to ``height x width`` (each side separately, the larger on a
    tie, at least 32) at which every pyramid bin divides PSPNet's feature map: the dilated
    ResNet's last map at ``output_stride`` (:func:`~segedu.core.sizes.resnet_feature_size`)
    must be a multiple of the bins' least common multiple.

    Such sizes come in runs of ``output_stride`` inputs every ``output_stride * lcm(bins)``
    (48 at stride 8 with the paper's bins), so the answer is less than that far away.

    >>> pspnet_export_size(480, 640)     # a VGA camera: maps 60 x 80 -> 60 x 78
    (480, 624)
    """
    if not bins or any(not isinstance(b, int) or b < 1 for b in bins):
        raise ValueError(f"bins must be positive ints such as (1, 2, 3, 6), got {bins!r}.")
    period = math.lcm(*bins)

    def nearest(side: int, name: str) -> int:
        if not isinstance(side, int) or side < 1:
            raise ValueError(f"{name} must be a positive int (pixels), got {side!r}.")
        for distance in range(output_stride * period + 32):
            for size in (side + distance, side - distance):
                if size >= 32 and resnet_feature_size(size, output_stride) % period == 0:
                    return size
        raise AssertionError("unreachable: a fitting size recurs every stride * lcm(bins)")
    return nearest(height, "height"), nearest(width, "width")


def _check_other_size(model: nn.Module, path: Path, example: torch.Tensor) -> None:
    """Run the graph at another size (odd where the example is even) against PyTorch: a graph
    with symbolic H, W can still hold constants computed for the example's size."""
    h, w = example.shape[-2:]
    x = torch.randn(1, example.shape[1], h + 11, w + 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x)["out"].numpy()
    try:
        got = run_onnx(path, x)
        scale = max(1.0, float(np.abs(expected).max()))
        ok = got.shape == expected.shape and float(np.abs(got - expected).max()) <= 1e-3 * scale
    except Exception:  # onnxruntime's errors (out-of-range indices) are all RuntimeErrors
        ok = False
    if not ok:
        path.unlink()
        raise ValueError(
            f"{type(model).__name__} cannot be exported with a dynamic height and width: the "
            f"graph exported at {list(example.shape[-2:])} computes something else at "
            f"{list(x.shape[-2:])} (sizes baked into it, such as pooling bins that need not "
            "divide the map). Export it with dynamic_size=False at the deployment size.")


def _check_dims(path: Path, example: torch.Tensor, dynamic_batch: bool, dynamic_size: bool,
                name: str) -> None:
    """The exporter keeps a dimension fixed when the model's code makes it so (it *specialises*
    it); say so instead of handing back a file that fails at the first other size."""
    shape = input_shape(path)
    wanted = {0: dynamic_batch, 2: dynamic_size, 3: dynamic_size}
    fixed = [axis for axis, dynamic in wanted.items() if dynamic and isinstance(shape[axis], int)]
    if fixed:
        path.unlink()
        what = "batch" if fixed == [0] else "height and width"
        raise ValueError(f"{name} cannot be exported with a dynamic {what}: the exporter fixed "
                         f"dims {fixed} to the example's {list(example.shape)}. Export it at the "
                         "deployment size with that dimension fixed.")


def input_shape(path: str | os.PathLike) -> list[int | str]:
    """The exported graph's input shape: an int per fixed dimension, a name per dynamic one."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def onnx_session(path: str | os.PathLike, *, threads: int | None = None,
                 providers: list[str] | None = None, profile: bool = False,
                 optimized_path: str | os.PathLike | None = None):
    """An ``onnxruntime.InferenceSession`` for ``path``.

    ``threads`` sets the intra-op thread pool (ONNX Runtime's default is one per physical
    core; state it when you time). ``providers`` defaults to the CPU. ``profile=True`` records
    every node's time (read with ``session.end_profiling()``); ``optimized_path`` saves the graph
    after ONNX Runtime's optimizations (fusions, INT8 kernels), which shows what really runs.
    """
    _require("onnxruntime")
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.enable_profiling = profile
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options,
                                providers=providers or ["CPUExecutionProvider"])


def run_onnx(path_or_session, x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Run an exported model (a path or a session) on ``x``; returns the ``"out"`` logits.

    Raises ``ValueError`` when ``x`` does not fit the shape the graph was exported for.
    """
    session = (path_or_session if hasattr(path_or_session, "run")
               else onnx_session(path_or_session))
    array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    expected = session.get_inputs()[0].shape
    fits = len(array.shape) == len(expected) and all(
        not isinstance(e, int) or e == a for e, a in zip(expected, array.shape, strict=False))
    if not fits:
        raise ValueError(f"this ONNX model was exported for inputs of shape {expected}, got "
                         f"{list(array.shape)}; export again with an example of that size.")
    return session.run(["out"], {"image": array.astype(np.float32)})[0]


def evaluate_onnx(path_or_session, loader, num_classes: int) -> dict:
    """Confusion-matrix metrics (as :func:`segedu.train.evaluate` returns them) of an exported
    model over ``loader``'s (images, masks) batches, run in ONNX Runtime."""
    from ..core.metrics import ConfusionMatrix

    session = (path_or_session if hasattr(path_or_session, "run")
               else onnx_session(path_or_session))
    cm = ConfusionMatrix(num_classes)
    for images, targets, *_ in loader:
        cm.update(torch.from_numpy(run_onnx(session, images)), targets)
    return cm.compute()

"""Deployment: export a segedu model to ONNX and run it with onnxruntime.

Every model of the course follows the dict contract (``model(x)["out"]``). ONNX graphs have
positional outputs, so :func:`export_onnx` wraps the model in :class:`OutputOnly` and exports
the ``"out"`` logits as the graph's single output ``"out"`` for an input named ``"image"``.

We use PyTorch's default exporter (``torch.onnx.export(..., dynamo=True)``, built on
``torch.export``; it needs the ``onnxscript`` package). The legacy TorchScript exporter
(``dynamo=False``) cannot export ``adaptive_avg_pool2d`` when the pooled size does not divide
the map ("output size that are not factor of input size") — PSPNet's pyramid pooling and
DeepLab's image pooling at most input sizes. The new exporter decomposes the operation and
exports it. The exported graph has the example's fixed size; export once per deployment size.

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
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .core.validation import check_image_batch

__all__ = ["OutputOnly", "export_onnx", "run_onnx"]


class OutputOnly(nn.Module):
    """``model(x)["out"]`` as a module with one tensor output (what ONNX graphs return)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def export_onnx(model: nn.Module, path: str | os.PathLike, example: torch.Tensor, *,
                verbose: bool = False) -> Path:
    """Export ``model`` (in eval mode) for inputs shaped like ``example`` to ``path``.

    Returns the path. The model is put in eval mode (BatchNorm uses its running statistics,
    Dropout is off), as a deployed model must be. Raises ``ValueError`` for a bad example and
    ``ImportError`` naming the package to install when ``onnx``/``onnxscript`` are missing.
    """
    in_channels = getattr(model, "in_channels", None)
    check_image_batch(example, in_channels, name="example")
    for package in ("onnx", "onnxscript"):
        try:
            __import__(package)
        except ImportError as err:
            raise ImportError(f"exporting to ONNX needs the {package!r} package: "
                              f"pip install onnx onnxscript onnxruntime") from err
    path = Path(path)
    model.eval()
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with torch.no_grad(), quiet:
        torch.onnx.export(OutputOnly(model).eval(), (example,), str(path), input_names=["image"],
                          output_names=["out"], dynamo=True)
    return path


def run_onnx(path: str | os.PathLike, x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Run an exported model with onnxruntime on the CPU; returns the ``"out"`` logits."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ImportError("running ONNX models needs onnxruntime: pip install onnxruntime") from err
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    expected = session.get_inputs()[0].shape
    if list(array.shape) != list(expected):
        raise ValueError(f"this ONNX model was exported for inputs of shape {expected}, got "
                         f"{list(array.shape)}; export again with an example of that size.")
    return session.run(["out"], {"image": array.astype(np.float32)})[0]

"""Small shared helpers: device choice, seeding, parameter counts, training memory.

Nothing in segedu assumes a GPU. :func:`get_device` picks CUDA, then Apple's MPS,
then the CPU, and says which it picked so a learner knows what they are running on.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from torch import nn

__all__ = ["get_device", "set_seed", "count_parameters", "describe_device",
           "saved_activation_bytes"]


def get_device(preferred: str | None = None, verbose: bool = True) -> torch.device:
    """Return the best available device: CUDA, then MPS, then CPU.

    Args:
        preferred: force a device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).
            The environment variable ``SEGEDU_DEVICE`` does the same, so a notebook
            can be pinned to the CPU without editing it.
        verbose: print which device was chosen and why.
    """
    choice = preferred or os.environ.get("SEGEDU_DEVICE")
    if choice:
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"device {choice!r} was requested but CUDA is not available on this machine; "
                "use 'cpu' (or leave the device unset to pick automatically)."
            )
        if device.type == "mps" and not _mps_available():
            raise ValueError(
                f"device {choice!r} was requested but MPS is not available; use 'cpu'."
            )
        reason = "requested"
    elif torch.cuda.is_available():
        device, reason = torch.device("cuda"), "CUDA GPU found"
    elif _mps_available():
        device, reason = torch.device("mps"), "Apple GPU (MPS) found"
    else:
        device, reason = torch.device("cpu"), "no GPU found"
    if verbose:
        print(f"Using device: {describe_device(device)} ({reason})")
    return device


def describe_device(device: torch.device | str) -> str:
    """A human-readable name for ``device`` (the GPU model for CUDA)."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "cpu":
        return f"cpu, {torch.get_num_threads()} threads"
    return str(device)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def set_seed(seed: int = 0, deterministic: bool = False) -> None:
    """Seed Python, NumPy and PyTorch so that CPU runs are repeatable.

    ``deterministic=True`` also asks PyTorch for deterministic kernels (slower on GPU,
    and some ops then raise instead of running non-deterministically).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters in ``model`` (all of them, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def saved_activation_bytes(model: nn.Module, *inputs: torch.Tensor) -> dict[str, int]:
    """Bytes of the tensors autograd keeps for the backward pass of one training forward.

    Runs ``model(*inputs)`` in training mode under :func:`torch.autograd.graph.saved_tensors_hooks`
    and adds up every saved tensor once (weights excluded: they are kept anyway). This is
    the activation memory a training step needs on top of the weights, and it depends on the
    input size; on the ``meta`` device it is counted without allocating or computing anything.
    ``model`` is left in training mode.

    Returns ``{"total": bytes, "int64": bytes of int64 tensors}`` (max-pooling indices are
    int64 in PyTorch).
    """
    weights = {id(p) for p in model.parameters()}
    saved: dict[int, tuple[int, torch.dtype]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in weights:
            saved[id(t)] = (t.numel() * t.element_size(), t.dtype)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.train()(*inputs)
    return {"total": sum(b for b, _ in saved.values()),
            "int64": sum(b for b, dtype in saved.values() if dtype == torch.int64)}

"""The effective receptive field, measured by gradients (Luo, Li, Urtasun & Zemel, NeurIPS 2016).

Which input pixels actually move one output unit: :func:`effective_receptive_field` back-propagates
from the unit to the input. The theoretical field (:mod:`.theoretical`) bounds it; inside that
bound the measured field is concentrated around the centre, roughly Gaussian (Luo et al., Sec. 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .theoretical import receptive_field

__all__ = ["EffectiveRF", "effective_receptive_field"]


# --------------------------------------------------------------------------------------------
# Effective receptive field (Luo, Li, Urtasun & Zemel, NeurIPS 2016)
# --------------------------------------------------------------------------------------------


@dataclass
class EffectiveRF:
    """``gradient``: |d unit / d input| (H, W), summed over channels, averaged over samples;
    ``unit``: the (row, col) of the output unit in its layer's map, of size ``output_size``."""

    gradient: torch.Tensor
    unit: tuple[int, int]
    output_size: tuple[int, int]

    def support(self, threshold: float = 0.0) -> tuple[int, int, int, int]:
        """Bounding box ``(top, bottom, left, right)`` (inclusive) of the pixels whose gradient
        exceeds ``threshold`` times the largest one (0: every pixel that influences the unit)."""
        g = self.gradient
        rows = torch.nonzero((g > threshold * g.max()).any(dim=1)).flatten()
        cols = torch.nonzero((g > threshold * g.max()).any(dim=0)).flatten()
        if rows.numel() == 0 or g.max() <= 0:
            raise ValueError("the gradient is zero everywhere: the unit does not depend on the "
                             "input (a zero-initialised layer, or dead ReLUs?). Try other "
                             "weights or inputs, or samples > 1.")
        return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])

    def mass_extent(self, fraction: float = 0.9) -> int:
        """Side of the smallest square, centred on the gradient's centroid, that holds
        ``fraction`` of its total mass: the ERF is roughly Gaussian and much smaller than the
        theoretical field (Luo et al., Sec. 2)."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
        g = self.gradient.double()
        total = g.sum()
        if total <= 0:
            raise ValueError("the gradient is zero everywhere.")
        ys = torch.arange(g.shape[0], dtype=g.dtype)
        xs = torch.arange(g.shape[1], dtype=g.dtype)
        cy = int(torch.round((g.sum(1) * ys).sum() / total))
        cx = int(torch.round((g.sum(0) * xs).sum() / total))
        for r in range(max(g.shape)):
            inside = g[max(cy - r, 0):cy + r + 1, max(cx - r, 0):cx + r + 1].sum()
            if inside >= fraction * total * (1 - 1e-9):
                return 2 * r + 1
        return 2 * max(g.shape) + 1


class _Reached(Exception):
    """Raised by a forward hook to stop the forward pass at the requested layer."""


def _find_layer(model: nn.Module, layer: str) -> nn.Module:
    try:
        return model.get_submodule(layer)
    except AttributeError:
        pass
    try:  # a label such as "pool5"
        rows = receptive_field(model, upto=layer)
    except ValueError as err:
        raise ValueError(f"the model has no layer {layer!r} ({err})") from None
    return model.get_submodule(rows[-1].name)


def effective_receptive_field(
    model: nn.Module,
    input_size: int | tuple[int, int],
    layer: str | None = None,
    *,
    unit: tuple[int, int] | None = None,
    inputs: torch.Tensor | None = None,
    samples: int = 1,
    seed: int = 0,
) -> EffectiveRF:
    """Measure which input pixels move one output unit: the gradient of the unit (summed over
    its channels) with respect to the input, in eval mode.

    Luo et al. show the effective field is a subset of the theoretical one and, after training or
    at random init, concentrated around its centre (roughly Gaussian). For a linear stack with
    positive weights nothing cancels and the support is exactly the theoretical field.

    Args:
        model: any module; ``layer`` is a submodule path or a label of :func:`receptive_field`
            (``"pool5"``). Without ``layer`` the model's output (``["out"]`` of a dict).
            A model with ``forward_features`` (the backbones) is run through it.
        input_size: H (= W) or (H, W) of the random inputs.
        unit: (row, col) in the layer's output map; default its centre ``((h-1)//2, (w-1)//2)``.
        inputs: (N, C, H, W) inputs to use instead of ``samples`` standard-normal ones.
        samples: number of random inputs to average over (ReLU networks route gradients
            differently for each input).
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    if inputs is None:
        if samples < 1:
            raise ValueError(f"samples must be at least 1, got {samples}.")
        generator = torch.Generator().manual_seed(seed)
        channels = getattr(model, "in_channels", None) or next(
            (m.in_channels for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), 3)
        inputs = torch.randn(samples, channels, h, w, generator=generator, dtype=dtype)
    x = inputs.to(device=device, dtype=dtype).clone().requires_grad_(True)

    captured: list[torch.Tensor] = []

    def hook(_module, _args, output):
        captured.append(output)
        raise _Reached

    handle = _find_layer(model, layer).register_forward_hook(hook) if layer else None
    was_training = model.training
    model.eval()
    try:
        run = getattr(model, "forward_features", model) if layer else model
        try:
            out = run(x)
        except _Reached:
            out = captured[0]
    finally:
        model.train(was_training)
        if handle is not None:
            handle.remove()
    if isinstance(out, dict):
        out = out["out"]
    if not isinstance(out, torch.Tensor) or out.dim() != 4:
        raise ValueError("the layer's output must be one (N, C, H, W) tensor; pass layer= a "
                         f"convolutional layer (got {type(out).__name__}).")
    oh, ow = out.shape[-2:]
    uy, ux = unit if unit is not None else ((oh - 1) // 2, (ow - 1) // 2)
    if not (0 <= uy < oh and 0 <= ux < ow):
        raise ValueError(f"unit {unit} is outside the layer's {oh}x{ow} output map.")
    (grad,) = torch.autograd.grad(out[:, :, uy, ux].sum(), x)
    return EffectiveRF(grad.abs().sum(1).mean(0).detach().cpu(), (uy, ux), (oh, ow))

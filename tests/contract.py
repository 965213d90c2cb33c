"""The model contract, as one assertion every model test uses (see the README's "How the pieces
fit"): ``model(x)`` returns a dict whose ``"out"`` holds finite float32 logits of shape
(N, num_classes, H, W) at the input's H, W."""

from __future__ import annotations

import torch


def assert_logits_at_input_size(model: torch.nn.Module, size: tuple[int, int], num_classes: int,
                                batch: int = 2, keys: tuple[str, ...] | None = ("out",)) -> dict:
    """Run ``model`` (in its current mode, without gradients) on a random batch of ``size`` and
    check the contract; ``keys`` are the exact keys expected (None: only that "out" is there).
    Returns the output dict."""
    with torch.no_grad():
        out = model(torch.randn(batch, 3, *size))
    assert isinstance(out, dict) and "out" in out, "a model returns a dict with 'out'"
    if keys is not None:
        assert list(out) == list(keys)
    for value in out.values():
        assert tuple(value.shape) == (batch, num_classes, *size)
        assert value.dtype == torch.float32
        assert torch.isfinite(value).all()
    return out


def assert_rejects_bad_images(model: torch.nn.Module, in_channels: int = 3) -> None:
    """The bad-input contract: a wrong rank, channel count, layout or dtype is a ValueError that
    says what was expected (never a shape error from deep inside a conv)."""
    import pytest  # only the tests use this module

    with pytest.raises(ValueError, match="unsqueeze"):              # (C, H, W): no batch axis
        model(torch.randn(in_channels, 64, 64))
    with pytest.raises(ValueError, match=f"{in_channels} channels"):
        model(torch.randn(1, in_channels + 1, 64, 64))
    with pytest.raises(ValueError, match="channels-last"):          # (N, H, W, C)
        model(torch.randn(1, 64, 64, in_channels))
    with pytest.raises(ValueError, match="floating-point"):
        model(torch.zeros(1, in_channels, 64, 64, dtype=torch.uint8))

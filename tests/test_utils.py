"""Shared helpers in ``segedu.core.utils``."""

import torch
from torch import nn

from segedu.core.utils import saved_activation_bytes


def test_saved_activation_bytes_counts_what_autograd_keeps_by_hand():
    # A linear layer keeps its input for the weight gradient: 2 x 4 float32 = 32 bytes.
    assert saved_activation_bytes(nn.Linear(4, 3), torch.randn(2, 4)) == {"total": 32,
                                                                          "int64": 0}
    # ... and a ReLU after it keeps its 2 x 3 output: 24 bytes more.
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    assert saved_activation_bytes(model, torch.randn(2, 4))["total"] == 56
    # A 2x2 max-pool keeps its input (16 floats) and one int64 index per output (4).
    x = torch.randn(1, 1, 4, 4, requires_grad=True)
    assert saved_activation_bytes(nn.MaxPool2d(2), x) == {"total": 64 + 32, "int64": 32}


def test_saved_activation_bytes_works_on_the_meta_device_and_leaves_weights_out():
    with torch.device("meta"):
        model = nn.Conv2d(3, 8, 3, padding=1)
        counted = saved_activation_bytes(model, torch.empty(1, 3, 10, 10))
    assert counted == {"total": 3 * 10 * 10 * 4, "int64": 0}  # the input only, not the weight
    assert model.training  # as documented: the count needs a training-mode forward

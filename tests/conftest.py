import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("SEGEDU_DEVICE", "cpu")


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same RNG state, so failures reproduce."""
    torch.manual_seed(0)
    yield

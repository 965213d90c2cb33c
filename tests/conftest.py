import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("SEGEDU_DEVICE", "cpu")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on two cores: one thread each (and for the notebooks and graders they
    # start), or the OpenMP thread pools fight over the cores and everything crawls.
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same RNG state, so failures reproduce."""
    torch.manual_seed(0)
    yield

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


def pytest_collection_modifyitems(config, items):
    """Longest tests first (browser, lesson notebooks, then other slow ones): with two xdist
    workers the short tests then fill the gaps, instead of one worker finishing a notebook
    alone at the end. The sort is stable and the same in every worker, as xdist requires."""
    def rank(item) -> int:
        if item.get_closest_marker("browser") or "test_notebooks.py" in item.nodeid:
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)


def pytest_terminal_summary(terminalreporter, config):
    """Say the random test order's seed even under -q, so a failure can be replayed."""
    seed = getattr(config.option, "randomly_seed", None)
    if isinstance(seed, int):
        terminalreporter.write_line(
            f"test order: random (pytest-randomly), seed {seed}; replay it with "
            f"python3 -m pytest -p randomly --randomly-seed={seed}")

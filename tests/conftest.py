import os
import subprocess
import sys
from pathlib import Path

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


def run_nbval(notebook: Path, mode: str, *options: str, cwd: Path, env: dict | None = None,
              timeout: float = 900) -> subprocess.CompletedProcess:
    """nbval on one notebook in a fresh pytest process that loads nbval and no other plugin.

    ``mode`` is ``"--nbval"`` (every stored output compared) or ``"--nbval-lax"`` (only the
    cells marked ``# NBVAL_CHECK_OUTPUT``). Plugin auto-loading is off: what else is installed
    (xdist, randomly, hypothesis: 1.3 s of imports alone) would cost every notebook a second
    and could change how it runs."""
    sanitize = Path(__file__).with_name("nbval_sanitize.cfg")
    command = [sys.executable, "-m", "pytest", "-p", "nbval.plugin", mode, str(notebook),
               "--nbval-current-env", "--nbval-sanitize-with", str(sanitize),
               "-p", "no:cacheprovider", "-q", "--color=no", *options]
    env = {**(os.environ if env is None else env), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same RNG state, so failures reproduce."""
    torch.manual_seed(0)
    yield


#: Bottleneck blocks per stage of the ResNet-50 that tracing tests build (ResNet-50: 3-4-6-3).
#: One block in each early stage, two in stage 3 and stage 4 whole: the first block of a stage
#: has the strided or dilation-changing conv and the projection shortcut, the second the
#: stage's own dilation, so every kind of layer is still there (test_zoo checks it); DeepLab
#: v3's multi-grid gives stage 4's three blocks a rate each, so it keeps its three.
SHALLOW_RESNET_LAYERS = [1, 1, 2, 3]


def shallow_resnet50(**kwargs):
    from segedu.backbones.resnet import ResNet

    return ResNet(SHALLOW_RESNET_LAYERS, **kwargs)


@pytest.fixture
def shallow_resnets(monkeypatch):
    """Every model built in the test gets :func:`shallow_resnet50` where it asks for ResNet-50
    (by name, as PSPNet, RefineNet and the DeepLabs do, or directly, as ``fcn_resnet50``).

    For the checks that trace every layer (ONNX export, ``torch.compile``): their cost grows
    with depth, and 16 bottlenecks repeat the same operators; 7 exercise them all."""
    import importlib

    from segedu.backbones import resnet

    monkeypatch.setitem(resnet.RESNETS, "resnet50", shallow_resnet50)
    monkeypatch.setattr(importlib.import_module("segedu.fcn"), "resnet50", shallow_resnet50)


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

"""Every lesson notebook runs top to bottom on a CPU with no network, and its marked outputs
(`# NBVAL_CHECK_OUTPUT`) are reproduced (nbval, lax mode), as the design asks.

The suite runs them with ``SEGEDU_PROFILE=ci``: the CPU profile shrunk to a smoke test (64
training images, one epoch), so that seven notebooks fit the suite's time budget. Only the
deterministic cells are compared, and those do not depend on how long a model trained; the
outputs a learner reads are stored from the full CPU profile (re-run a notebook with
``SEGEDU_PROFILE=cpu jupyter nbconvert --execute --inplace`` to refresh them)."""

import os
from pathlib import Path

import pytest
from conftest import run_nbval

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_is_a_lesson_notebook_per_written_chapter():
    names = {p.name for p in LESSONS}
    assert {"00_introduction.ipynb", "01_fcn.ipynb", "02_segnet.ipynb", "03_unet.ipynb",
            "04_pspnet.ipynb", "05_deeplab.ipynb", "06_refinenet.ipynb"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("notebook", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_notebook_passes_nbval_lax_on_cpu(notebook, tmp_path):
    env = {**os.environ, "SEGEDU_DEVICE": "cpu", "SEGEDU_PROFILE": "ci", "MPLBACKEND": "Agg"}
    result = run_nbval(notebook, "--nbval-lax", "--nbval-cell-timeout", "300",
                       "--rootdir", str(tmp_path), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]

"""Two CPU processes under torchrun (gloo) train to the same weights and metrics as one process
on the same data: the Trainer's distributed path is the single-process path plus gradient
averaging, a sharded sampler and a summed confusion matrix.

Tolerance: weights within 1e-5 (absolute and relative). DDP averages the two processes'
gradients (a sum in another order than one process's batch mean), so the last bits differ;
after 8 SGD steps the difference is far below 1e-5. Metrics from the summed confusion matrix are
equal (the argmax does not flip at this distance).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent


def test_torchrun_two_processes_equal_one_process(tmp_path):
    sys.path.insert(0, str(HERE))
    try:
        import distributed_worker
    finally:
        sys.path.remove(str(HERE))
    single = distributed_worker.run(tmp_path / "single")

    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    env.pop("WORLD_SIZE", None)
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(HERE / "distributed_worker.py"), str(tmp_path / "ddp")],
        env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    ddp = torch.load(tmp_path / "ddp" / "result_world2.pt", weights_only=False)

    assert ddp["world"] == 2
    for key, value in single["state"].items():
        torch.testing.assert_close(ddp["state"][key], value, atol=1e-5, rtol=1e-5, msg=key)
    assert ddp["metrics"]["iou"] == pytest.approx(single["metrics"]["iou"], nan_ok=True)
    assert ddp["losses"] == pytest.approx(single["losses"], rel=1e-5)
    # Checkpoints and history come from rank 0 only.
    assert (tmp_path / "ddp" / "rank0" / "last.pt").exists()
    assert not (tmp_path / "ddp" / "rank1").exists()

"""What every benchmark script shares: writing its results where the repository keeps them.

Imported as ``from _common import write_results`` (a script's own folder is first on
``sys.path`` when it runs as ``python benchmarks/<name>.py``). Timing itself is the library's:
:func:`segedu.deploy.measure_latency` and :func:`segedu.deploy.compare_latency`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from segedu.deploy import machine_info


def write_results(results: dict, path: str | os.PathLike, *, indent: int = 2) -> Path:
    """Write ``results`` as JSON to ``path`` and say so.

    Records the machine as it is at the end, ``results["machine_at_end"]``
    (:func:`segedu.deploy.machine_info`: CPU, cores, load averages, threads, versions), next to
    the ``machine_at_start`` a script records before measuring, so a number is never kept
    without the load it was measured at. Creates the folder, and replaces the file only once
    it is complete (a run stopped half-way leaves the previous results intact).
    """
    results["machine_at_end"] = machine_info()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(results, indent=indent) + "\n")
    os.replace(partial, path)
    print(f"wrote {path}")
    return path

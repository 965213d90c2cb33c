"""How long the course takes to run: each lesson notebook top to bottom under a profile.

    python benchmarks/course_runtime.py [--profile cpu|ci|gpu] [--notebooks PATH ...]
        -> benchmarks/results/course_runtime_<profile>.json

Each notebook runs in a fresh kernel (nbclient, as ``jupyter nbconvert --execute`` does) from
its own folder, in memory: the stored outputs are never touched. Reported per
notebook: the wall time with and without the kernel's start, its three slowest cells, and the
load average before and after (a number measured beside another job is not the notebook's).
The test suite's own time is in tests/README.md ("Time").
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import nbformat
from _common import write_results
from nbclient import NotebookClient

from segedu.deploy import machine_info

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def time_notebook(path: Path, profile: str, timeout: int = 1800) -> dict:
    """Run ``path`` under ``SEGEDU_PROFILE=profile`` in a fresh kernel; its timings."""
    nb = nbformat.read(path, as_version=4)  # executed in memory: the file is never written
    os.environ["SEGEDU_PROFILE"] = profile   # the kernel inherits it
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    load_before, start = os.getloadavg(), time.perf_counter()
    cells = []
    with client.setup_kernel():
        kernel_start = time.perf_counter() - start
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            t = time.perf_counter()
            client.execute_cell(cell, index)
            first = cell.source.splitlines()[0] if cell.source else ""
            cells.append({"cell": index, "seconds": time.perf_counter() - t,
                          "first_line": first[:80]})
    wall = time.perf_counter() - start
    cells.sort(key=lambda c: -c["seconds"])
    return {"notebook": path.name, "profile": profile, "wall_seconds": wall,
            "kernel_start_seconds": kernel_start, "cells_seconds": wall - kernel_start,
            "code_cells": len(cells), "slowest_cells": cells[:3],
            "loadavg_before": load_before, "loadavg_after": os.getloadavg()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu", choices=["cpu", "ci", "gpu"])
    parser.add_argument("--notebooks", type=Path, nargs="+",
                        default=sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    command = "python benchmarks/course_runtime.py " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    results = {"command": command, "machine_at_start": machine_info(), "notebooks": []}
    for path in args.notebooks:
        row = time_notebook(path.resolve(), args.profile)
        results["notebooks"].append(row)
        slowest = row["slowest_cells"][0] if row["slowest_cells"] else {"cell": "-", "seconds": 0}
        print(f"{row['notebook']:<28} {row['wall_seconds']:7.1f} s  (kernel start "
              f"{row['kernel_start_seconds']:.1f} s; slowest cell {slowest['cell']}: "
              f"{slowest['seconds']:.1f} s; load {row['loadavg_before'][0]:.2f} -> "
              f"{row['loadavg_after'][0]:.2f})", flush=True)
    total = sum(r["wall_seconds"] for r in results["notebooks"])
    results["total_wall_seconds"] = total
    print(f"{'total':<28} {total:7.1f} s")
    write_results(results, args.out / f"course_runtime_{args.profile}.json")


if __name__ == "__main__":
    main()

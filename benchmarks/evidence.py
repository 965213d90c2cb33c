"""Evidence a learner can trust: the per-pixel baselines against the chapters' networks on the
shape task (ShapeScenes: colour and texture carry no class), equal budgets, several seeds.

    python benchmarks/evidence.py [--models fcn8s unet] [--seeds 3] [--iterations 768] [--tag T]
        -> benchmarks/results/evidence_<task>[_<T>].json and .csv

Every model trains on the same 512 images, in the same order for a given seed, for the same
iterations of batch 8 with AdamW and poly decay (segedu.tools.experiment.Budget); the networks
are built as the CPU profile builds them (width x1/8, BatchNorm, random weights). The targets
(issue 13): colour-only at most 0.40 mIoU, the windowed baseline well below the chapter-1
network, the network ahead of both by at least 0.10. Results are written after every run, so
an interrupted measurement keeps what it finished. Run it with OMP_NUM_THREADS=1 (and
``--threads 1``) on a shared machine; the files record threads and load.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from segedu.data import get_task, list_tasks
from segedu.tools.experiment import (
    Budget,
    context,
    describe,
    format_table,
    run_comparison,
    summarize,
    write_results,
)

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="shapes", choices=list_tasks())
    parser.add_argument("--models", nargs="*", default=["fcn8s"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=Budget.iterations)
    parser.add_argument("--val-length", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tag", help="added to the file name (another budget, another run)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    task, budget = get_task(args.task), Budget(iterations=args.iterations)
    payload = context("python benchmarks/evidence.py " + shlex.join(sys.argv[1:]))
    payload.update(describe(task, budget, val_length=args.val_length))
    name = f"evidence_{task.name}" + (f"_{args.tag}" if args.tag else "")

    def store(runs: list[dict]) -> None:
        write_results(RESULTS, name, {**payload, "runs": runs})

    runs = run_comparison(task, args.models, range(args.seeds), budget,
                          val_length=args.val_length, on_run=store)
    print(format_table(summarize(runs)))
    print(f"wrote {RESULTS / name}.json and .csv")


if __name__ == "__main__":
    main()

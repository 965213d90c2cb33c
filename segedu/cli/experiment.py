"""``segedu experiment``: models against both per-pixel baselines on a diagnostic task, with
equal budgets, several seeds and stored results (:mod:`segedu.tools.experiment`).

The harness is imported when the command runs, not when the parser is built: its data sets
import torchvision, which would cost every other command of the CLI (``segedu grade`` among
them) seconds at start-up. So the options below name no task and no default budget; the
harness checks the task and fills in its :class:`~segedu.tools.experiment.Budget`."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "experiment", help="compare models with both per-pixel baselines on a diagnostic task "
                           "(equal budgets, seeds, stored results)")
    parser.add_argument("--task", default="shapes",
                        help="a diagnostic task of segedu.data.TASKS (default: shapes; an "
                             "unknown name lists them)")
    parser.add_argument("--models", nargs="*", default=[], metavar="MODEL",
                        help="zoo models to compare (a name ending in '+shapes' loads the "
                             "shipped shape-pretrained backbone); the colour-only and windowed "
                             "baselines are always added")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    parser.add_argument("--iterations", type=int,
                        help="training iterations per run, whole epochs (default: the "
                             "harness's Budget)")
    parser.add_argument("--batch-size", type=int, help="default: the harness's Budget")
    parser.add_argument("--lr", type=float, help="default: the harness's Budget")
    parser.add_argument("--train-length", type=int, help="training images (default: the task's)")
    parser.add_argument("--val-length", type=int, help="validation images (default: the task's)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", required=True, help="folder for <task>.json and <task>.csv")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run (4 iterations, 16 images, 1 seed): proves it runs, "
                             "says nothing about the models")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..tools import experiment as harness

    return harness.run_cli(args)

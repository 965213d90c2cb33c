"""``segedu experiment``: models against both per-pixel baselines on a diagnostic task, with
equal budgets, several seeds and stored results (:mod:`segedu.tools.experiment`)."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    # The harness's options name the diagnostic tasks, whose data sets import torchvision: it
    # is imported when the parser is built, which every other command of the CLI avoids.
    from ..tools import experiment as harness

    experiment = sub.add_parser(
        "experiment", help="compare models with both per-pixel baselines on a diagnostic task "
                           "(equal budgets, seeds, stored results)")
    harness.add_arguments(experiment)
    experiment.set_defaults(func=harness.run_cli)

"""The ``segedu`` command line.

    segedu demo                      train FCN-32s and FCN-8s on the synthetic set, report, plot
    segedu models                    list the model zoo
    segedu train --model NAME ...    train a zoo model (chapter 7's Trainer; torchrun for many
                                     GPUs); checkpoints, history.csv and history.png in --out
    segedu eval --checkpoint FILE    evaluate a checkpoint (--multiscale, --window)
    segedu export --model NAME       export to ONNX (dynamic batch; --dynamic: also H and W),
                                     --int8 --calibrate N: quantized with ONNX Runtime
                                     (--activations int8|uint8: S8S8, the default, or U8S8)
    segedu bench --model NAME        latency of eager PyTorch, ONNX Runtime FP32 and INT8, FLOPs
    segedu assign [--check]          generate exercises/ from solutions/ (or check it is current);
                                     --bundle DIR also writes the instructor bundle
    segedu check NOTEBOOK            run a notebook's public exercise checks (for students)
    segedu grade SUBMISSION [...]    grade notebooks or folders of them against all tests;
                                     print "score: X / Y" or one row per student, and write
                                     a gradebook (--csv, --json, --markdown); --bundle DIR
                                     grades with the bundle's secret seed and private tests
    segedu experiment --task T ...   models against the colour-only and windowed baselines on
                                     a diagnostic task: equal budgets, seeds, JSON/CSV results
"""

from __future__ import annotations

import argparse
import sys

from . import demo, deployment, experiment, grading, training

__all__ = ["main", "build_parser"]

# One module per command group; each adds its subcommands and names the function that runs
# them (``set_defaults(func=...)``). The order here is the order of ``segedu --help``.
_COMMAND_GROUPS = (demo.add_parser, training.add_parsers, deployment.add_parsers,
                   grading.add_parsers, experiment.add_parsers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segedu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _COMMAND_GROUPS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:  # bad input: say what was wrong, no traceback
        print(f"segedu {args.command}: error: {err}", file=sys.stderr)
        return 2


"""The grader's child process: run a student's notebook and record what its functions return.

Usage::

    python -m segedu.grading.runner NOTEBOOK RESULT_PATH [--public-only] [--expect IDS]
        [--exercises-file FILE.py ...] [--case-timeout SECONDS] [--memory-mb MB]

The child only *computes*; the parent (:mod:`segedu.grading.grader`) judges. The child

1. executes the notebook's setup and answer cells (see :mod:`segedu.grading.notebook`) in
   order, in one fresh namespace, with the students' printed output discarded; a cell that
   raises is recorded and the next cell runs;
2. for every exercise (the ids passed with ``--expect``, else those of the answer cells)
   and every case, calls :func:`segedu.grading.exercise.compute` on the student's function and
   records the plain-data value, or the exception (type and message, 300 characters at
   most), or that the function is not defined;
3. saves, with :func:`torch.save`, after every exercise and once more at the end::

       {"format": 1, "complete": bool, "notebook_error": str | None,
        "cell_errors": [{"cell": int, "kind": str, "exercise": str, "error": str}],
        "results": {exercise_id: {case_name: {"ok_run": bool, "value": data | None,
                                              "error": str | None}}}}

   Every value is plain data the parent can read with ``torch.load(weights_only=True)``.
   Before each case, ``RESULT_PATH.current`` holds ``[exercise_id, case_name]`` as JSON, so
   the parent can tell which case was running when the process crashed or timed out.

Nothing the child writes can award points: the parent recomputes the expected values
itself and compares.
"""

from __future__ import annotations

import argparse
import builtins
import io
import json
import os
import re
import runpy
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .exercise import compute, get_exercise
from .notebook import graded_cells, load_notebook

FORMAT = 1
MAX_ERROR_CHARS = 300

_save = torch.save  # bound now: a submission that replaces torch.save harms only itself
_load = torch.load


class _CaseTimeout(BaseException):
    """Raised by the alarm when one case runs too long (a BaseException, so that a
    student's ``except Exception`` does not swallow it)."""


class _Sink(io.TextIOBase):
    """A text stream that discards everything written to it."""

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        return len(s)


def describe_error(error: BaseException) -> str:
    """``"TypeError: message"``, at most :data:`MAX_ERROR_CHARS` characters."""
    if isinstance(error, _CaseTimeout):
        text = str(error)
    elif isinstance(error, SystemExit):
        text = f"SystemExit({error.code!r}) (sys.exit was called)"
    else:
        try:
            message = str(error)
        except Exception:  # a hostile __str__
            message = "<message could not be read>"
        text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def _neutralise_magics(source: str) -> str:
    """Replace IPython magics and shell escapes (``%pip``, ``!ls``, ``%%time``) by ``pass``."""
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            line = line[: len(line) - len(stripped)] + "pass"
        lines.append(line)
    return "\n".join(lines)


def _quiet(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with sys.stdout/sys.stderr discarded (restored afterwards)."""
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = _Sink()
    try:
        return fn()
    finally:
        sys.stdout, sys.stderr = saved


def _with_alarm(fn: Callable[[], Any], seconds: float | None) -> Any:
    if not seconds or not hasattr(signal, "setitimer"):
        return fn()

    def on_alarm(signum, frame):
        raise _CaseTimeout(f"timed out after {seconds:g} s (an endless loop?)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _check_serialisable(value: Any) -> None:
    buffer = io.BytesIO()
    _save(value, buffer)
    buffer.seek(0)
    _load(buffer, weights_only=True)


def _limit_resources(memory_mb: int | None, file_mb: int = 256) -> None:
    """Allow the process ``memory_mb`` more address space than it uses now, and files of
    ``file_mb`` at most (Linux; elsewhere nothing is limited)."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb << 20, file_mb << 20))
        if memory_mb:
            status = Path("/proc/self/status").read_text()
            match = re.search(r"^VmSize:\s+(\d+) kB", status, re.M)
            if match is not None:
                limit = int(match.group(1)) * 1024 + (memory_mb << 20)
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, OSError, ValueError):
        pass


class Runner:
    def __init__(self, notebook: str, result_path: str, *, public_only: bool,
                 expect: list[str], case_timeout: float | None) -> None:
        self.notebook = notebook
        self.result_path = Path(result_path)
        self.public_only = public_only
        self.expect = expect
        self.case_timeout = case_timeout
        self.data: dict[str, Any] = {"format": FORMAT, "complete": False,
                                     "notebook_error": None, "cell_errors": [], "results": {}}

    def save(self) -> None:
        tmp = self.result_path.with_name(self.result_path.name + ".tmp")
        with open(tmp, "wb") as f:
            _save(self.data, f)
        os.replace(tmp, self.result_path)

    def mark_current(self, exercise_id: str, case_name: str) -> None:
        """Note which case is running, so the parent can say which one crashed or hung."""
        path = self.result_path.with_name(self.result_path.name + ".current")
        path.write_text(json.dumps([exercise_id, case_name]), encoding="utf-8")

    def run(self) -> None:
        try:
            nb = load_notebook(self.notebook)
            cells = graded_cells(nb)
        except Exception as error:
            self.data["notebook_error"] = describe_error(error)
            self.data["complete"] = True
            self.save()
            return
        namespace: dict[str, Any] = {
            "__name__": "__main__",
            "__builtins__": builtins,
            "display": lambda *args, **kwargs: None,
        }
        torch.manual_seed(0)
        for cell in cells:
            try:
                code = compile(_neutralise_magics(cell.source), f"<cell {cell.index}>", "exec")
                _quiet(lambda code=code: exec(code, namespace))
            except BaseException as error:
                self.data["cell_errors"].append({
                    "cell": cell.index, "kind": cell.kind,
                    "exercise": cell.exercise_id or "", "error": describe_error(error),
                })
        ids = list(self.expect) or list(dict.fromkeys(c.exercise_id for c in cells
                                                      if c.exercise_id))
        answered = {c.exercise_id for c in cells if c.exercise_id}
        for exercise_id in ids:
            try:
                exercise = get_exercise(exercise_id)
            except ValueError:
                continue
            self.data["results"][exercise_id] = self.run_exercise(
                exercise, namespace, exercise_id in answered)
            self.save()
        self.data["complete"] = True
        self.save()

    def _missing(self, exercise, answered: bool) -> str:
        message = f"function `{exercise.function}` not defined"
        own = [e["error"] for e in self.data["cell_errors"] if e["exercise"] == exercise.id]
        setup = [e["error"] for e in self.data["cell_errors"] if e["kind"] == "setup"]
        if own:
            return f"{message}: its answer cell raised {own[0]}"
        if setup:
            return f"{message}; a setup cell raised {setup[0]}"
        if not answered:
            return (f"{message}: the notebook has no answer cell for {exercise.id} "
                    "(was the cell deleted, or its metadata lost?)")
        return message

    def run_exercise(self, exercise, namespace: dict, answered: bool) -> dict:
        results = {}
        cases = exercise.public_cases() if self.public_only else exercise.cases
        fn = namespace.get(exercise.function)
        missing = None
        if fn is None:
            missing = self._missing(exercise, answered)
        elif not callable(fn):
            missing = f"`{exercise.function}` is a {type(fn).__name__}, not a function"
        for case in cases:
            if missing is not None:
                results[case.name] = {"ok_run": False, "value": None, "error": missing}
                continue
            self.mark_current(exercise.id, case.name)
            try:
                value = _quiet(lambda case=case: _with_alarm(
                    lambda: compute(exercise, fn, case), self.case_timeout))
                _check_serialisable(value)
                results[case.name] = {"ok_run": True, "value": value, "error": None}
            except BaseException as error:
                results[case.name] = {"ok_run": False, "value": None,
                                      "error": describe_error(error)}
        return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segedu.grading.runner",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook")
    parser.add_argument("result_path")
    parser.add_argument("--public-only", action="store_true",
                        help="run public cases only (local checks)")
    parser.add_argument("--expect", default="",
                        help="comma-separated exercise ids to compute "
                             "(default: the answer cells' ids)")
    parser.add_argument("--exercises-file", action="append", default=[],
                        help="a Python file that registers more exercises (repeatable)")
    parser.add_argument("--case-timeout", type=float, default=None,
                        help="seconds one case may run")
    parser.add_argument("--memory-mb", type=int, default=None,
                        help="extra address space the student's code may use, in MiB")
    args = parser.parse_args(argv)
    for path in args.exercises_file:
        runpy.run_path(path)
    _limit_resources(args.memory_mb)
    runner = Runner(args.notebook, args.result_path, public_only=args.public_only,
                    expect=[i for i in args.expect.split(",") if i],
                    case_timeout=args.case_timeout)
    runner.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

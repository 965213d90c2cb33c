"""The in-notebook check: ``segedu.check("ch01.bilinear_kernel", bilinear_kernel)``.

Feedback, not grading: it runs the *public* cases of one exercise on the student's function in
the student's own process, compares with the reference computed there too, and prints a line
per case. Nothing is scored, so nothing needs protecting from the student's code; the grader
(:mod:`~segedu.grading.engine.judge`) is what keeps the two apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .exercise import compare, compute, reference_value
from .hints import record_attempt
from .registry import get_exercise

__all__ = ["CheckResult", "check", "check_result"]


@dataclass
class CheckResult:
    """What :func:`check` found; true when every public case passed."""

    exercise_id: str
    passed: int
    total: int

    def __bool__(self) -> bool:
        return self.passed == self.total


def check(exercise_id: str, fn: Callable) -> None:
    """Run the public cases of ``exercise_id`` on ``fn`` here and print a line per case.

    ``✓ <case>`` for a pass, ``✗ <case>: <what differs>`` for a failure (every difference
    the case finds, never cut short), a hint if anything failed — the level rises with each
    failed attempt (:mod:`~segedu.grading.engine.hints`; ``SEGEDU_HINTS`` caps it) — and
    ``<id>: k/n cases passed``. Exceptions raised by ``fn`` (such as the
    stub's ``NotImplementedError``) become ✗ lines. This is feedback, not grading: hidden
    cases are not run and nothing is scored. Returns None, so a notebook cell shows only the
    printed lines; use :func:`check_result` to get the outcome as a value.
    """
    check_result(exercise_id, fn, verbose=True)


def check_result(exercise_id: str, fn: Callable, *, verbose: bool = False) -> CheckResult:
    """Like :func:`check`, but silent by default and returning a :class:`CheckResult`."""
    exercise = get_exercise(exercise_id)
    lines = []
    passed = 0
    stubbed = 0  # cases that met the stub's NotImplementedError: not an attempt yet
    cases = exercise.public_cases()
    for case in cases:
        start = time.perf_counter()
        try:
            got = compute(exercise, fn, case)
        except NotImplementedError:
            ok, message = False, "not implemented yet (the function raises NotImplementedError)"
            stubbed += 1
        except Exception as error:
            ok, message = False, f"raised {type(error).__name__}: {error}"
        else:
            elapsed = time.perf_counter() - start
            ok, message = compare(exercise, got, reference_value(exercise, case))
            limit = exercise.time_limit_s
            if ok and limit is not None and elapsed > limit:
                ok, message = False, (f"took {elapsed:.1f} s; the limit is {limit:g} s "
                                      "(the grader stops a case that runs too long)")
        passed += ok
        lines.append(f"✓ {case.name}" if ok else f"✗ {case.name}: {_single_line(message)}")
    if verbose and stubbed < len(cases):  # an attempt the student sees: count it
        lines += record_attempt(exercise.id, passed == len(cases))
    lines.append(f"{exercise.id}: {passed}/{len(cases)} cases passed")
    if verbose:
        print("\n".join(lines))
    return CheckResult(exercise.id, passed, len(cases))


def _single_line(text: str) -> str:
    """``text`` on one line, whole (the student's own process: nothing to forge)."""
    return " ".join(str(text).split())

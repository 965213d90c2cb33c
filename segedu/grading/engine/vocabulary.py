"""What a student may read about a graded notebook: a fixed vocabulary.

A submission that takes its process over can write anything into what the child reports: an
exception's message, a flag, a file name. Shown to students (Gradescope's ``results.json``, the
``message`` of each case), such text could carry a classmate's answers, a fake "score: 100 /
100" or a link. So what students read is drawn from the messages below, filled only with what
the grader itself knows (the exercise's id and function name, the case time limit) or has
checked against a fixed list (the name of a built-in exception, :data:`BUILTIN_EXCEPTIONS`),
plus the messages the grader's own comparison writes in the parent
(:func:`~segedu.grading.engine.exercise.compare`). The child's own words go to the instructor
only (a case's ``detail``, the gradebook's ``cell_errors``, the flags), cleaned of control
characters.

The child names *why* a case failed with one of :data:`REASONS` (a code, not text); a forged
code can only pick another message of this list.
"""

from __future__ import annotations

import builtins

__all__ = ["BUILTIN_EXCEPTIONS", "REASONS", "exception_name", "case_message",
           "cell_message", "NOTEBOOK_UNREADABLE"]

#: The exception names a student may be shown: Python's built-in exception classes.
BUILTIN_EXCEPTIONS = frozenset(
    name for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException))

#: Why a case has no value, as the child reports it; ``{function}``, ``{exercise}``,
#: ``{exception}`` and ``{seconds}`` are filled in by the grader.
REASONS = {
    "raised": "`{function}` raised {exception}",
    "timeout": "timed out after {seconds} (an endless loop?)",
    "memory": "out of memory (the grader's memory limit was reached)",
    "exit": "sys.exit was called while this case ran (SystemExit)",
    "missing": "function `{function}` not defined",
    "missing_cell": "function `{function}` not defined: its answer cell raised {exception}",
    "missing_setup": "function `{function}` not defined: a setup cell raised {exception}",
    "missing_no_cell": ("function `{function}` not defined: the notebook has no answer cell "
                        "for {exercise} (was the cell deleted, or its metadata lost?)"),
    "not_callable": "`{function}` is not a function",
    "reference": ("the reference implementation ran in this case: only the submission's own "
                  "code earns points"),
    "monitor_removed": ("the grader's call monitor (sys.settrace) was removed while this "
                        "case ran"),
    "too_large": "the returned value is too large or too deeply nested to grade",
    "malformed": "failed (the grader could not read this case's result)",
    "failed": "failed",
}

#: Reasons after which the student's own exception message would help: a public case's message
#: tells them where to read it (their own notebook, where the message is theirs to see).
_SEE_CHECK = {"raised", "missing_cell", "missing_setup"}

#: What a student is told about a notebook the grader could not read.
NOTEBOOK_UNREADABLE = "the notebook could not be read (is it a valid .ipynb file?)"


def exception_name(name: object) -> str | None:
    """``name`` if it names a built-in exception (``"ValueError"``), else None."""
    return name if isinstance(name, str) and name in BUILTIN_EXCEPTIONS else None


def case_message(reason: object, *, exercise: str, function: str, hidden: bool,
                 exception: object = None, case_timeout: float | None = None) -> str:
    """The student's message for a case that failed for ``reason`` (one of :data:`REASONS`;
    anything else reads as ``"failed"``)."""
    if not isinstance(reason, str) or reason not in REASONS:
        reason = "failed"
    template = REASONS[reason]
    name = exception_name(exception)
    seconds = f"{case_timeout:g} s" if case_timeout else "the case time limit"
    text = template.format(function=function, exercise=exercise, seconds=seconds,
                           exception=name or "an exception")
    if reason in _SEE_CHECK and not hidden:
        text += (f" (its message is in your instructor's report; segedu.check"
                 f"(\"{exercise}\", {function}) in your notebook shows it)")
    return text


def cell_message(cell: object, kind: object, exception: object) -> str:
    """The student's line for a notebook cell that raised."""
    number = cell if isinstance(cell, int) and not isinstance(cell, bool) else "?"
    what = kind if kind in ("setup", "answer") else "?"
    return f"cell {number} ({what}) raised {exception_name(exception) or 'an exception'}"

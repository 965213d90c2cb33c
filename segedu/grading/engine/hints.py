"""Hints that teach in steps: ``segedu.check`` reveals them one failed attempt at a time.

Every exercise has up to three levels (:attr:`Exercise.hint` is level 1, then
:attr:`Exercise.hints`):

1. **the concept** — what idea of the paper the function computes; never the formula or code;
2. **which quantity is wrong** — where answers usually go wrong;
3. **the worked example** — numbers to check an answer against by hand.

:func:`~segedu.grading.engine.check.check` shows level 1 after the first failed attempt,
level 2 after the second, level 3 after the third (in this Python process: a notebook's
kernel). :func:`hint` shows the next level not yet seen, on demand.

The instructor can cap the levels for graded work with the environment variable
``SEGEDU_HINTS`` where the students' notebooks run (a JupyterHub profile, an exam image):
``SEGEDU_HINTS=0`` (or ``off``) shows no hint at all, ``SEGEDU_HINTS=1`` only the concept,
unset shows every level. The grader's reports show level 1 at most, whatever the setting.
"""

from __future__ import annotations

import os
import threading

from .registry import get_exercise

__all__ = ["HINTS_ENV", "hint", "hint_levels", "max_hint_level", "record_attempt",
           "reset_hints", "revealed_level"]

#: The environment variable that caps the hint levels (0/off: none).
HINTS_ENV = "SEGEDU_HINTS"

_lock = threading.Lock()
_failed: dict[str, int] = {}     # failed check attempts per exercise, in this process
_revealed: dict[str, int] = {}   # the highest level shown per exercise


def hint_levels(exercise_id: str) -> list[str]:
    """The exercise's hint levels, level 1 first (empty levels dropped)."""
    exercise = get_exercise(exercise_id)
    return [h.strip() for h in (exercise.hint, *exercise.hints) if h and h.strip()]


def max_hint_level() -> int:
    """How many levels the environment allows (``SEGEDU_HINTS``); a large number if unset."""
    value = os.environ.get(HINTS_ENV, "").strip().lower()
    if value == "":
        return 99
    if value in ("0", "off", "no", "false", "none"):
        return 0
    try:
        return max(0, int(value))
    except ValueError:
        return 99


def revealed_level(exercise_id: str) -> int:
    """The highest level shown so far for ``exercise_id`` (0: none)."""
    with _lock:
        return _revealed.get(exercise_id, 0)


def _reveal(exercise_id: str, level: int) -> list[str]:
    """Mark levels up to ``level`` as seen; return the lines to print for that level."""
    levels = hint_levels(exercise_id)
    allowed = min(len(levels), max_hint_level())
    if allowed == 0:
        return []
    level = max(1, min(level, allowed))
    with _lock:
        _revealed[exercise_id] = max(_revealed.get(exercise_id, 0), level)
    more = ""
    if level < allowed:
        more = f" (segedu.hint({exercise_id!r}) for level {level + 1})"
    return [f"hint {level}/{allowed}: {levels[level - 1]}{more}"]


def record_attempt(exercise_id: str, passed: bool) -> list[str]:
    """Count a check of ``exercise_id``; after a failed one, the hint lines to print (the
    level rises with every failed attempt, never above what the environment allows)."""
    if passed:
        return []
    with _lock:
        _failed[exercise_id] = _failed.get(exercise_id, 0) + 1
        attempts = _failed[exercise_id]
        seen = _revealed.get(exercise_id, 0)
    return _reveal(exercise_id, max(attempts, seen))


def hint(exercise_id: str) -> None:
    """Print the next hint level of ``exercise_id`` that has not been shown yet.

    ``segedu.hint("ch01.bilinear_kernel")``: the concept first, then which quantity usually
    goes wrong, then a worked example; after the last level it repeats the last one.
    """
    levels = hint_levels(exercise_id)
    allowed = min(len(levels), max_hint_level())
    if allowed == 0:
        print(f"{exercise_id}: hints are turned off for this work ({HINTS_ENV}=0)."
              if levels else f"{exercise_id}: this exercise has no hints.")
        return
    print("\n".join(_reveal(exercise_id, revealed_level(exercise_id) + 1)))


def reset_hints() -> None:
    """Forget the attempts and the levels shown (for tests)."""
    with _lock:
        _failed.clear()
        _revealed.clear()

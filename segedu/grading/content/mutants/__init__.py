"""Plausible wrong answers, kept beside each chapter's exercises: the measure of its cases.

``chNN.MUTANTS`` lists :class:`Mutant` s: an exercise id, what the mistake is, and a function
(or class) that makes it — off-by-one, wrong centre, swapped axes, missing or in-place ReLU,
wrong dtype, wrong padding, ``<=`` for ``<``, forgotten registration, wrong reduction... Every
mutant must lose points in the public or the hidden cases (``tests/test_mutants.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Mutant"]


@dataclass(frozen=True)
class Mutant:
    """A plausible wrong answer to exercise ``exercise_id``."""

    exercise_id: str
    mistake: str
    function: Callable

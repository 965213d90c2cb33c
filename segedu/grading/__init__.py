"""Exercises, local checks and the grader.

* :mod:`~segedu.grading.exercise` — :class:`Exercise`, :class:`Case`, the registry,
  :func:`compute` (runs in the student's process) and :func:`compare` (runs in the grader's).
* ``chNN`` modules — each chapter's exercises, registered on first use of the registry.
* :mod:`~segedu.grading.notebook` — notebook conventions, exercise-notebook generation
  (:func:`assign`).
* :mod:`~segedu.grading.runner` — the child process that runs a submission.
* :mod:`~segedu.grading.sandbox` — what the child refuses a submission (files, processes)
  and how it notices the reference implementation being called.
* :mod:`~segedu.grading.grader` — :func:`grade_notebook`, :func:`check_notebook` and the
  in-notebook :func:`check`.
* :mod:`~segedu.grading.gradebook` — :func:`grade_submissions` for a folder of submissions,
  and the CSV/JSON/Markdown :class:`Gradebook`.
"""

from .engine.exercise import (
    Case,
    Exercise,
    all_exercises,
    case_generator,
    compare,
    compute,
    exercises_for,
    get_exercise,
    input_seed,
    register,
    seeded_randn,
    set_input_seed,
    unregister,
)
from .engine.judge import (
    CaseResult,
    CheckResult,
    ExerciseResult,
    GradeReport,
    check,
    check_notebook,
    check_result,
    grade_notebook,
)
from .engine.notebook import assign, graded_cells, make_exercise_notebook
from .engine.reports import Gradebook, Submission, find_submissions, grade_submissions

__all__ = [
    "Case",
    "Exercise",
    "all_exercises",
    "compare",
    "compute",
    "exercises_for",
    "get_exercise",
    "register",
    "unregister",
    "case_generator",
    "seeded_randn",
    "set_input_seed",
    "input_seed",
    "CaseResult",
    "CheckResult",
    "ExerciseResult",
    "GradeReport",
    "check",
    "check_result",
    "check_notebook",
    "grade_notebook",
    "Gradebook",
    "Submission",
    "find_submissions",
    "grade_submissions",
    "assign",
    "graded_cells",
    "make_exercise_notebook",
]

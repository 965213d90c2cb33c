"""Exercises, local checks and the grader: the public names, in one place.

Two layers, the lower one first:

* :mod:`~segedu.grading.engine` — the machinery, which knows no chapter: exercises and how
  answers are compared (``exercise``), which exercises exist (``registry``), the notebook
  conventions (``notebook``), the in-notebook check (``check``) and its hint levels
  (``hints``), and grading: the
  parent/child protocol (``protocol``), starting the child (``launch``), the child itself
  (``child``, confined by ``confine``), the parent's judgement (``judge``), a batch
  (``batch``), the reports (``reports``) and the instructor bundle (``bundle``).
* :mod:`~segedu.grading.content` — what is graded: one module per chapter (``ch01`` ...)
  listing its exercises, and the case helpers they share (``cases``). The engine never
  imports it: the registry loads a chapter module by name when it is first asked for.
"""

from .engine.batch import find_submissions, grade_submissions
from .engine.check import CheckResult, check, check_result
from .engine.exercise import (
    Case,
    Exercise,
    case_generator,
    compare,
    compute,
    input_seed,
    seeded_randn,
    set_input_seed,
)
from .engine.hints import hint
from .engine.judge import check_notebook, grade_notebook
from .engine.notebook import assign, graded_cells, make_exercise_notebook
from .engine.registry import (
    ExerciseRegistry,
    all_exercises,
    exercises_for,
    get_exercise,
    register,
    run_registry,
    unregister,
)
from .engine.reports import CaseResult, ExerciseResult, Gradebook, GradeReport, Submission

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
    "ExerciseRegistry",
    "run_registry",
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
    "hint",
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

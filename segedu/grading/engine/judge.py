"""The grader's parent side: run a submission in a child process, then judge what it returned.

:func:`grade_notebook` takes three steps:

1. **run** (:func:`run_child`) — start ``python -m segedu.grading.engine.child`` on the
   notebook in a temporary folder, with a time limit (and a memory limit), and read back
   what it left (:mod:`~segedu.grading.engine.protocol`): the values the student's functions
   returned — plain data only, never objects —, the case it was running, what it refused;
2. **classify** (:func:`classify`) — say how the run ended (``ok``, ``timeout``, ``crashed``,
   ...) from a table of rules, and what a case without a result is told;
3. **judge** (:func:`judge_exercise`) — compute the reference values *here* and compare.

The submission's process never sees the comparison, so nothing it does there (patching
``assert_close``, printing a score, exiting early, writing a results file) can raise its
score. The child also confines the submission (:mod:`~segedu.grading.engine.confine`): it
cannot read the course's ``solutions/``, the instructor's test files or the other submissions
being graded, write outside its temporary working directory or start processes, and a case in
which the exercise's reference implementation ran earns nothing.

The exercises of a run come from its own registry (:func:`~.registry.run_registry`): the
package's chapters plus the instructor's test files, which nothing outside the run sees.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .exercise import Case, Exercise, compare, reference_value
from .launch import launch, protected_paths
from .notebook import chapter_of, exercise_ids, load_notebook
from .protocol import ChildFiles, ChildRequest, ChildResult
from .registry import run_registry
from .reports import CaseResult, ExerciseResult, GradeReport, format_points, one_line

__all__ = ["ChildRun", "Outcome", "run_child", "classify", "judge_case", "judge_exercise",
           "grade_notebook", "check_notebook"]


# --------------------------------------------------------------------------- run


@dataclass
class ChildRun:
    """What the parent knows after the child ended.

    Attributes:
        exit_code: None when the time limit killed it; negative: killed by that signal.
        log: the last lines of its output (student-controlled).
        timeout: the time limit it ran under, in seconds.
        result: what the result file held (None: no file, or ``unreadable``).
        unreadable: a result file was there but held no result.
        running: ``[exercise_id, case_name]`` of the last case started, if known.
        refusals: what the confinement refused.
        strays: files the submission left in the working directory.
    """

    exit_code: int | None
    log: str = ""
    timeout: float = 0.0
    result: ChildResult | None = None
    unreadable: bool = False
    running: Any = None
    refusals: list[str] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)

    @classmethod
    def unreadable_notebook(cls, error: str) -> ChildRun:
        """The run of a notebook the parent could not read: never started, and reported
        as the child reports a notebook it cannot read."""
        return cls(0, result=ChildResult(complete=True, notebook_error=error))

    def flags(self) -> list[str]:
        """The child's flags, then the refusals, then the files it wrote (each once)."""
        flags = [one_line(f) for f in self.result.flags] if self.result is not None else []
        flags += [one_line(f"refused: {line}") for line in self.refusals]
        if self.strays:
            flags.append(one_line("the submission wrote files in the grader's working "
                                  f"directory (ignored): {', '.join(self.strays)}"))
        return list(dict.fromkeys(flags))

    def cell_errors(self) -> list[str]:
        """A line for an unreadable notebook, then one per cell that raised."""
        if self.result is None:
            return []
        lines = []
        if self.result.notebook_error is not None:
            lines.append(one_line(f"the notebook could not be read: "
                                  f"{self.result.notebook_error}"))
        lines += [one_line(f"cell {e.get('cell')} ({e.get('kind')}) raised {e.get('error')}")
                  for e in self.result.cell_errors]
        return lines


def run_child(request: ChildRequest, timeout: float) -> ChildRun:
    """Run the child for ``request`` in a fresh temporary folder, for at most ``timeout``
    seconds, and read back what it left there."""
    with tempfile.TemporaryDirectory(prefix="segedu-grade-") as workdir:
        files = ChildFiles.in_folder(workdir)
        code, log = launch(request.command(files), files, timeout)
        try:
            result, unreadable = files.read(), False
        except ValueError:
            result, unreadable = None, True
        return ChildRun(code, log, timeout, result, unreadable, files.running(),
                        files.refusals(), files.strays())


# --------------------------------------------------------------------------- classify


class Outcome(NamedTuple):
    """How a run ended, and what a case left without a result is told."""

    status: str
    not_run: str  # for a case the child never started
    while_running: str  # for the case it was running when it stopped


class _Rule(NamedTuple):
    applies: Callable[[ChildRun, Sequence[str]], bool]
    status: str
    not_run: str
    while_running: str


_NOT_RUN = "not run ({status})"
_STOPPED_BEFORE = "not run: the process {status} before this case"
_STOPPED_IN = "the process {status} while running this case"
_FORGED = "no result for this case (the result file was incomplete: written by the submission?)"

#: How a run ended: the first rule that applies to the run (and the ids of the exercises it
#: had to compute) names it. ``{status}``, ``{code}``, ``{signal}`` and ``{timeout}`` are
#: filled in from the run.
OUTCOMES: tuple[_Rule, ...] = (
    _Rule(lambda run, ids: run.result is not None and run.result.notebook_error is not None,
          "unreadable notebook", _NOT_RUN, _NOT_RUN),
    _Rule(lambda run, ids: run.exit_code is None, "timeout",
          "not run: the time limit ({timeout} s) was reached",
          "the time limit ({timeout} s) was reached in this case"),
    _Rule(lambda run, ids: run.exit_code < 0, "crashed (killed by {signal})",
          _STOPPED_BEFORE, _STOPPED_IN),
    _Rule(lambda run, ids: run.exit_code != 0, "crashed (exit code {code})",
          _STOPPED_BEFORE, _STOPPED_IN),
    _Rule(lambda run, ids: run.unreadable, "unreadable result file", _NOT_RUN, _NOT_RUN),
    _Rule(lambda run, ids: run.result is None or not run.result.complete,
          "exited early (exit code 0)", _STOPPED_BEFORE, _STOPPED_IN),
    _Rule(lambda run, ids: not run.result.covers(ids),  # it says complete: forged
          "incomplete result file", _FORGED, _FORGED),
    _Rule(lambda run, ids: True, "ok", _NOT_RUN, _NOT_RUN),
)


def _signal_name(number: int) -> str:
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
    return f"{name}, out of memory?" if name == "SIGKILL" else name


def classify(run: ChildRun, exercise_ids: Sequence[str]) -> Outcome:
    """The :data:`OUTCOMES` rule that names how ``run`` ended, filled in."""
    rule = next(rule for rule in OUTCOMES if rule.applies(run, exercise_ids))
    code = run.exit_code
    fields = {"code": code, "timeout": format_points(run.timeout),
              "signal": _signal_name(-code) if code is not None and code < 0 else ""}
    fields["status"] = rule.status.format(**fields)
    return Outcome(fields["status"], rule.not_run.format(**fields),
                   rule.while_running.format(**fields))


# --------------------------------------------------------------------------- judge


def judge_case(exercise: Exercise, case: Case, record: Any, seed: int = 0) -> CaseResult:
    """Compare one case's record from the child with the reference."""
    def result(passed: bool, message: str) -> CaseResult:
        return CaseResult(case.name, case.points if passed else 0.0, case.points,
                          passed, message, case.hidden)

    if not isinstance(record, dict):
        return result(False, "not run")
    if not record.get("ok_run"):
        return result(False, one_line(record.get("error") or "failed"))
    expected = reference_value(exercise, case, seed)
    try:
        passed, message = compare(exercise, record.get("value"), expected, hidden=case.hidden)
    except Exception as error:  # malformed data from the child
        return result(False, one_line(f"could not compare the result: {error}"))
    return result(passed, one_line(message))


def judge_exercise(exercise: Exercise, run: ChildRun, outcome: Outcome, *,
                   public_only: bool = False, seed: int = 0) -> ExerciseResult:
    """Judge every case of ``exercise`` the run was to compute; a case without a record is
    told why (``outcome``)."""
    cases = []
    for case in exercise.cases:
        if public_only and case.hidden:
            continue
        record = run.result.record(exercise.id, case.name) if run.result is not None else None
        if record is None:
            running = outcome.status != "ok" and run.running == [exercise.id, case.name]
            record = {"ok_run": False,
                      "error": outcome.while_running if running else outcome.not_run}
        cases.append(judge_case(exercise, case, record, seed))
    return ExerciseResult(exercise.id, exercise.function, cases, exercise.hint)


# --------------------------------------------------------------------------- grade


def _chapter(path: Path, chapter: str | None) -> tuple[str, str | None]:
    """(chapter, why the notebook cannot be read or None) for the notebook at ``path``."""
    nb, error = None, None
    try:
        nb = load_notebook(path)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    chapter = chapter or chapter_of(path)
    if chapter is None and nb is not None:
        chapters = sorted({i.split(".", 1)[0] for i in exercise_ids(nb)})
        if len(chapters) == 1:
            chapter = chapters[0]
    if chapter is None:
        raise ValueError(
            f"cannot tell the chapter of {str(path)!r}: name it NN_name.ipynb (as in "
            "exercises/) or pass chapter='chNN'"
        )
    return chapter, error


def grade_notebook(
    path: str | os.PathLike,
    *,
    timeout: float = 120,
    public_only: bool = False,
    case_timeout: float | None = 10,
    memory_limit_mb: int | None = 4096,
    chapter: str | None = None,
    extra_exercises: Sequence[str | os.PathLike] = (),
    protect: Sequence[str | os.PathLike] = (),
    seed: int = 0,
) -> GradeReport:
    """Grade the notebook at ``path`` in a separate process.

    Args:
        path: a filled-in exercise notebook ``NN_name.ipynb``.
        timeout: seconds the whole child process may run (starting Python and torch
            takes a few). On timeout the child is killed; cases it had finished still count.
        public_only: grade public cases only (what ``segedu check`` does).
        case_timeout: seconds one case may run before it fails, so an endless loop in one
            function costs only that function's points (POSIX only).
        memory_limit_mb: address space the student's code may allocate beyond what the
            child uses after importing torch, in MiB (Linux only; None for no limit). An
            allocation beyond it fails that case with the allocator's error.
        chapter: ``"chNN"``; by default taken from the file name ``NN_*.ipynb``.
        extra_exercises: Python files, or folders of them, that register more exercises
            (an instructor's private hidden cases) for this run only; ``register(...,
            replace=True)`` replaces a package exercise of the same id. The submission
            cannot open them.
        protect: more files and folders the submission may not open (the other
            submissions of a batch). The course's ``solutions/`` always is.
        seed: torch, ``random`` and NumPy are seeded with it before every case, in the
            child (the student's code) and here (the reference).

    Every exercise of the chapter is expected, whatever the notebook contains: deleting an
    answer cell scores 0 for it rather than lowering the total.
    """
    start = time.perf_counter()
    path = Path(path)
    registry = run_registry(extra_exercises)
    chapter, notebook_error = _chapter(path, chapter)
    exercises = registry.exercises_for(chapter)
    if not exercises:
        raise ValueError(f"no exercises are registered for chapter {chapter!r}")
    if notebook_error is None:
        request = ChildRequest(
            str(path.resolve()), expect=tuple(ex.id for ex in exercises),
            public_only=public_only, case_timeout=case_timeout, memory_mb=memory_limit_mb,
            exercise_files=registry.files, protect=tuple(protected_paths(protect)),
            seed=int(seed))
        run = run_child(request, timeout)
    else:
        run = ChildRun.unreadable_notebook(notebook_error)
    outcome = classify(run, [ex.id for ex in exercises])
    results = [judge_exercise(ex, run, outcome, public_only=public_only, seed=seed)
               for ex in exercises]
    return GradeReport(str(path), chapter, outcome.status, results, public_only,
                       run.cell_errors(), run.log, run.flags(), time.perf_counter() - start)


def check_notebook(path: str | os.PathLike, *, timeout: float = 120,
                   **kwargs: Any) -> GradeReport:
    """Check a notebook against the public cases only (``segedu check``); print
    ``report.format()`` to show it. Same keyword arguments as :func:`grade_notebook`."""
    return grade_notebook(path, timeout=timeout, public_only=True, **kwargs)

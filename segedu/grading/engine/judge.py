"""The grader's parent side: run a submission in a sandboxed child, then judge what it returned.

A :class:`Grader` prepares a grading run once, before any submission runs: the instructor's
test files are loaded into the run's registry, every case's inputs drawn (under its case
seed, derived from the grading seed) and encoded, the reference values computed, the stubbed
package built (:mod:`~segedu.grading.engine.stubs`), the isolation level chosen. Then
:meth:`Grader.grade` takes three steps per notebook:

1. **run** (:meth:`Grader.run`) — the notebook's bytes (read once, never through a link),
   the request and the inputs go into a fresh sandbox (:mod:`~segedu.grading.engine.launch`);
   what the child left comes back as size-capped regular files, validated
   (:mod:`~segedu.grading.engine.protocol`): the values the student's functions returned —
   plain data only, never objects —, the case it was running, what it refused;
2. **classify** (:func:`classify`) — say how the run ended (``ok``, ``timeout``, ``crashed``,
   ...) from a table of rules, and what a case without a result is told;
3. **judge** (:func:`judge_exercise`) — compare with the reference values computed *here*.

The submission's process never sees the comparison, the grading seed, the instructor's test
files or the reference implementations, so nothing it does (patching ``assert_close``,
printing a score, exiting early, writing a results file, taking its own process over) can
raise its score.
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from .exercise import (
    Case,
    Exercise,
    case_inputs,
    case_seed,
    compare,
    reference_facts,
    reference_value,
)
from .isolation import Isolation, detect_isolation, read_child_file
from .launch import launch, protected_paths
from .notebook import chapter_of, exercise_ids
from .protocol import (
    INPUTS,
    NOTEBOOK,
    REQUEST,
    ChildOutput,
    ChildRequest,
    ChildResult,
    encode_inputs,
)
from .registry import ExerciseRegistry, package_registry, run_registry
from .reports import CaseResult, ExerciseResult, GradeReport, format_points, one_line
from .stubs import reference_target, stubbed_package
from .vocabulary import NOTEBOOK_UNREADABLE, case_message, cell_message

__all__ = ["ChildRun", "Outcome", "Grader", "classify", "judge_case", "judge_exercise",
           "grade_notebook", "check_notebook", "read_submission", "MAX_NOTEBOOK_BYTES"]

#: The largest notebook graded (a notebook of code is a few hundred kB at most).
MAX_NOTEBOOK_BYTES = 20 << 20
#: The longest comparison message kept (the grader's own words; longer ones say what was cut).
MAX_MESSAGE = 2000
#: The longest instructor-only detail kept (the child's words: it sends 300 at most).
MAX_DETAIL = 1000


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

    @classmethod
    def from_output(cls, exit_code: int | None, log: str, timeout: float,
                    output: ChildOutput) -> ChildRun:
        try:
            result, unreadable = output.result(), False
        except ValueError:
            result, unreadable = None, True
        return cls(exit_code, log, timeout, result, unreadable, output.running(),
                   output.refusals(), output.strays())

    def flags(self) -> list[str]:
        """The child's flags, then the refusals, then the files it wrote (each once)."""
        flags = [one_line(f) for f in self.result.flags] if self.result is not None else []
        flags += [one_line(f"refused: {line}") for line in self.refusals]
        if self.strays:
            flags.append(one_line("the submission wrote files in the grader's working "
                                  f"directory (ignored): {', '.join(self.strays)}"))
        return list(dict.fromkeys(flags))

    def cell_errors(self) -> list[str]:
        """For the instructor: a line for an unreadable notebook, then one per cell that
        raised, with the child's own text."""
        if self.result is None:
            return []
        lines = []
        if self.result.notebook_error is not None:
            lines.append(one_line(f"the notebook could not be read: "
                                  f"{self.result.notebook_error}"))
        lines += [one_line(f"cell {e.get('cell')} ({e.get('kind')}) raised {e.get('error')}")
                  for e in self.result.cell_errors]
        return lines

    def student_cell_errors(self) -> list[str]:
        """The same lines in the grader's words only (:mod:`.vocabulary`): what students
        read."""
        if self.result is None:
            return []
        lines = [NOTEBOOK_UNREADABLE] if self.result.notebook_error is not None else []
        return lines + [cell_message(e.get("cell"), e.get("kind"), e.get("exception"))
                        for e in self.result.cell_errors]


def _tail(data: bytes, lines: int = 15, width: int = 200) -> str:
    text = data[-4096:].decode("utf-8", errors="replace")
    return "\n".join(line[:width] for line in text.splitlines()[-lines:])


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


def judge_case(exercise: Exercise, case: Case, record: Any, seed: int = 0, *,
               case_timeout: float | None = None) -> CaseResult:
    """Compare one case's record from the child with the reference.

    The student's ``message`` comes from the grader alone: its comparison, or the fixed
    message for the record's reason (:func:`~.vocabulary.case_message`); the child's own
    words go to ``detail``, for the instructor."""
    def result(passed: bool, message: str, detail: str = "") -> CaseResult:
        return CaseResult(case.name, case.points if passed else 0.0, case.points,
                          passed, message, case.hidden, detail)

    if not isinstance(record, dict):
        return result(False, "not run")
    if not record.get("ok_run"):
        message = case_message(record.get("reason"), exercise=exercise.id,
                               function=exercise.function, hidden=case.hidden,
                               exception=record.get("exception"), case_timeout=case_timeout)
        return result(False, message, one_line(record.get("error") or "", MAX_DETAIL))
    expected = reference_value(exercise, case, seed)
    try:
        passed, message = compare(exercise, record.get("value"), expected, hidden=case.hidden)
    except Exception as error:  # malformed data from the child
        return result(False, "could not compare the result (malformed data)",
                      one_line(f"{type(error).__name__}: {error}", MAX_DETAIL))
    return result(passed, one_line(message, MAX_MESSAGE))


def judge_exercise(exercise: Exercise, run: ChildRun, outcome: Outcome, *,
                   public_only: bool = False, seed: int = 0,
                   case_timeout: float | None = None) -> ExerciseResult:
    """Judge every case of ``exercise`` the run was to compute; a case without a record is
    told why (``outcome``)."""
    cases = []
    for case in exercise.cases:
        if public_only and case.hidden:
            continue
        record = run.result.record(exercise.id, case.name) if run.result is not None else None
        if record is None:
            running = outcome.status != "ok" and run.running == [exercise.id, case.name]
            cases.append(CaseResult(case.name, 0.0, case.points, False,
                                    outcome.while_running if running else outcome.not_run,
                                    case.hidden))
        else:
            cases.append(judge_case(exercise, case, record, seed, case_timeout=case_timeout))
    return ExerciseResult(exercise.id, exercise.function, cases, exercise.hint)


# --------------------------------------------------------------------------- grade


def read_submission(path: str | os.PathLike, max_bytes: int = MAX_NOTEBOOK_BYTES) -> bytes:
    """The notebook's bytes, read once: a symbolic link (as ``unzip`` restores them), a FIFO
    or a device, or a file above ``max_bytes``, is refused with ``ValueError``."""
    try:
        return read_child_file(path, max_bytes)
    except OSError as error:
        raise ValueError(f"refused {str(path)!r}: {error.strerror or error}") from None


def _parse_notebook(data: bytes) -> tuple[dict | None, str | None]:
    try:
        nb = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"ValueError: not a notebook (invalid JSON: {error})"
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        return None, "ValueError: not a notebook (no list of cells)"
    return nb, None


def _summary_ref(exercise: Exercise, case: Case) -> list[str] | None:
    """How the child finds the case's summary in its own package (it gets no test file)."""
    summary = case.summary or exercise.summary
    if summary is None:
        return None
    # the chapter's own exercises first; only then every chapter's (importing them all)
    def candidates():
        yield from package_registry.exercises_for(exercise.chapter)
        yield from package_registry.all().values()

    for known in candidates():
        if known.summary is summary:
            return ["exercise", known.id]
        for other in known.cases:
            if other.summary is summary:
                return ["case", known.id, other.name]
    where = reference_target(summary)
    if where is not None:
        return ["function", *where]
    raise ValueError(
        f"{exercise.id}, case {case.name!r}: its summary is defined in your test file, which "
        "the submission's process never receives; use a summary of the segedu package "
        "(segedu.grading.content.cases, or an exercise's own) or none")


class _ChapterPlan(NamedTuple):
    exercises: list[Exercise]
    request: bytes
    inputs: bytes
    package: Path  # the package the child imports, this chapter's references stubbed


class Grader:
    """Everything a grading run prepares once, before any submission runs: the instructor's
    test files loaded (read once; a submission cannot change them for the next one), every
    case's inputs drawn and encoded, the reference values computed, the stubbed package
    built, the isolation level chosen, and what the parent needs imported.

    Args:
        extra_exercises: the instructor's test files or folders (see :func:`grade_notebook`).
        seed: the grading seed (it never leaves this process).
        isolation: the isolation level (default: :func:`detect_isolation`, refusing to run
            without isolation unless ``allow_unisolated``).
        public_only, timeout, case_timeout, memory_limit_mb: as :func:`grade_notebook`.
        protect: paths the confinement refuses (levels below bubblewrap see the host).
    """

    def __init__(self, *, extra_exercises: Sequence[str | os.PathLike] = (), seed: int = 0,
                 isolation: Isolation | None = None, allow_unisolated: bool = False,
                 public_only: bool = False, timeout: float = 120,
                 case_timeout: float | None = 10, memory_limit_mb: int | None = 4096,
                 protect: Sequence[str | os.PathLike] = ()) -> None:
        self.registry: ExerciseRegistry = run_registry(extra_exercises)
        self.seed = int(seed)
        self.isolation = isolation or detect_isolation(allow_none=allow_unisolated)
        self.public_only = public_only
        self.timeout = timeout
        self.case_timeout = case_timeout
        self.memory_limit_mb = memory_limit_mb
        hidden = [*protect, *self.registry.files]
        self.protect = () if self.isolation.level == "bubblewrap" else tuple(
            protected_paths(hidden))
        self._plans: dict[str, _ChapterPlan] = {}
        self._lock = threading.Lock()
        _warm_up()

    def plan(self, chapter: str) -> _ChapterPlan:
        """The chapter's exercises, request and inputs (made once)."""
        with self._lock:
            if chapter not in self._plans:
                self._plans[chapter] = self._make_plan(chapter)
            return self._plans[chapter]

    def _make_plan(self, chapter: str) -> _ChapterPlan:
        exercises = self.registry.exercises_for(chapter)
        if not exercises:
            raise ValueError(f"no exercises are registered for chapter {chapter!r}")
        specs, inputs = [], {}
        for ex in exercises:
            cases = [c for c in ex.cases if not (self.public_only and c.hidden)]
            seeds = {c.name: case_seed(self.seed, ex.id, c.name) for c in cases}
            target = reference_target(ex.reference)
            specs.append({"id": ex.id, "function": ex.function,
                          "reference": ":".join(target) if target else None,
                          "cases": [{"name": c.name, "summary": _summary_ref(ex, c),
                                     "seed": seeds[c.name]} for c in cases]})
            inputs[ex.id] = {c.name: case_inputs(c, seeds[c.name]) for c in cases}
            for case in cases:  # computed now, so a broken reference stops the run here
                reference_value(ex, case, self.seed)
        request = ChildRequest(tuple(specs), public_only=self.public_only,
                               case_timeout=self.case_timeout, memory_mb=self.memory_limit_mb,
                               protect=self.protect, facts=reference_facts())
        try:
            encoded = encode_inputs(inputs)
        except TypeError as error:
            raise ValueError(f"chapter {chapter}: {error}") from None
        # Only this chapter's references are stubbed: a chapter-4 answer may use what chapter 1
        # taught (conv_output_size, inside resnet_feature_size); what it is graded on it must
        # write itself.
        package = stubbed_package(ex.reference for ex in exercises)
        return _ChapterPlan(exercises, request.to_bytes(), encoded, package)

    def run(self, plan: _ChapterPlan, notebook: bytes) -> ChildRun:
        """Run the child on ``notebook`` for the chapter of ``plan``."""
        done = launch({REQUEST: plan.request, INPUTS: plan.inputs, NOTEBOOK: notebook},
                      isolation=self.isolation, package=plan.package, timeout=self.timeout,
                      memory_mb=self.memory_limit_mb)
        log = _tail(done.stderr or done.stdout)
        return ChildRun.from_output(done.returncode, log, self.timeout,
                                    ChildOutput(done.files, done.rejected))

    def grade(self, path: str | os.PathLike, chapter: str | None = None) -> GradeReport:
        """Grade the notebook at ``path`` (see :func:`grade_notebook`)."""
        start = time.perf_counter()
        path = Path(path)
        data = read_submission(path)
        nb, notebook_error = _parse_notebook(data)
        chapter = chapter or chapter_of(path)
        if chapter is None and nb is not None:
            chapters = sorted({i.split(".", 1)[0] for i in exercise_ids(nb)})
            if len(chapters) == 1:
                chapter = chapters[0]
        if chapter is None:
            raise ValueError(
                f"cannot tell the chapter of {str(path)!r}: name it NN_name.ipynb (as in "
                "exercises/) or pass chapter='chNN'")
        plan = self.plan(chapter)
        run = (self.run(plan, data) if notebook_error is None
               else ChildRun.unreadable_notebook(notebook_error))
        outcome = classify(run, [ex.id for ex in plan.exercises])
        results = [judge_exercise(ex, run, outcome, public_only=self.public_only,
                                  seed=self.seed, case_timeout=self.case_timeout)
                   for ex in plan.exercises]
        return GradeReport(str(path), chapter, outcome.status, results, self.public_only,
                           run.cell_errors(), run.log, run.flags(), time.perf_counter() - start,
                           student_cell_errors=run.student_cell_errors())


def _warm_up() -> None:
    """Import now what reading a child's result needs (``torch.load`` imports parts of torch
    lazily): nothing is imported after a submission has run."""
    buffer = io.BytesIO()
    torch.save({"t": torch.zeros(2), "x": [1, 2.0, "s", None, True, (1,)]}, buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=True)


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
    isolation: Isolation | None = None,
    allow_unisolated: bool = False,
) -> GradeReport:
    """Grade the notebook at ``path`` in a sandboxed process.

    Args:
        path: a filled-in exercise notebook ``NN_name.ipynb`` (not a symbolic link).
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
            replace=True)`` replaces a package exercise of the same id. They are loaded
            here; the submission's process never receives them.
        protect: more paths the confinement refuses (where the isolation level shows the
            child the host's file system).
        seed: the grading seed; the child receives case seeds derived from it, never it.
        isolation, allow_unisolated: see :class:`Grader`.

    Every exercise of the chapter is expected, whatever the notebook contains: deleting an
    answer cell scores 0 for it rather than lowering the total. A batch should build one
    :class:`Grader` and call :meth:`Grader.grade` for each notebook.
    """
    grader = Grader(extra_exercises=extra_exercises, seed=seed, isolation=isolation,
                    allow_unisolated=allow_unisolated, public_only=public_only,
                    timeout=timeout, case_timeout=case_timeout,
                    memory_limit_mb=memory_limit_mb, protect=protect)
    return grader.grade(path, chapter)


def check_notebook(path: str | os.PathLike, *, timeout: float = 120,
                   **kwargs: Any) -> GradeReport:
    """Check a notebook against the public cases only (``segedu check``); print
    ``report.format()`` to show it. Same keyword arguments as :func:`grade_notebook`; a
    student checking their own notebook needs no isolation, so none is required."""
    kwargs.setdefault("allow_unisolated", True)
    return grade_notebook(path, timeout=timeout, public_only=True, **kwargs)

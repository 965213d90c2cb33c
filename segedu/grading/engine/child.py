"""The grader's child process: run a student's notebook and record what its functions return.

Usage: ``python -m segedu.grading.engine.child``, in a folder holding the files the parent
put there (:mod:`~segedu.grading.engine.protocol`): the request, the case inputs, the notebook.
It runs inside the sandbox (:mod:`~segedu.grading.engine.isolation`), importing a segedu whose
graded references are stubs (:mod:`~segedu.grading.engine.stubs`).

The child only *computes*; the parent (:mod:`~segedu.grading.engine.judge`) judges. The child

1. reads the request and the inputs, builds the exercises it is asked for from them (the
   summaries are the package's own; it never sees the instructor's test files or the
   grading seed), limits its memory, and confines itself
   (:class:`~segedu.grading.engine.confine.Confinement`, a second layer inside the
   sandbox: no reading the ``protect`` paths, no writing outside its folder, no processes);
2. executes the notebook's setup and answer cells (see :mod:`~segedu.grading.engine.notebook`) in
   order, in one fresh namespace, with the students' printed output discarded; a cell that
   raises is recorded and the next cell runs;
3. for every exercise of the request and every case, seeds ``torch``, ``random`` (and
   NumPy) and the draws of the case's summary with the case seed, calls
   :func:`~segedu.grading.engine.exercise.compute` on the student's function with the
   inputs the parent sent and records the
   plain-data value, or why it has none: a reason code of
   :data:`~segedu.grading.engine.vocabulary.REASONS` (the parent words what students read
   from it), the exception's type name, and its message for the instructor (300 characters
   at most). A case during which the exercise's reference implementation ran
   (:class:`~segedu.grading.engine.confine.ReferenceMonitor`) is recorded as failed;
4. saves its :class:`~segedu.grading.engine.protocol.ChildResult` after every exercise and
   once more at the end, and marks the case it is running, in the files of
   :class:`~segedu.grading.engine.protocol.ChildFiles`.

Nothing the child writes can award points: the parent recomputes the expected values
itself and compares. The flags are the child's own account and could be forged by a
submission that takes the process over; they explain a score, they never raise one.
"""

from __future__ import annotations

import builtins
import importlib
import io
import random
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import stubs
from .confine import Confinement, ReferenceMonitor, reference_code_keys, trusted_files
from .exercise import Case, Exercise, compute, set_input_seed, use_reference_facts
from .notebook import graded_cells, load_notebook
from .protocol import ChildFiles, ChildRequest, ChildResult
from .registry import package_registry

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
    """``"TypeError: message"``, at most :data:`MAX_ERROR_CHARS` characters (for the
    instructor: the message is the submission's own text)."""
    if isinstance(error, _CaseTimeout):
        text = str(error)
    elif isinstance(error, MemoryError):
        text = "MemoryError: out of memory (the grader's memory limit was reached)"
    elif isinstance(error, SystemExit):
        text = f"SystemExit({error.code!r}) (sys.exit was called)"
    else:
        try:
            message = str(error)
        except Exception:  # a hostile __str__
            message = "<message could not be read>"
        text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def _out_of_memory(error: BaseException) -> bool:
    """Python's MemoryError, or torch's allocator failing under the memory limit."""
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    try:
        return isinstance(error, RuntimeError) and "allocate memory" in str(error)
    except Exception:  # a hostile __str__
        return False


def failure(error: BaseException) -> dict[str, Any]:
    """A failed case's record: the reason code and the exception's type name, from which the
    parent words the student's message (:mod:`~segedu.grading.engine.vocabulary`), and the
    error's text for the instructor."""
    reason = ("timeout" if isinstance(error, _CaseTimeout) else
              "memory" if _out_of_memory(error) else
              "exit" if isinstance(error, SystemExit) else "raised")
    return {"ok_run": False, "value": None, "error": describe_error(error), "reason": reason,
            "exception": type(error).__name__}


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


def _seed(seed: int) -> None:
    """Seed every generator a student's code may draw from (before the cells, and again
    before each case, so that a case's result does not depend on the ones before it), and
    the grading seed that shifts every case's inputs (:func:`case_generator`)."""
    set_input_seed(seed)
    torch.manual_seed(seed)
    random.seed(seed)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(seed)


class Runner:
    """Runs one notebook for a :class:`ChildRequest`: :meth:`prepare` (before confinement),
    then :meth:`run`."""

    def __init__(self, request: ChildRequest, files: ChildFiles, notebook: Path,
                 exercises: list[Exercise], seeds: dict[tuple[str, str], int],
                 confinement: Confinement | None = None) -> None:
        self.request = request
        self.files = files
        self.notebook = notebook
        self.confinement = confinement
        self.monitor = ReferenceMonitor()
        self.cells: list = []
        self.exercises = exercises
        self.seeds = seeds  # (exercise id, case name) -> case seed
        self.result = ChildResult()

    def flag(self, message: str) -> None:
        if message not in self.result.flags:
            self.result.flags.append(message)

    def save(self) -> None:
        if self.confinement is not None:
            for message in self.confinement.blocked:
                self.flag(f"refused: {message}")
        self.files.save(self.result)

    def prepare(self) -> bool:
        """Read the notebook before any of the submission's code runs; False if it is
        unreadable."""
        try:
            self.cells = graded_cells(load_notebook(self.notebook))
        except Exception as error:
            self.result.notebook_error = describe_error(error)
            return False
        return True

    def run(self) -> None:
        if self.result.notebook_error is not None:
            self.result.complete = True
            self.save()
            return
        namespace: dict[str, Any] = {
            "__name__": "__main__",
            "__builtins__": builtins,
            "display": lambda *args, **kwargs: None,
        }
        _share(namespace)
        references = {ex.id: reference_code_keys(ex.reference) for ex in self.exercises}
        trusted = {ex.id: trusted_files(ex) for ex in self.exercises}
        all_keys = set().union(*references.values()) if references else set()
        _seed(0)  # the cells run under a fixed, public seed
        for cell in self.cells:
            hits: list[str] = []
            try:
                code = compile(_neutralise_magics(cell.source), f"<cell {cell.index}>", "exec")
                with self.monitor.watching(all_keys, hits):
                    _quiet(lambda code=code: exec(code, namespace))
            except BaseException as error:
                self.result.cell_errors.append({
                    "cell": cell.index, "kind": cell.kind,
                    "exercise": cell.exercise_id or "", "error": describe_error(error),
                    "exception": type(error).__name__,
                })
            for hit in hits:
                self.flag(f"cell {cell.index} removed the grader's call monitor (sys.settrace)"
                          if hit == ReferenceMonitor.REMOVED else
                          f"cell {cell.index} called the reference implementation {hit}")
        answered = {c.exercise_id for c in self.cells if c.exercise_id}
        for exercise in self.exercises:
            self.result.results[exercise.id] = self.run_exercise(
                exercise, namespace, exercise.id in answered, references[exercise.id],
                trusted[exercise.id])
            self.save()
        self.result.complete = True
        self.save()

    def _missing(self, exercise, answered: bool) -> dict[str, Any]:
        """The record of every case of an exercise whose function is not defined."""
        message = f"function `{exercise.function}` not defined"
        own = [e for e in self.result.cell_errors if e["exercise"] == exercise.id]
        setup = [e for e in self.result.cell_errors if e["kind"] == "setup"]
        if own:
            reason, error, cause = "missing_cell", f"{message}: its answer cell raised", own[0]
        elif setup:
            reason, error, cause = "missing_setup", f"{message}; a setup cell raised", setup[0]
        elif not answered:
            reason, cause = "missing_no_cell", None
            error = (f"{message}: the notebook has no answer cell for {exercise.id} "
                     "(was the cell deleted, or its metadata lost?)")
        else:
            reason, error, cause = "missing", message, None
        if cause is not None:
            error += f" {cause['error']}"
        return {"ok_run": False, "value": None, "error": error, "reason": reason,
                "exception": cause["exception"] if cause is not None else None}

    def run_exercise(self, exercise, namespace: dict, answered: bool,
                     reference_keys: set | None = None,
                     trusted: frozenset[str] = frozenset()) -> dict:
        results = {}
        cases = exercise.cases  # the request lists only the cases to run
        fn = namespace.get(exercise.function)
        missing = None
        if fn is None:
            missing = self._missing(exercise, answered)
        elif not callable(fn):
            missing = {"ok_run": False, "value": None, "reason": "not_callable",
                       "error": f"`{exercise.function}` is a {type(fn).__name__}, not a "
                                "function"}
        for case in cases:
            if missing is not None:
                results[case.name] = dict(missing)
                continue
            self.files.mark_current(exercise.id, case.name)
            _seed(self.seeds.get((exercise.id, case.name), 0))
            hits: list[str] = []

            def around(hits=hits):
                return self.monitor.watching(reference_keys or set(), hits, trusted)

            try:
                value = _quiet(lambda case=case, around=around: _with_alarm(
                    lambda: compute(exercise, fn, case, around=around),
                    self.request.case_timeout))
                _check_serialisable(value)
                results[case.name] = {"ok_run": True, "value": value, "error": None}
            except BaseException as error:
                results[case.name] = failure(error)
            if hits:
                results[case.name] = {"ok_run": False, "value": None,
                                      "error": _reference_message(hits),
                                      "reason": ("monitor_removed" if ReferenceMonitor.REMOVED
                                                 in hits else "reference")}
                self.flag(f"{exercise.id}: {_reference_message(hits)}")
        return results


def _share(namespace: dict) -> None:
    """Let the package's stubbed references find the submission's own functions
    (:func:`~segedu.grading.engine.stubs.own_answer`): the same dict, so later cells count."""
    stubs.answers = namespace


def _reference_message(hits: list[str]) -> str:
    if ReferenceMonitor.REMOVED in hits:
        return "the grader's call monitor (sys.settrace) was removed while this case ran"
    return (f"the reference implementation ({', '.join(hits)}) ran in this case: only the "
            "submission's own code earns points")


def _import(module: str, qualname: str) -> Any:
    value: Any = importlib.import_module(module)
    for part in qualname.split("."):
        value = getattr(value, part)
    return value


def _summary(ref: Any) -> Callable[[Any], Any] | None:
    """The summary a request names (see :class:`ChildRequest`): the package's own."""
    if ref is None:
        return None
    kind, *where = ref
    if kind == "function":
        return _import(*where)
    exercise = package_registry.get(where[0])
    return exercise.summary if kind == "exercise" else exercise.case(where[1]).summary


def build_exercises(request: ChildRequest, inputs: dict[str, dict[str, tuple]],
                    ) -> tuple[list[Exercise], dict[tuple[str, str], int]]:
    """The exercises of the request, each case's ``make_inputs`` returning what the parent
    sent; and the case seeds."""
    exercises, seeds = [], {}
    for spec in request.exercises:
        reference = _import(*spec["reference"].split(":")) if spec.get("reference") else None
        cases = []
        for case in spec["cases"]:
            args = inputs[spec["id"]][case["name"]]
            cases.append(Case(case["name"], lambda args=args: args,
                              summary=_summary(case.get("summary"))))
            seeds[(spec["id"], case["name"])] = int(case["seed"])
        if cases:
            exercises.append(Exercise(spec["id"], spec["function"], reference, cases, hint=""))
    return exercises, seeds


def main() -> int:
    files = ChildFiles(".")
    request, inputs, notebook = files.read_request()
    use_reference_facts(request.facts)  # the references here are stubs
    exercises, seeds = build_exercises(request, inputs)
    confinement = None
    if request.confine:
        confinement = Confinement(files.workdir.resolve(), request.protect,
                                  log_path=files.refused.resolve())
    runner = Runner(request, files, notebook, exercises, seeds, confinement)
    runner.prepare()
    _limit_resources(request.memory_mb)
    if confinement is not None:
        confinement.install()
    runner.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

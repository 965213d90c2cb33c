"""The grader's parent side: run a submission in a child process and judge what it returned.

:func:`grade_notebook` starts ``python -m segedu.grading.runner`` on the notebook in a
temporary directory, with a time limit (and optionally a memory limit), reads back the
values the student's functions returned (``torch.load(..., weights_only=True)``: plain data
only, never arbitrary objects), computes the reference values *here*, and compares. The
submission's process never sees the comparison, so nothing it does there (patching
``assert_close``, printing a score, exiting early, writing a results file) can raise its
score. The child also confines the submission (:mod:`segedu.grading.sandbox`): it cannot
read the course's ``solutions/``, the instructor's test files or the other submissions being
graded, write outside its temporary working directory or start processes, and a case in which
the exercise's reference implementation ran earns nothing.

:func:`check` is the in-notebook feedback (``segedu.check("ch01.bilinear_kernel", fn)``):
public cases only, in the student's own process, since it grades nothing.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .exercise import (
    Case,
    Exercise,
    compare,
    compute,
    exercises_for,
    get_exercise,
    input_seed,
)
from .notebook import chapter_of, exercise_ids, load_notebook

__all__ = [
    "CaseResult",
    "ExerciseResult",
    "GradeReport",
    "grade_notebook",
    "check_notebook",
    "check",
    "check_result",
    "CheckResult",
    "format_points",
]

_PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the directory holding segedu/


def format_points(x: float) -> str:
    """``17`` for 17.0, ``17.5`` for 17.5."""
    x = float(x)
    if x.is_integer():
        return str(int(x))
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _one_line(text: str, limit: int = 300) -> str:
    """Student-controlled text on one line, so it cannot forge report lines."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class CaseResult:
    name: str
    points: float
    max_points: float
    passed: bool
    message: str
    hidden: bool


@dataclass
class ExerciseResult:
    id: str
    function: str
    cases: list[CaseResult]
    hint: str

    @property
    def score(self) -> float:
        return sum(c.points for c in self.cases)

    @property
    def max_score(self) -> float:
        return sum(c.max_points for c in self.cases)


@dataclass
class GradeReport:
    """The outcome of grading (or checking) one notebook.

    ``status`` is ``"ok"``, ``"timeout"``, ``"crashed (exit code N)"``, ``"crashed (killed
    by SIGNAL)"``, ``"exited early (exit code 0)"``, ``"unreadable result file"``,
    ``"unreadable notebook"``, ``"incomplete result file"`` (it claims to be complete but
    lacks exercises: forged by the submission) or, for a submission that could not be graded at all,
    ``"not graded: <why>"``. When it is not ``"ok"``, cases the child computed before it
    stopped still count. ``flags`` lists what the grader refused or noticed (reading
    ``solutions/``, calling the reference implementation, writing files, ...).
    """

    notebook: str
    chapter: str
    status: str
    exercises: list[ExerciseResult]
    public_only: bool = False
    cell_errors: list[str] = field(default_factory=list)
    log: str = ""  # the child's stderr tail, for instructors; student-controlled
    flags: list[str] = field(default_factory=list)  # what the grader refused or noticed
    elapsed: float = 0.0  # seconds spent grading it

    @property
    def score(self) -> float:
        return sum(e.score for e in self.exercises)

    @property
    def max_score(self) -> float:
        return sum(e.max_score for e in self.exercises)

    @property
    def full_marks(self) -> bool:
        """The run completed and every case passed."""
        return self.status == "ok" and self.max_score > 0 and self.score == self.max_score

    def format(self) -> str:
        """A text report: one line per case, hints for failures, then ``score: X / Y``."""
        what = "Checking (public cases only)" if self.public_only else "Grading"
        lines = [f"{what} {self.notebook}", f"status: {self.status}"]
        for error in self.cell_errors:
            lines.append(f"! {error}")
        for flag in self.flags:
            lines.append(f"⚠ {flag}")
        for ex in self.exercises:
            lines.append("")
            lines.append(f"{ex.id} ({format_points(ex.score)} / "
                         f"{format_points(ex.max_score)} points)")
            for c in ex.cases:
                mark = "✓" if c.passed else "✗"
                label = f"{c.name} (hidden)" if c.hidden else c.name
                line = (f"  {mark} {label}  [{format_points(c.points)}/"
                        f"{format_points(c.max_points)}]")
                if c.message:
                    line += f": {c.message}"
                lines.append(line)
            if any(not c.passed for c in ex.cases) and ex.hint:
                lines.append(f"  hint: {_one_line(ex.hint, 1000)}")
        if self.log and self.status != "ok":
            lines.append("")
            lines.append("output of the submission's process (last lines):")
            lines.extend(f"  | {line}" for line in self.log.splitlines())
        lines.append("")
        lines.append(f"score: {format_points(self.score)} / {format_points(self.max_score)}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able data: the report's fields plus per-exercise and total scores."""
        return {
            "notebook": self.notebook,
            "chapter": self.chapter,
            "status": self.status,
            "public_only": self.public_only,
            "score": self.score,
            "max_score": self.max_score,
            "cell_errors": list(self.cell_errors),
            "flags": list(self.flags),
            "elapsed_s": round(self.elapsed, 2),
            "exercises": [
                {"id": ex.id, "function": ex.function, "score": ex.score,
                 "max_score": ex.max_score, "hint": ex.hint,
                 "cases": [asdict(c) for c in ex.cases]}
                for ex in self.exercises
            ],
        }

    def to_gradescope(self) -> dict[str, Any]:
        """Gradescope's ``results.json`` layout: one test per case; hidden cases are
        visible to students only after grades are published."""
        tests = []
        for ex in self.exercises:
            for c in ex.cases:
                output = c.message or ("passed" if c.passed else "failed")
                if not c.passed and ex.hint:
                    output += f"\nhint: {ex.hint}"
                tests.append({
                    "name": f"{ex.id}: {c.name}",
                    "score": c.points,
                    "max_score": c.max_points,
                    "status": "passed" if c.passed else "failed",
                    "output": output,
                    "visibility": "after_published" if c.hidden else "visible",
                })
        output = "\n".join([f"status: {self.status}", *(f"! {e}" for e in self.cell_errors),
                            *(f"flagged: {f}" for f in self.flags)])
        return {"score": self.score,
                "output": output,
                "tests": tests}

    def to_markdown(self, title: str | None = None, max_failures: int = 10) -> str:
        """A Markdown section: ``## <title>: X / Y``, the status, the flags, a table with
        one row per exercise, and the first ``max_failures`` failed cases with their
        messages. ``title`` defaults to the notebook's file name."""
        title = title if title is not None else Path(self.notebook).name
        lines = [f"## {title}: {format_points(self.score)} / "
                 f"{format_points(self.max_score)}", "",
                 f"status: {self.status}", ""]
        lines += [f"- ! {_one_line(error)}" for error in self.cell_errors]
        lines += [f"- ⚠ {_one_line(flag)}" for flag in self.flags]
        if self.flags or self.cell_errors:
            lines.append("")
        lines += ["| exercise | passed | points |", "|---|---|---|"]
        for ex in self.exercises:
            passed = sum(c.passed for c in ex.cases)
            lines.append(f"| `{ex.id}` | {passed}/{len(ex.cases)} | "
                         f"{format_points(ex.score)} / {format_points(ex.max_score)} |")
        failed = [(ex, c) for ex in self.exercises for c in ex.cases if not c.passed]
        if failed:
            lines += ["", "Failed cases:", ""]
            for ex, c in failed[:max_failures]:
                label = f"{c.name} (hidden)" if c.hidden else c.name
                lines.append(f"- `{ex.id}` {_one_line(label)}: {_one_line(c.message)}")
            if len(failed) > max_failures:
                lines.append(f"- ... and {len(failed) - max_failures} more")
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- reference values

_reference_cache: dict[tuple[str, str, int], tuple[Exercise, Any]] = {}


def _reference_value(exercise: Exercise, case: Case, seed: int) -> Any:
    # Seeded like the child (global generator and case inputs), without side effects.
    with torch.random.fork_rng(devices=[]), input_seed(seed):
        torch.manual_seed(seed)
        return compute(exercise, exercise.reference, case)


def _expected(exercise: Exercise, case: Case, seed: int = 0) -> Any:
    """The reference's value for ``case``, computed here (cached per exercise object)."""
    key = (exercise.id, case.name, seed)
    cached = _reference_cache.get(key)
    if cached is None or cached[0] is not exercise:
        try:
            _reference_cache[key] = (exercise, _reference_value(exercise, case, seed))
        except Exception as error:
            raise RuntimeError(
                f"the reference implementation of {exercise.id} failed on case "
                f"{case.name!r}: {type(error).__name__}: {error} (a bug in segedu, not in "
                "the submission)"
            ) from error
    return _reference_cache[key][1]


def _judge(exercise: Exercise, case: Case, record: Any, seed: int = 0) -> CaseResult:
    """Compare one case's record from the child with the reference."""
    def result(passed: bool, message: str) -> CaseResult:
        return CaseResult(case.name, case.points if passed else 0.0, case.points,
                          passed, message, case.hidden)

    if not isinstance(record, dict):
        return result(False, "not run")
    if not record.get("ok_run"):
        return result(False, _one_line(record.get("error") or "failed"))
    expected = _expected(exercise, case, seed)
    try:
        passed, message = compare(exercise, record.get("value"), expected, hidden=case.hidden)
    except Exception as error:  # malformed data from the child
        return result(False, _one_line(f"could not compare the result: {error}"))
    return result(passed, _one_line(message))


def instructor_test_files(paths: Sequence[str | os.PathLike]) -> list[str]:
    """The instructor's test files: each path is a ``.py`` file, or a folder whose ``*.py``
    files (sorted, not recursive) are taken. ``ValueError`` for anything else."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.glob("*.py") if p.is_file())
            if not found:
                raise ValueError(f"the tests folder {str(path)!r} holds no .py files; expected "
                                 "Python files that register exercises (see docs/instructor.md)")
            files += [str(p.resolve()) for p in found]
        elif path.is_file() and path.suffix == ".py":
            files.append(str(path.resolve()))
        else:
            raise ValueError(f"tests must be .py files or folders of them; got {str(path)!r}, "
                             "which " + ("is not a .py file" if path.exists() else
                                         "does not exist"))
    return files


def _load_exercise_files(paths: Sequence[str | os.PathLike]) -> list[str]:
    files = instructor_test_files(paths)
    for path in files:
        runpy.run_path(path)
    return files


def _protected_paths(extra: Sequence[str | os.PathLike]) -> list[str]:
    """What a submission may not open: the course's ``solutions/`` (next to the package in
    a source checkout, or in the current folder) and ``extra``."""
    paths = [str(Path(p).resolve()) for p in extra]
    for folder in (_PACKAGE_ROOT / "solutions", Path.cwd() / "solutions"):
        if folder.is_dir() and any(folder.glob("*.ipynb")):
            paths.append(str(folder.resolve()))
    return list(dict.fromkeys(paths))


_SCRATCH = "scratch"  # the child's caches and temporary files, inside its working directory


def _child_env(workdir: str) -> dict[str, str]:
    env = dict(os.environ)
    site_dirs = {str(Path(p).resolve()) for p in site.getsitepackages()}
    if str(_PACKAGE_ROOT) not in site_dirs:  # a source checkout: let the child import it too
        env["PYTHONPATH"] = os.pathsep.join(
            [str(_PACKAGE_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["MPLBACKEND"] = "Agg"
    env["CUDA_VISIBLE_DEVICES"] = ""  # graded on the CPU, like the reference values
    env["SEGEDU_DEVICE"] = "cpu"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    scratch = os.path.join(workdir, _SCRATCH)  # inside the only place the child may write
    os.makedirs(scratch, exist_ok=True)
    env["TMPDIR"] = scratch  # tempfile's files (caches such as matplotlib's are only read)
    return env


def _wait_unreaped(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait for the child to exit *without reaping it*, so that its pid (the id of its
    process group) cannot be reused before the group is killed. False on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(2 * delay, 0.05)
    return True


def _run_child(cmd: list[str], cwd: str, timeout: float) -> tuple[int | None, str]:
    """Run ``cmd`` in its own process group; kill the whole group when the child exits or
    times out, so that nothing the submission started outlives it.

    The child's output goes to a file (not a pipe: a submission printing without end must
    not fill the grader's memory). Returns (exit code, or None on timeout; the last lines
    of the child's output)."""
    kwargs: dict[str, Any] = {}
    group = os.name == "posix"
    if group:
        kwargs["start_new_session"] = True
    log_path = Path(cwd) / "output.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=_child_env(cwd), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, **kwargs)
        if group and hasattr(os, "waitid"):
            exited = _wait_unreaped(proc, timeout)
        else:
            try:
                proc.wait(timeout=timeout)
                exited = True
            except subprocess.TimeoutExpired:
                exited = False
        if group:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        elif not exited:
            proc.kill()
        code: int | None = proc.wait()
        if not exited:
            code = None
    with open(log_path, "rb") as log:
        log.seek(max(0, log_path.stat().st_size - 4096))
        text = log.read().decode("utf-8", errors="replace")
    tail = "\n".join(line[:200] for line in text.splitlines()[-15:])
    return code, tail


def _read_current(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8")[:10_000])
    except (OSError, ValueError):
        return None


def _chapter(path: Path, chapter: str | None) -> tuple[str, Any, str | None]:
    """(chapter, notebook or None, error) for the notebook at ``path``."""
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
    return chapter, nb, error


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
            (an instructor's private hidden cases); they must call
            ``register(..., replace=True)``. The submission cannot open them.
        protect: more files and folders the submission may not open (the other
            submissions of a batch). The course's ``solutions/`` always is.
        seed: torch, ``random`` and NumPy are seeded with it before every case, in the
            child (the student's code) and here (the reference).

    Every registered exercise of the chapter is expected, whatever the notebook contains:
    deleting an answer cell scores 0 for it rather than lowering the total.
    """
    start = time.perf_counter()
    path = Path(path)
    files = _load_exercise_files(extra_exercises)
    chapter, nb, nb_error = _chapter(path, chapter)
    exercises = exercises_for(chapter)
    if not exercises:
        raise ValueError(f"no exercises are registered for chapter {chapter!r}")
    records: dict[str, Any] = {}
    current: Any = None
    cell_errors: list[str] = []
    flags: list[str] = []
    log = ""
    if nb is None:
        status = "unreadable notebook"
        cell_errors.append(_one_line(f"the notebook could not be read: {nb_error}"))
    else:
        with tempfile.TemporaryDirectory(prefix="segedu-grade-") as tmp:
            result_path = Path(tmp) / "result.pt"
            cmd = [sys.executable, "-m", "segedu.grading.engine.child",
                   str(path.resolve()), str(result_path),
                   "--expect", ",".join(ex.id for ex in exercises)]
            if public_only:
                cmd.append("--public-only")
            if case_timeout:
                cmd += ["--case-timeout", str(case_timeout)]
            if memory_limit_mb:
                cmd += ["--memory-mb", str(int(memory_limit_mb))]
            for file in files:
                cmd += ["--exercises-file", file]
            for protected in _protected_paths(protect):
                cmd += ["--protect", protected]
            cmd += ["--seed", str(int(seed))]
            code, log = _run_child(cmd, tmp, timeout)
            refused = result_path.with_name(result_path.name + ".refused")
            ours = {result_path.name, result_path.name + ".current",
                    result_path.name + ".tmp", refused.name, "output.log", _SCRATCH}
            written = sorted(p.name for p in Path(tmp).iterdir() if p.name not in ours)
            if written:
                flags.append(_one_line("the submission wrote files in the grader's working "
                                       f"directory (ignored): {', '.join(written)}"))
            if refused.is_file():
                with open(refused, encoding="utf-8", errors="replace") as f:
                    flags[:0] = [_one_line(f"refused: {line}") for line in
                                 f.read(20_000).splitlines()[:20] if line.strip()]
            current = _read_current(result_path.with_name(result_path.name + ".current"))
            data = None
            status = "ok"
            if result_path.exists():
                try:
                    data = torch.load(result_path, weights_only=True)
                    if not isinstance(data, dict):
                        raise TypeError("not a dict")
                except Exception:
                    status = "unreadable result file"
                    data = None
            if code is None:
                status = "timeout"
            elif code < 0:
                status = f"crashed (killed by {_signal_name(-code)})"
            elif code != 0:
                status = f"crashed (exit code {code})"
            elif status == "ok" and (data is None or data.get("complete") is not True):
                status = "exited early (exit code 0)"
            elif status == "ok" and not data.get("notebook_error") and not (
                    isinstance(data.get("results"), dict)
                    and all(isinstance(data["results"].get(ex.id), dict) for ex in exercises)):
                status = "incomplete result file"  # it says complete: forged
        if isinstance(data, dict):
            if isinstance(data.get("results"), dict):
                records = data["results"]
            if data.get("notebook_error"):
                status = "unreadable notebook"
                cell_errors.append(_one_line(f"the notebook could not be read: "
                                             f"{data['notebook_error']}"))
            for e in data.get("cell_errors") or []:
                if isinstance(e, dict):
                    cell_errors.append(_one_line(
                        f"cell {e.get('cell')} ({e.get('kind')}) raised {e.get('error')}"))
            if isinstance(data.get("flags"), list):
                flags[:0] = [_one_line(f) for f in data["flags"][:30]]
        flags = list(dict.fromkeys(flags))
    if status == "timeout":
        not_run = f"not run: the time limit ({format_points(timeout)} s) was reached"
        while_running = f"the time limit ({format_points(timeout)} s) was reached in this case"
    elif status.startswith(("crashed", "exited early")):
        not_run = f"not run: the process {status} before this case"
        while_running = f"the process {status} while running this case"
    elif status == "incomplete result file":
        not_run = while_running = ("no result for this case (the result file was incomplete: "
                                   "written by the submission?)")
    else:
        not_run = while_running = f"not run ({status})"
    results = []
    for ex in exercises:
        ex_records = records.get(ex.id) if isinstance(records.get(ex.id), dict) else {}
        cases = []
        for case in ex.cases:
            if public_only and case.hidden:
                continue
            record = ex_records.get(case.name)
            if record is None:
                running = status != "ok" and current == [ex.id, case.name]
                record = {"ok_run": False, "error": while_running if running else not_run}
            cases.append(_judge(ex, case, record, seed))
        results.append(ExerciseResult(ex.id, ex.function, cases, ex.hint))
    return GradeReport(str(path), chapter, status, results, public_only, cell_errors, log,
                       flags, time.perf_counter() - start)


def _signal_name(number: int) -> str:
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
    return f"{name}, out of memory?" if name == "SIGKILL" else name


def check_notebook(path: str | os.PathLike, *, timeout: float = 120,
                   **kwargs: Any) -> GradeReport:
    """Check a notebook against the public cases only (``segedu check``); print
    ``report.format()`` to show it. Same keyword arguments as :func:`grade_notebook`."""
    return grade_notebook(path, timeout=timeout, public_only=True, **kwargs)


# --------------------------------------------------------------------------- in-notebook check


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

    ``✓ <case>`` for a pass, ``✗ <case>: <what differs>`` for a failure, the hint once if
    anything failed, and ``<id>: k/n cases passed``. Exceptions raised by ``fn`` (such as the
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
    cases = exercise.public_cases()
    for case in cases:
        try:
            got = compute(exercise, fn, case)
        except NotImplementedError:
            ok, message = False, "not implemented yet (the function raises NotImplementedError)"
        except Exception as error:
            ok, message = False, f"raised {type(error).__name__}: {error}"
        else:
            ok, message = compare(exercise, got, _expected(exercise, case))
        passed += ok
        lines.append(f"✓ {case.name}" if ok else f"✗ {case.name}: {_one_line(message)}")
    if passed < len(cases) and exercise.hint:
        lines.append(f"hint: {exercise.hint.strip()}")
    lines.append(f"{exercise.id}: {passed}/{len(cases)} cases passed")
    if verbose:
        print("\n".join(lines))
    return CheckResult(exercise.id, passed, len(cases))

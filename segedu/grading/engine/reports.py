"""What grading produced, and how it is shown: plain data, rendered for people and tools.

* :class:`GradeReport` — one notebook: its status, its flags, and a :class:`CaseResult` per
  case grouped by :class:`ExerciseResult`; as text (:meth:`~GradeReport.format`), JSON
  (:meth:`~GradeReport.to_dict`), Gradescope's ``results.json``
  (:meth:`~GradeReport.to_gradescope`) and Markdown (:meth:`~GradeReport.to_markdown`).
* :class:`Gradebook` — a batch: a row per :class:`Submission`, as CSV, JSON and Markdown.

Nothing here grades; :mod:`~segedu.grading.engine.judge` and
:mod:`~segedu.grading.engine.batch` fill these in. Every string a submission controls is put
on one line (:func:`one_line`) so that it cannot forge report lines.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
import tempfile
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CaseResult", "ExerciseResult", "GradeReport", "Submission", "Gradebook",
           "format_points", "one_line", "summary_line", "write_json", "write_text",
           "check_output_path"]


def format_points(x: float) -> str:
    """``17`` for 17.0, ``17.5`` for 17.5."""
    x = float(x)
    if x.is_integer():
        return str(int(x))
    return f"{x:.2f}".rstrip("0").rstrip(".")


_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-_])")


#: The most characters :func:`one_line` cleans; beyond them it only says "more than".
_CLEANED = 100_000


def one_line(text: str, limit: int = 300) -> str:
    """Student-controlled text on one line, without terminal escapes (ANSI sequences) or
    other control and formatting characters, so it cannot forge report lines or drive the
    instructor's terminal; at most ``limit`` characters.

    Longer text is cut at a word boundary (mid-word only when its last word is very long)
    and says what it lost: ``"... … (123 more characters)"``."""
    raw = str(text)
    text = _ESCAPES.sub("", raw[:_CLEANED])
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c
                   for c in text)
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    more = "more than " if len(raw) > _CLEANED else ""
    room = max(0, limit - len(f" … ({more}{len(text)} more characters)"))
    kept = text[:room]
    space = kept.rfind(" ")
    if text[room:room + 1] != " " and space >= room // 2:
        kept = kept[:space]  # do not cut a word in two
    kept = kept.rstrip()
    return (f"{kept} " if kept else "") + f"… ({more}{len(text) - len(kept)} more characters)"


def _printable(text: str) -> str:
    """Several lines of student-controlled text, each cleaned by :func:`one_line`."""
    return "\n".join(one_line(line, 1000) for line in str(text).splitlines())


@dataclass
class CaseResult:
    """One case, judged: ``points`` of ``max_points``, and what differed.

    ``message`` is what the student reads: the grader's own words only (its comparison, or a
    message of :mod:`~segedu.grading.engine.vocabulary`). ``detail`` is for the instructor:
    the submission's own words (its exception's message), cleaned, never shown to students.
    """

    name: str
    points: float
    max_points: float
    passed: bool
    message: str
    hidden: bool
    detail: str = ""


@dataclass
class ExerciseResult:
    """One exercise's judged cases, and the hint shown when one failed."""

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

    What students may read is :meth:`student_output` and each case's ``message``
    (:meth:`to_gradescope` shows nothing else); ``cell_errors``, ``flags``, ``log`` and each
    case's ``detail`` hold the submission's own text and are for the instructor.
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
    # ``cell_errors`` in the grader's words only (no text of the submission's): for students
    student_cell_errors: list[str] = field(default_factory=list)

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
                if c.detail and c.detail != c.message:
                    line += f" — {c.detail}"
                lines.append(line)
            if any(not c.passed for c in ex.cases) and ex.hint:
                lines.append(f"  hint: {one_line(ex.hint, 1000)}")
        if self.log and self.status != "ok":
            lines.append("")
            lines.append("output of the submission's process (last lines):")
            lines.extend(f"  | {line}" for line in _printable(self.log).splitlines())
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
            "student_output": self.student_output(),
            "elapsed_s": round(self.elapsed, 2),
            "exercises": [
                {"id": ex.id, "function": ex.function, "score": ex.score,
                 "max_score": ex.max_score, "hint": ex.hint,
                 "cases": [asdict(c) for c in ex.cases]}
                for ex in self.exercises
            ],
        }

    def student_output(self) -> str:
        """What a student reads about the whole run: the status, the cells that raised (by
        exception type) and how many flags the instructor has to look at, all in the
        grader's words."""
        flags = len(self.flags)
        return "\n".join([
            f"status: {self.status}", *(f"! {e}" for e in self.student_cell_errors),
            *([f"{flags} note{'s' if flags > 1 else ''} for the instructor's review"]
              if flags else [])])

    def to_gradescope(self) -> dict[str, Any]:
        """Gradescope's ``results.json`` layout: one test per case; hidden cases are
        visible to students only after grades are published. Only what students may read:
        :meth:`student_output` and the cases' ``message``, never the submission's own text."""
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
        return {"score": self.score,
                "output": self.student_output(),
                "tests": tests}

    def to_markdown(self, title: str | None = None, max_failures: int = 10) -> str:
        """A Markdown section: ``## <title>: X / Y``, the status, the flags, a table with
        one row per exercise, and the first ``max_failures`` failed cases with their
        messages. ``title`` defaults to the notebook's file name."""
        title = title if title is not None else Path(self.notebook).name
        lines = [f"## {title}: {format_points(self.score)} / "
                 f"{format_points(self.max_score)}", "",
                 f"status: {self.status}", ""]
        lines += [f"- ! {one_line(error)}" for error in self.cell_errors]
        lines += [f"- ⚠ {one_line(flag)}" for flag in self.flags]
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
                detail = f" — {c.detail}" if c.detail and c.detail != c.message else ""
                lines.append(f"- `{ex.id}` {one_line(label)}: "
                             f"{one_line(c.message + detail, 3000)}")
            if len(failed) > max_failures:
                lines.append(f"- ... and {len(failed) - max_failures} more")
        return "\n".join(lines) + "\n"



# --------------------------------------------------------------------------- a batch


@dataclass(frozen=True)
class Submission:
    """A notebook to grade, and whose it is."""

    student: str
    path: Path



@dataclass
class Gradebook:
    """The reports of a batch, in the order graded, and how long it took."""

    rows: list[tuple[Submission, GradeReport]] = field(default_factory=list)
    elapsed: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def exercise_ids(self) -> list[str]:
        ids: list[str] = []
        for _, report in self.rows:
            ids += [ex.id for ex in report.exercises if ex.id not in ids]
        return ids

    def to_csv(self) -> str:
        """One row per submission: student, notebook, chapter, score, max_score, percent,
        status, flags (``; ``-separated), then one column per exercise (its points)."""
        ids = self.exercise_ids()
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["student", "notebook", "chapter", "score", "max_score", "percent",
                         "status", "flags", *ids])
        for submission, report in self.rows:
            points = {ex.id: format_points(ex.score) for ex in report.exercises}
            percent = (f"{100 * report.score / report.max_score:.1f}"
                       if report.max_score else "0.0")
            writer.writerow([_csv_cell(c) for c in (
                submission.student, str(submission.path), report.chapter,
                format_points(report.score), format_points(report.max_score),
                percent, report.status, "; ".join(report.flags),
                *(points.get(i, "") for i in ids))])
        return out.getvalue()

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "segedu-gradebook-1",
            "elapsed_s": round(self.elapsed, 2),
            "settings": self.settings,
            "submissions": [{"student": s.student, **r.to_dict()} for s, r in self.rows],
        }

    def to_markdown(self) -> str:
        """A table of every submission, then each submission's exercise table."""
        lines = ["# Gradebook", "",
                 f"{len(self.rows)} submissions graded in {self.elapsed:.0f} s.", "",
                 "| student | notebook | score | status | flags |", "|---|---|---|---|---|"]
        for submission, report in self.rows:
            flags = len(report.flags)
            lines.append(
                f"| {_cell(submission.student)} | {_cell(submission.path.name)} | "
                f"{format_points(report.score)} / {format_points(report.max_score)} | "
                f"{_cell(report.status)} | {flags if flags else ''} |")
        lines.append("")
        for submission, report in self.rows:
            lines.append(report.to_markdown(
                title=f"{one_line(submission.student)} ({submission.path.name})"))
        return "\n".join(lines)


def summary_line(submission: Submission, report: GradeReport) -> str:
    """``alice  01_fcn.ipynb  17 / 30  ok``: one submission's row on the terminal."""
    flags = f"  ⚠ {len(report.flags)} flagged" if report.flags else ""
    return (f"{submission.student:<20} {submission.path.name:<24} "
            f"{format_points(report.score):>6} / {format_points(report.max_score):<6} "
            f"{report.status}{flags}")


def _cell(text: str) -> str:
    return one_line(text, 120).replace("|", "/")



def _csv_cell(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (``=``, ``+``, ``-``, ``@``, tab or
    carriage return first get a leading ``'``); numbers stay numbers."""
    text = one_line(text, 2000)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            float(text)
            return text
        except ValueError:
            return "'" + text
    return text


def check_output_path(path: str | os.PathLike) -> Path:
    """``path`` if a report may be written there: it does not exist, or is a regular file
    (not a link, a FIFO, a device, a folder), in an existing folder. ``ValueError`` else."""
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise ValueError(
                f"cannot write {str(path)!r}: no folder {str(path.parent)!r}") from None
        return path
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"refusing to write {str(path)!r}: it exists and is not a regular "
                         "file (a link, a FIFO, a device or a folder)")
    return path


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a report atomically: a temporary file in the same folder, renamed over
    ``path`` (which must be a regular file if it exists: :func:`check_output_path`)."""
    path = check_output_path(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")

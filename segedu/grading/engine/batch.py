"""Grading many submissions at once: one row per submission, a CSV and JSON gradebook.

``segedu grade submissions/`` finds every notebook under the folder, grades each in its own
process (:func:`~segedu.grading.engine.judge.grade_notebook`), and carries on whatever one of them
does: a submission that cannot be graded at all (not a notebook of a known chapter) gets a
row with status ``"not graded: <why>"`` and no points.

Who is the student? For a notebook found in a folder given on the command line, the first
part of its path below that folder, without ``.ipynb``: ``submissions/alice.ipynb`` and
``submissions/alice/01_fcn.ipynb`` both belong to ``alice``. For a notebook given by its
path, its file name without ``.ipynb``, unless that looks like a chapter's name
(``01_fcn``): then the folder's name.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from .judge import grade_notebook
from .registry import instructor_test_files
from .reports import Gradebook, GradeReport, Submission, one_line

__all__ = ["find_submissions", "grade_submissions"]


def _student_of(path: Path, root: Path | None) -> str:
    if root is not None:
        first = path.relative_to(root).parts[0]
        return first[: -len(".ipynb")] if first.endswith(".ipynb") else first
    if re.match(r"\d{2}_", path.name) and path.parent.name:
        return path.resolve().parent.name
    return path.stem


def find_submissions(paths: Sequence[str | os.PathLike]) -> list[Submission]:
    """The notebooks to grade: each path is a notebook, or a folder searched recursively
    for ``*.ipynb`` (sorted; ``.ipynb_checkpoints`` and hidden folders skipped).

    Raises:
        ValueError: a path does not exist, is not a notebook, or is a folder without one.
    """
    found: list[Submission] = []
    for given in map(Path, paths):
        if given.is_dir():
            notebooks = sorted(
                p for p in given.rglob("*.ipynb")
                if p.is_file() and not any(part.startswith(".")
                                           for part in p.relative_to(given).parts))
            if not notebooks:
                raise ValueError(f"the folder {str(given)!r} holds no .ipynb notebooks")
            found += [Submission(_student_of(p, given), p) for p in notebooks]
        elif given.is_file():
            if given.suffix != ".ipynb":
                raise ValueError(f"expected a notebook (.ipynb) or a folder of them; got "
                                 f"{str(given)!r}")
            found.append(Submission(_student_of(given, None), given))
        else:
            raise ValueError(f"no such notebook or folder: {str(given)!r}")
    unique: dict[Path, Submission] = {}
    for submission in found:  # a notebook named twice is graded once
        unique.setdefault(submission.path.resolve(), submission)
    return list(unique.values())



def _not_graded(path: Path, error: Exception, chapter: str | None) -> GradeReport:
    return GradeReport(str(path), chapter or "?", f"not graded: {one_line(str(error), 200)}",
                       [])


def grade_submissions(
    submissions: Sequence[Submission],
    *,
    on_graded: Callable[[Submission, GradeReport], None] | None = None,
    chapter: str | None = None,
    jobs: int = 1,
    **kwargs: Any,
) -> Gradebook:
    """Grade every submission, each in its own process, ``jobs`` at a time.

    The other submissions of the batch are protected from each one (it cannot open them).
    ``on_graded`` is called after each, in the order they finish (to print progress); the
    gradebook's rows keep the order of ``submissions``. With ``jobs > 1`` the memory limit
    applies to each of the ``jobs`` processes. Keyword arguments go to
    :func:`grade_notebook` (``timeout``, ``case_timeout``, ``memory_limit_mb``,
    ``extra_exercises``, ``seed``). A submission that cannot be graded at all (a
    ``ValueError`` such as an unknown chapter) gets a ``"not graded: ..."`` row and the
    batch goes on; a test file that does not exist raises ``ValueError`` before any
    grading.
    """
    start = time.perf_counter()
    book = Gradebook(settings={k: (list(map(str, v)) if isinstance(v, (list, tuple)) else v)
                               for k, v in kwargs.items()})
    everyone = [str(s.path.resolve()) for s in submissions]
    extra = list(kwargs.pop("protect", ()))
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    instructor_test_files(kwargs.get("extra_exercises", ()))  # a wrong path stops it here

    def one(submission: Submission) -> GradeReport:
        try:
            return grade_notebook(submission.path, chapter=chapter,
                                  protect=[*everyone, *extra], **kwargs)
        except ValueError as error:
            return _not_graded(submission.path, error, chapter)

    reports: dict[int, GradeReport] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # threads wait on child processes
        futures = {pool.submit(one, s): i for i, s in enumerate(submissions)}
        for future in as_completed(futures):
            index = futures[future]
            reports[index] = future.result()
            if on_graded is not None:
                on_graded(submissions[index], reports[index])
    book.rows = [(s, reports[i]) for i, s in enumerate(submissions)]
    book.elapsed = time.perf_counter() - start
    return book


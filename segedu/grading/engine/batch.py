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

import hashlib
import os
import re
import stat
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from .judge import MAX_NOTEBOOK_BYTES, Grader
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
            notebooks = sorted(  # links too: they get a row that says they were refused
                p for p in given.rglob("*.ipynb")
                if (p.is_file() or p.is_symlink()) and not any(
                    part.startswith(".") for part in p.relative_to(given).parts))
            if not notebooks:
                raise ValueError(f"the folder {str(given)!r} holds no .ipynb notebooks")
            found += [Submission(_student_of(p, given), p) for p in notebooks]
        elif given.is_file() or given.is_symlink():
            if given.suffix != ".ipynb":
                raise ValueError(f"expected a notebook (.ipynb) or a folder of them; got "
                                 f"{str(given)!r}")
            found.append(Submission(_student_of(given, None), given))
        else:
            raise ValueError(f"no such notebook or folder: {str(given)!r}")
    unique: dict[str, Submission] = {}
    for submission in found:  # a notebook named twice is graded once (links are not
        unique.setdefault(os.path.abspath(submission.path), submission)  # resolved: each
    return list(unique.values())  # link gets its own row)


def _same_files(submissions: Sequence[Submission]) -> dict[int, str]:
    """Why a submission is refused before it runs: a symbolic link, not a regular file, too
    large, or the same file (a hard link) as another submission. By index."""
    refused: dict[int, str] = {}
    inodes: dict[tuple[int, int], list[int]] = {}
    for i, submission in enumerate(submissions):
        try:
            info = os.lstat(submission.path)
        except OSError as error:
            refused[i] = f"cannot be read ({error.strerror})"
            continue
        if stat.S_ISLNK(info.st_mode):
            refused[i] = "the notebook is a symbolic link (hand in the file itself)"
        elif not stat.S_ISREG(info.st_mode):
            refused[i] = "the notebook is not a regular file"
        elif info.st_size > MAX_NOTEBOOK_BYTES:
            refused[i] = (f"the notebook has {info.st_size} bytes, more than the "
                          f"{MAX_NOTEBOOK_BYTES} allowed")
        else:
            inodes.setdefault((info.st_dev, info.st_ino), []).append(i)
    for same in inodes.values():
        if len(same) > 1:
            for i in same:
                others = ", ".join(submissions[j].student for j in same if j != i)
                refused[i] = f"the notebook is the same file (a hard link) as {others}'s"
    return refused


def _duplicates(submissions: Sequence[Submission]) -> dict[int, str]:
    """A flag for each notebook whose bytes are identical to another's (graded anyway)."""
    digests: dict[str, list[int]] = {}
    for i, submission in enumerate(submissions):
        try:
            with open(submission.path, "rb", opener=lambda p, f: os.open(
                    p, f | os.O_NOFOLLOW | os.O_NONBLOCK)) as f:
                digests.setdefault(hashlib.sha256(f.read(MAX_NOTEBOOK_BYTES)).hexdigest(),
                                   []).append(i)
        except OSError:
            continue
    flags = {}
    for same in digests.values():
        for i in same if len(same) > 1 else ():
            others = ", ".join(submissions[j].student for j in same if j != i)
            flags[i] = f"the notebook is identical, byte for byte, to {others}'s"
    return flags



def _not_graded(path: Path, why: str, chapter: str | None) -> GradeReport:
    return GradeReport(str(path), chapter or "?", f"not graded: {one_line(why, 200)}", [])


def grade_submissions(
    submissions: Sequence[Submission],
    *,
    on_graded: Callable[[Submission, GradeReport], None] | None = None,
    chapter: str | None = None,
    jobs: int = 1,
    grader: Grader | None = None,
    **kwargs: Any,
) -> Gradebook:
    """Grade every submission, each in its own sandboxed process, ``jobs`` at a time.

    One :class:`~segedu.grading.engine.judge.Grader` (``grader``, else one made from
    ``kwargs``: ``timeout``, ``case_timeout``, ``memory_limit_mb``, ``extra_exercises``,
    ``seed``, ``isolation``, ``allow_unisolated``) prepares everything before the first
    submission runs. ``on_graded`` is called after each, in the order they finish (to print
    progress); the gradebook's rows keep the order of ``submissions``. With ``jobs > 1`` the
    limits apply to each of the ``jobs`` processes.

    A submission that is a symbolic link, not a regular file, too large, or a hard link to
    another one is refused with a row that says so; one that cannot be graded at all (any
    error while grading it) gets a ``"not graded: ..."`` row, and the batch goes on. A test
    file that does not exist raises ``ValueError`` before any grading.
    """
    start = time.perf_counter()
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    instructor_test_files(kwargs.get("extra_exercises", ()))  # a wrong path stops it here
    extra = list(kwargs.pop("protect", ()))
    everyone = [os.path.abspath(s.path) for s in submissions]
    if grader is None:
        grader = Grader(protect=[*everyone, *extra], **kwargs)
    book = Gradebook(settings={
        **{k: (list(map(str, v)) if isinstance(v, (list, tuple)) else v)
           for k, v in kwargs.items() if k not in ("seed", "isolation")},
        "isolation": grader.isolation.level})
    refused = _same_files(submissions)
    duplicates = _duplicates(submissions)

    def one(index: int) -> GradeReport:
        submission = submissions[index]
        if index in refused:
            return _not_graded(submission.path, f"refused: {refused[index]}", chapter)
        try:
            report = grader.grade(submission.path, chapter)
        except Exception as error:  # noqa: BLE001 - one submission never stops the batch
            why = str(error) if isinstance(error, ValueError) else \
                f"the grader failed on it ({type(error).__name__}: {error})"
            return _not_graded(submission.path, why, chapter)
        if index in duplicates:
            report.flags.append(one_line(duplicates[index]))
        return report

    reports: dict[int, GradeReport] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # threads wait on child processes
        futures = {pool.submit(one, i): i for i in range(len(submissions))}
        for future in as_completed(futures):
            index = futures[future]
            reports[index] = future.result()
            if on_graded is not None:
                on_graded(submissions[index], reports[index])
    book.rows = [(s, reports[i]) for i, s in enumerate(submissions)]
    book.elapsed = time.perf_counter() - start
    return book

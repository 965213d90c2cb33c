"""Reading graded notebooks and generating exercise notebooks from solution notebooks.

Conventions for a solution (instructor) notebook ``solutions/NN_name.ipynb``:

* **Answer cell** — a code cell whose metadata holds ``"segedu": {"exercise": "<id>"}``
  (and, for people and tools, the tag ``"exercise"``). It defines the function(s) of that
  exercise; the instructor's solution sits between the lines ``### BEGIN SOLUTION`` and
  ``### END SOLUTION``, indented as the code it stands for (usually inside the function
  body). A cell may hold several such blocks. Markers anywhere else are an error.
* **Setup cell** — a code cell tagged ``"setup"``: the imports (and small helpers) the
  answer cells need. The grader runs setup and answer cells only, in notebook order.
* **Check cell** — a code cell tagged ``"check"`` calling ``segedu.check("<id>", fn)`` for
  in-place feedback. The grader never runs it.
* **Solution-only cell** — any cell tagged ``"solution-only"`` (a worked answer, a
  discussion); it is dropped from the exercise notebook.

The notebook's chapter is ``chNN`` from its file name ``NN_name.ipynb``; exercise ids
start with it (``ch01.bilinear_kernel``).

:func:`make_exercise_notebook` turns a solution notebook into the student's version: each
solution block becomes ``raise NotImplementedError("Exercise <id>: <task>")`` at the
block's indentation (the exercise's :attr:`~segedu.grading.Exercise.task`: what to compute
and why, never the answer) — or, for a "find the bug" exercise, the buggy code of its
:attr:`~segedu.grading.Exercise.stub`. Answer cells lose their outputs and are tagged
``nbval-ignore-output`` (a student may print while working); **check cells lose theirs too**,
with their execution counts, so that no pass mark of the instructor's run stands under an
unanswered stub; solution-only cells are dropped and every other cell keeps the outputs and
execution counts of the instructor's run. A student checks answers with the check cells
(``segedu.check``) or ``segedu check exercises/NN_name.ipynb`` from a shell; strict nbval runs
on ``solutions/`` (whose stored outputs must be reproducible). The result is deterministic,
so :func:`assign` with ``check=True`` can tell whether ``exercises/`` is up to date byte for
byte.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .registry import get_exercise

# nbformat is imported where it is needed: it takes a second or more to import (jsonschema),
# and neither ``import segedu`` nor the grader's child process needs it.

__all__ = [
    "BEGIN_SOLUTION",
    "END_SOLUTION",
    "GradedCell",
    "cell_tags",
    "cell_exercise_id",
    "chapter_of",
    "exercise_ids",
    "graded_cells",
    "read_notebook",
    "load_notebook",
    "notebook_text",
    "make_exercise_notebook",
    "assign",
]

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
#: nbval's cell tag for "run this cell but do not compare its output".
NBVAL_IGNORE_OUTPUT = "nbval-ignore-output"


@dataclass(frozen=True)
class GradedCell:
    """A cell the grader executes: ``kind`` is ``"setup"`` or ``"answer"``."""

    index: int
    kind: str
    source: str
    exercise_id: str | None


def read_notebook(path: str | Path):
    """Read a notebook as an ``nbformat.NotebookNode``, version 4."""
    import nbformat

    with open(path, encoding="utf-8") as f:
        return nbformat.read(f, as_version=4)


def load_notebook(path: str | Path) -> dict[str, Any]:
    """Read a notebook's JSON as plain dicts (fast; enough for :func:`graded_cells`).

    Raises:
        ValueError: the file is not JSON or has no list of cells.
    """
    with open(path, encoding="utf-8") as f:
        try:
            nb = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not a notebook (invalid JSON: {error})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError(f"{path} is not a notebook (no list of cells)")
    return nb


def notebook_text(nb) -> str:
    """The notebook as the JSON text :func:`nbformat.write` produces, newline-terminated."""
    import nbformat

    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def _metadata(cell) -> dict:
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    return meta if isinstance(meta, dict) else {}


def cell_tags(cell) -> list[str]:
    tags = _metadata(cell).get("tags", [])
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def cell_exercise_id(cell) -> str | None:
    """The exercise id of an answer cell, else None."""
    if not isinstance(cell, dict) or cell.get("cell_type") != "code":
        return None
    meta = _metadata(cell).get("segedu")
    if isinstance(meta, dict) and isinstance(meta.get("exercise"), str):
        return meta["exercise"]
    return None


def chapter_of(path: str | Path) -> str | None:
    """``"ch01"`` for ``.../01_fcn.ipynb``; None when the name does not start with ``NN_``."""
    match = re.match(r"(\d{2})_", Path(path).name)
    return f"ch{match.group(1)}" if match else None


def graded_cells(nb) -> list[GradedCell]:
    """The setup and answer cells of ``nb``, in notebook order."""
    cells = []
    for index, cell in enumerate(nb.get("cells", [])):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        ex_id = cell_exercise_id(cell)
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(s for s in source if isinstance(s, str))
        if not isinstance(source, str):
            source = ""
        if ex_id is not None:
            cells.append(GradedCell(index, "answer", source, ex_id))
        elif "setup" in cell_tags(cell):
            cells.append(GradedCell(index, "setup", source, None))
    return cells


def exercise_ids(nb) -> list[str]:
    """Exercise ids of the answer cells, in order of first appearance."""
    ids: list[str] = []
    for cell in graded_cells(nb):
        if cell.exercise_id is not None and cell.exercise_id not in ids:
            ids.append(cell.exercise_id)
    return ids


def _strip_solution(source: str, exercise_id: str, hint: str, where: str,
                    stub: str | None = None) -> str:
    """Replace each BEGIN/END SOLUTION block of ``source`` by a NotImplementedError stub
    (or, with ``stub``, the one block by that code)."""
    message = f"Exercise {exercise_id}: {hint}" if hint else f"Exercise {exercise_id}"
    out: list[str] = []
    in_block = False
    found = False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN_SOLUTION:
            if in_block:
                raise ValueError(f"{where}: nested {BEGIN_SOLUTION!r}")
            if found and stub is not None:
                raise ValueError(f"{where}: a find-the-bug exercise ({exercise_id}) must "
                                 "have a single solution block")
            in_block = found = True
            indent = line[: len(line) - len(line.lstrip())]
            if stub is not None:
                out += [indent + code if code.strip() else ""
                        for code in stub.strip("\n").splitlines()]
            else:
                literal = json.dumps(message, ensure_ascii=False)
                out.append(f"{indent}raise NotImplementedError({literal})")
        elif stripped == END_SOLUTION:
            if not in_block:
                raise ValueError(f"{where}: {END_SOLUTION!r} without {BEGIN_SOLUTION!r}")
            in_block = False
        elif not in_block:
            out.append(line)
    if in_block:
        raise ValueError(f"{where}: {BEGIN_SOLUTION!r} without {END_SOLUTION!r}")
    if not found:
        raise ValueError(
            f"{where}: answer cell for {exercise_id} has no {BEGIN_SOLUTION!r} block")
    return "\n".join(out) + ("\n" if source.endswith("\n") else "")


def _has_markers(source: str) -> bool:
    return any(line.strip() in (BEGIN_SOLUTION, END_SOLUTION) for line in source.splitlines())


def make_exercise_notebook(nb, *, keep_outputs: bool = False, name: str = "notebook"):
    """Return the student version of the solution notebook ``nb`` (``nb`` is not modified).

    Args:
        nb: a solution notebook (nbformat v4).
        keep_outputs: keep the outputs of answer cells too (by default they are cleared;
            check cells never keep theirs).
        name: used in error messages.

    Raises:
        ValueError: unbalanced or misplaced solution markers, an answer cell without a
            solution block, or an exercise id that is not registered.
    """
    import nbformat

    nb = nbformat.from_dict(copy.deepcopy(nb))
    cells = []
    for index, cell in enumerate(nb.cells):
        tags = cell_tags(cell)
        if "solution-only" in tags:
            continue
        where = f"{name}, cell {index}"
        source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        ex_id = cell_exercise_id(cell)
        if ex_id is not None:
            exercise = get_exercise(ex_id)
            cell.source = _strip_solution(source, ex_id, exercise.task.strip() or
                                          exercise.short_hint, where, exercise.stub)
        elif _has_markers(source):
            raise ValueError(
                f"{where}: solution markers in a cell without "
                '"segedu": {"exercise": "<id>"} metadata'
            )
        if cell.cell_type == "code" and ex_id is not None:
            # The student's answer may print anything; nbval compares the check cells.
            if not keep_outputs:
                cell.outputs = []
            if NBVAL_IGNORE_OUTPUT not in tags:
                cell.metadata.setdefault("tags", []).append(NBVAL_IGNORE_OUTPUT)
        if cell.cell_type == "code" and "check" in tags:
            # No pass mark of the instructor's run under an unanswered stub.
            cell.outputs = []
            cell.execution_count = None
        # Other code cells keep the instructor run's outputs and execution counts.
        cells.append(cell)
    nb.cells = cells
    return nb


def _differs(path: Path, text: str) -> bool:
    return not path.exists() or path.read_bytes() != text.encode("utf-8")


def assign(solutions_dir: str | Path = "solutions", exercises_dir: str | Path = "exercises",
           check: bool = False, *, keep_outputs: bool = False) -> list[Path]:
    """Generate ``exercises/NN_name.ipynb`` from every ``solutions/NN_name.ipynb``.

    Exercise notebooks that have no solution notebook any more are removed (``exercises/``
    is generated, never edited by hand).

    Args:
        check: write nothing; return the exercise files that are missing, differ from what
            would be generated, or have no solution notebook (CI fails when the list is
            not empty).

    Returns:
        The exercise paths written or removed (``check=False``), or the stale ones
        (``check=True``), sorted.
    """
    solutions_dir, exercises_dir = Path(solutions_dir), Path(exercises_dir)
    if not solutions_dir.is_dir():
        raise ValueError(f"solutions directory {str(solutions_dir)!r} does not exist")
    stale: list[Path] = []
    expected_names = set()
    for source in sorted(solutions_dir.glob("*.ipynb")):
        target = exercises_dir / source.name
        expected_names.add(source.name)
        text = notebook_text(make_exercise_notebook(
            read_notebook(source), keep_outputs=keep_outputs, name=str(source)))
        if _differs(target, text):
            stale.append(target)
            if not check:
                exercises_dir.mkdir(parents=True, exist_ok=True)
                with open(target, "w", encoding="utf-8", newline="\n") as f:
                    f.write(text)
    if exercises_dir.is_dir():
        for orphan in sorted(exercises_dir.glob("*.ipynb")):
            if orphan.name not in expected_names:
                stale.append(orphan)
                if not check:
                    orphan.unlink()
    return sorted(stale)

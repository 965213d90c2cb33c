"""The course's graded exercises, end to end, on the repository's real notebooks.

``solutions/NN_name.ipynb`` is the single source: ``exercises/NN_name.ipynb`` is generated from
it (``segedu assign``) and must be up to date; the generated stubs score 0 and the solutions full
marks under the real grader; the solutions' stored outputs are reproducible (strict nbval); and
a student who opens an exercise notebook can run it top to bottom before writing anything.

Every solution notebook is covered automatically: a new chapter needs no edit here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from segedu.grading import all_exercises, assign, grade_notebook
from segedu.grading.engine.notebook import cell_tags, chapter_of, exercise_ids, load_notebook

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"

SOLUTION_NOTEBOOKS = sorted(SOLUTIONS.glob("*.ipynb"))
NAMES = [path.name for path in SOLUTION_NOTEBOOKS]


def exercise_notebook(name: str) -> Path:
    """The student version of ``solutions/<name>``; fails the test when it is missing."""
    path = EXERCISES / name
    assert path.exists(), f"{path} is missing: run `segedu assign` and commit exercises/"
    return path


def test_exercises_are_generated_from_solutions_and_up_to_date():
    stale = assign(SOLUTIONS, EXERCISES, check=True)
    assert stale == [], (
        "exercises/ differs from what `segedu assign` generates from solutions/ (never edit "
        f"exercises/ by hand; run `segedu assign` and commit): {[str(p) for p in stale]}"
    )


def test_every_registered_exercise_has_an_answer_cell_in_its_chapters_solution_notebook():
    answered = {chapter_of(path): set(exercise_ids(load_notebook(path)))
                for path in SOLUTION_NOTEBOOKS}
    # Every exercise: what a test or a grading run registers goes with it (issue 19).
    exercises = all_exercises()
    assert exercises, "no chapter exercises registered"
    missing = [ex.id for ex in exercises if ex.id not in answered.get(ex.chapter, set())]
    assert missing == [], (
        f"registered exercises without an answer cell in solutions/NN_*.ipynb: {missing}")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_chapter_exercise_stub_scores_zero(name):
    report = grade_notebook(exercise_notebook(name))
    assert report.status == "ok", report.format()
    assert not report.cell_errors, report.format()
    assert report.max_score > 0, report.format()
    assert report.score == 0, report.format()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_chapter_solution_scores_full_marks(name):
    # Under a grading seed, as with an instructor bundle: every random case input is a new
    # draw (seed 0, the inputs students check against, is covered by the nbval test above).
    report = grade_notebook(SOLUTIONS / name, seed=20261127)
    assert report.status == "ok", report.format()
    assert not report.cell_errors, report.format()
    assert report.score == report.max_score > 0, report.format()


def filled_in(name: str, directory: Path) -> Path:
    """The exercise notebook with the solution's answer cells put in: a perfect student."""
    import nbformat

    from segedu.grading.engine.notebook import cell_exercise_id

    solution = nbformat.read(SOLUTIONS / name, as_version=4)
    answers = {cell_exercise_id(c): c.source for c in solution.cells if cell_exercise_id(c)}
    exercise = nbformat.read(exercise_notebook(name), as_version=4)
    for cell in exercise.cells:
        if cell_exercise_id(cell):
            cell.source = answers[cell_exercise_id(cell)]
    path = directory / name
    nbformat.write(exercise, path)
    return path


def student_nbval(path: Path, *extra: str) -> subprocess.CompletedProcess:
    """``pytest --nbval NOTEBOOK`` as the README tells students to run it (no sanitize file).

    In a subprocess, so that the README's plain `pytest` covers it without --nbval flags. The
    cells run in notebook order even where pytest-randomly is installed."""
    cmd = [sys.executable, "-m", "pytest", "--nbval", str(path), "--nbval-current-env",
           "-p", "no:cacheprovider", "-p", "no:randomly", "-q", "--color=no", *extra]
    return subprocess.run(cmd, cwd=path.parent, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_student_nbval_passes_on_the_exercise_notebook_with_correct_answers(name, tmp_path):
    # Solutions have no solution-only cells (asserted below), so this is also strict nbval on
    # every cell of solutions/<name>: its stored outputs are reproducible.
    proc = student_nbval(filled_in(name, tmp_path))
    assert proc.returncode == 0, (
        f"`pytest --nbval exercises/{name}` fails with correct answers: the stored outputs of "
        f"solutions/{name} are not reproducible (re-execute it, make its outputs "
        f"deterministic, run `segedu assign`):\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_student_nbval_fails_on_the_stub_exercise_notebook(name):
    proc = student_nbval(exercise_notebook(name), "-x")  # the first check cell is enough
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "Cell outputs differ" in proc.stdout and "✗" in proc.stdout, proc.stdout[-3000:]


def test_solution_notebooks_have_no_solution_only_cells():
    # If one ever does, strict nbval must run on solutions/ itself again (see above).
    for path in SOLUTION_NOTEBOOKS:
        tagged = [i for i, c in enumerate(load_notebook(path)["cells"])
                  if "solution-only" in cell_tags(c)]
        assert tagged == [], f"{path.name}: solution-only cells {tagged}"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_exercise_notebook_runs_top_to_bottom_with_stubs(name):
    import nbformat
    from nbclient import NotebookClient

    path = exercise_notebook(name)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell raises
    # Every check cell ran and reported the stub (rather than printing nothing).
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "check" not in cell_tags(cell):
            continue
        text = "".join(out.get("text", "") for out in cell.outputs)
        assert re.search(r": 0/\d+ cases passed", text), (
            f"{name}, cell {index}: a check cell should report 0 cases passed for the stub, "
            f"printed {text!r}")

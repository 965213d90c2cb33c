"""The course's graded exercises, end to end, on the repository's real notebooks.

``solutions/NN_name.ipynb`` is the single source: ``exercises/NN_name.ipynb`` is generated from
it (``segedu assign``) and must be up to date; the generated stubs score 0 and the solutions full
marks under the real grader; the solutions' stored outputs are reproducible (strict nbval); no
exercise notebook shows a pass mark before the student answers, and no stub or first hint shows
the answer; and a student who opens an exercise notebook can run it top to bottom before writing
anything.

Every solution notebook is covered automatically: a new chapter needs no edit here.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import run_nbval

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


def strict_nbval(path: Path) -> subprocess.CompletedProcess:
    """Strict nbval on a solution notebook: every stored output must be reproduced."""
    return run_nbval(path, "--nbval", cwd=ROOT, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_solution_notebook_outputs_are_reproducible_under_strict_nbval(name):
    proc = strict_nbval(SOLUTIONS / name)
    assert proc.returncode == 0, (
        f"strict nbval fails on solutions/{name}: re-execute it (SEGEDU_PROFILE=cpu "
        f"SEGEDU_DEVICE=cpu), then `segedu assign`:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}")


@pytest.mark.parametrize("name", NAMES)
def test_exercise_notebook_shows_no_pass_mark_before_the_student_answers(name):
    # The check cells of the exercise notebooks carry no output of the solution run: no
    # "✓ ... cases passed" under an unanswered stub.
    for index, cell in enumerate(load_notebook(exercise_notebook(name))["cells"]):
        if "check" in cell_tags(cell):
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, (
                f"exercises/{name}, cell {index}: a check cell with stored output")
        text = json.dumps(cell.get("outputs", []))
        assert "cases passed" not in text and "✓" not in text, (
            f"exercises/{name}, cell {index}: a stored pass mark")


def _normal(text: str) -> str:
    return " ".join(text.replace("'", '"').split())


def _solution_blocks(name: str) -> dict[str, str]:
    """The instructor's code between the solution markers, per exercise id."""
    blocks: dict[str, str] = {}
    for cell in load_notebook(SOLUTIONS / name)["cells"]:
        ex_id = cell.get("metadata", {}).get("segedu", {}).get("exercise")
        if ex_id:
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else \
                cell["source"]
            inside = re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", source, re.S)
            blocks[ex_id] = blocks.get(ex_id, "") + "".join(inside)
    return blocks


@pytest.mark.parametrize("name", NAMES)
def test_stubs_and_first_hints_do_not_give_the_answer(name):
    import inspect

    from segedu.grading import get_exercise

    exercise_text = {}
    for cell in load_notebook(exercise_notebook(name))["cells"]:
        ex_id = cell.get("metadata", {}).get("segedu", {}).get("exercise")
        if ex_id:
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            exercise_text[ex_id] = exercise_text.get(ex_id, "") + source
    blocks = _solution_blocks(name)
    for ex_id, block in blocks.items():
        exercise = get_exercise(ex_id)
        stub = exercise_text[ex_id]
        shown = _normal(" ".join([stub if exercise.stub is None else "", exercise.task,
                                  exercise.hint]))
        try:
            reference = inspect.getsource(exercise.reference)
        except (OSError, TypeError):
            reference = ""
        for fragment in exercise.answer_fragments:
            # Each listed fragment is really part of an answer ...
            assert _normal(fragment) in _normal(reference + block), (
                f"{ex_id}: {fragment!r} is in neither the reference nor the solution")
            # ... and neither the stub nor the level-1 hint shows it.
            assert _normal(fragment) not in shown, f"{ex_id}: the stub or hint shows {fragment!r}"
        # No line of the instructor's solution appears in the stub or the level-1 hint.
        for line in block.splitlines():
            code = line.split("#")[0].strip()
            if len(code) >= 12:
                assert _normal(code) not in shown, f"{ex_id}: the stub or hint shows {code!r}"
        assert exercise.hints, f"{ex_id}: no hint levels beyond the first"


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


@pytest.mark.parametrize("name", NAMES)
def test_point_table_and_headings_match_the_registry(name):
    # The first cell's table (| # | `function` | ... | points |), its total, the "k of the n
    # points are public" line and each "## Exercise N ... · P points" heading state the points
    # the grader gives; a case added or re-weighted in the registry must show here too.
    from segedu.grading import exercises_for

    cells = load_notebook(SOLUTIONS / name)["cells"]
    intro = "".join(cells[0]["source"])
    exercises = exercises_for(chapter_of(SOLUTIONS / name))
    points = {ex.function: sum(c.points for c in ex.cases) for ex in exercises}
    table = {m[1]: float(m[2]) for m in re.finditer(
        r"^\|\s*\d+\s*\|\s*`(\w+)`.*\|\s*([\d.]+)\s*\|\s*$", intro, re.M)}
    assert table == points, f"{name}: the point table says {table}, the registry {points}"
    total = re.search(r"\*\*total\*\*\s*\|\s*\*\*([\d.]+)\*\*", intro)
    if total:
        assert float(total[1]) == sum(points.values()), f"{name}: total {total[1]}"
    public = re.search(r"(\d+) of the (\d+) points are public", intro)
    if public:
        expected = (sum(c.points for ex in exercises for c in ex.cases if not c.hidden),
                    sum(points.values()))
        assert (float(public[1]), float(public[2])) == expected, f"{name}: {public[0]}"
    headings = [float(m[1]) for cell in cells if cell["cell_type"] == "markdown"
                for m in re.finditer(r"^## Exercise \d+ .*· (\d+) points",
                                     "".join(cell["source"]), re.M)]
    assert headings == list(points.values()), f"{name}: headings {headings}"

"""The instructor bundle (``segedu assign --bundle``, ``segedu grade --bundle``): the grading
seed and private tests live outside the student-facing tree, and grading refuses a bundle the
installed exercises no longer match."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from segedu.cli import main
from segedu.grading import check_notebook, exercises_for, get_exercise, grade_notebook
from segedu.grading.engine.bundle import bundle_mismatches, read_bundle, write_bundle

ROOT = Path(__file__).resolve().parents[1]

PRIVATE_TEST = '''
from segedu.fcn import pad_to_multiple
from segedu.grading import Case, Exercise, register, seeded_randn

register(Exercise(
    id="ch01.instructor_pad", function="pad_to_multiple", reference=pad_to_multiple,
    hint="Pad at the bottom and right only.",
    cases=[Case("13x7, multiple 5 (instructor)", lambda: (seeded_randn(1, 3, 13, 7, seed=5), 5),
                points=3, hidden=True)],
), replace=True)
'''


@pytest.fixture
def course(tmp_path):
    """A course folder with chapter 1's solution notebook and its exercises."""
    (tmp_path / "solutions").mkdir()
    shutil.copy(ROOT / "solutions" / "01_fcn.ipynb", tmp_path / "solutions")
    assert main(["assign", "--solutions", str(tmp_path / "solutions"),
                 "--exercises", str(tmp_path / "exercises")]) == 0
    return tmp_path


def test_bundle_records_points_seed_and_notebook_hashes(course):
    bundle = write_bundle(course / "instructor", course / "solutions", course / "exercises")
    assert bundle.seed > 0
    chapter = bundle.manifest["chapters"]["ch01"]
    cases = [c for ex in exercises_for("ch01") for c in ex.cases]
    assert chapter["points"] == {"public": sum(c.points for c in cases if not c.hidden),
                                 "hidden": sum(c.points for c in cases if c.hidden),
                                 "total": sum(c.points for c in cases)}
    assert chapter["points"]["hidden"] > 0
    assert len(chapter["solution_sha256"]) == len(chapter["exercise_sha256"]) == 64
    assert (course / "instructor" / "tests" / "README.md").exists()
    assert read_bundle(course / "instructor").manifest == bundle.manifest
    assert bundle_mismatches(bundle) == []


def test_refreshing_a_bundle_keeps_its_seed_and_the_instructors_tests(course):
    first = write_bundle(course / "instructor", course / "solutions", course / "exercises")
    (course / "instructor" / "tests" / "mine.py").write_text(PRIVATE_TEST)
    again = write_bundle(course / "instructor", course / "solutions", course / "exercises")
    assert again.seed == first.seed
    assert again.private_tests() == [course / "instructor" / "tests" / "mine.py"]
    chosen = write_bundle(course / "instructor", course / "solutions", course / "exercises",
                          seed=7)
    assert chosen.seed == 7 == read_bundle(course / "instructor").seed


def test_the_bundle_stays_out_of_the_student_tree_and_out_of_other_folders(course):
    with pytest.raises(ValueError, match="outside the student notebooks"):
        write_bundle(course / "exercises" / "instructor", course / "solutions",
                     course / "exercises")
    (course / "notes").mkdir()
    (course / "notes" / "todo.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        write_bundle(course / "notes", course / "solutions", course / "exercises")
    with pytest.raises(ValueError, match="not an instructor bundle"):
        read_bundle(course / "notes")


def test_grading_refuses_a_bundle_the_installed_exercises_do_not_match(course, capsys):
    write_bundle(course / "instructor", course / "solutions", course / "exercises")
    path = course / "instructor" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["chapters"]["ch01"]["exercises"][0]["cases"][0]["points"] = 99
    path.write_text(json.dumps(manifest))
    code = main(["grade", str(course / "exercises" / "01_fcn.ipynb"),
                 "--bundle", str(course / "instructor")])
    assert code == 2
    assert "cases or points changed" in capsys.readouterr().err


@pytest.mark.slow
def test_grading_with_a_bundle_uses_its_seed_and_private_tests(course, capsys):
    assert main(["assign", "--solutions", str(course / "solutions"), "--exercises",
                 str(course / "exercises"), "--bundle", str(course / "instructor"),
                 "--seed", "20261127"]) == 0
    (course / "instructor" / "tests" / "pad.py").write_text(PRIVATE_TEST)
    capsys.readouterr()
    solution = course / "solutions" / "01_fcn.ipynb"
    assert main(["grade", str(solution), "--bundle", str(course / "instructor"),
                 "--json", str(course / "book.json")]) == 0
    out = capsys.readouterr().out
    total = read_bundle(course / "instructor").manifest["chapters"]["ch01"]["points"]["total"]
    assert f"score: {total + 3:g} / {total + 3:g}" in out  # the private case counts
    assert "13x7, multiple 5 (instructor)" in (course / "book.json").read_text()
    with pytest.raises(SystemExit):  # argparse: --seed is not for grading with a bundle
        main(["grade", str(solution), "--bundle", str(course / "instructor"), "--seed", "x"])
    assert main(["grade", str(solution), "--bundle", str(course / "instructor"),
                 "--seed", "3"]) == 2


def test_private_tests_count_in_their_grading_run_only(course):
    (course / "private.py").write_text(PRIVATE_TEST)
    solution = course / "solutions" / "01_fcn.ipynb"
    public = [ex.id for ex in exercises_for("ch01")]
    graded = grade_notebook(solution, extra_exercises=[course / "private.py"])
    assert [ex.id for ex in graded.exercises] == [*public, "ch01.instructor_pad"]
    assert graded.status == "ok" and graded.score == graded.max_score, graded.format()
    checked = check_notebook(solution)  # the same chapter, without the private tests
    assert [ex.id for ex in checked.exercises] == public
    assert [ex.id for ex in exercises_for("ch01")] == public
    with pytest.raises(ValueError, match="unknown exercise"):
        get_exercise("ch01.instructor_pad")

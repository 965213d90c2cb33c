"""The instructor bundle: what grading needs and students must not see, kept outside the
student-facing tree.

``segedu assign --bundle DIR [--seed S]`` writes, next to the usual ``exercises/``:

* ``DIR/manifest.json`` — every chapter's exercises and cases, with points and visibility
  (public or hidden), the totals, the **grading seed**, the segedu version, and the SHA-256 of
  each solution and exercise notebook it was made from;
* ``DIR/tests/`` — the instructor's private tests: ``.py`` files that register more cases or
  exercises (``docs/instructor.md``, section 5); the bundle starts with a README there;
* ``DIR/README.md`` — how to grade with it.

``segedu grade SUBMISSIONS --bundle DIR`` grades with the bundle's seed and private tests,
after checking that the installed segedu still has the exercises, cases and points the bundle
recorded (otherwise scores would silently change between two graders).

**Why a seed.** The cases of ``segedu/grading/content/chNN.py`` — hidden ones too — ship with the
package, so a student can read them and could hand in answers memorised for those exact
inputs. Every case draws its random inputs through :func:`~segedu.grading.case_generator`,
which mixes in the grading seed: under the bundle's secret seed the graded inputs are new
draws of the same shapes and sizes, which nobody can precompute. ``segedu.check`` and
``pytest --nbval exercises/...`` use seed 0, the inputs in the source. Cases whose inputs are
not random (a size such as 127) stay as they are; put truly private cases in ``DIR/tests``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .exercise import Exercise
from .notebook import chapter_of, exercise_ids, load_notebook
from .registry import exercises_for

__all__ = ["Bundle", "write_bundle", "read_bundle", "manifest_for", "bundle_mismatches"]

MANIFEST = "manifest.json"
FORMAT = 1

_TESTS_README = """\
# Private tests

Python files here run in the grader and in each submission's process before the student's
code, which cannot open them. Register extra cases or exercises, for example:

```python
import torch
from segedu.fcn import pad_to_multiple
from segedu.grading import Case, Exercise, register, seeded_randn

register(Exercise(
    id="ch01.instructor_pad", function="pad_to_multiple", reference=pad_to_multiple,
    hint="Pad at the bottom and right only.",
    cases=[Case("13x7, multiple 5", lambda: (seeded_randn(1, 3, 13, 7, seed=5), 5),
                points=3, hidden=True)],
), replace=True)
```
"""


@dataclass
class Bundle:
    """A bundle read back by :func:`read_bundle`."""

    directory: Path
    seed: int
    manifest: dict[str, Any]

    @property
    def tests_dir(self) -> Path:
        return self.directory / "tests"

    def private_tests(self) -> list[Path]:
        """The ``.py`` files in ``tests/`` (what ``segedu grade --tests`` would be given)."""
        return sorted(self.tests_dir.glob("*.py")) if self.tests_dir.is_dir() else []


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _exercise_entry(ex: Exercise) -> dict[str, Any]:
    return {
        "id": ex.id,
        "function": ex.function,
        "cases": [{"name": c.name, "points": c.points, "hidden": c.hidden} for c in ex.cases],
    }


def manifest_for(solutions_dir: str | Path, exercises_dir: str | Path, seed: int) -> dict:
    """The manifest of the chapters in ``solutions_dir`` (see the module docstring)."""
    from ... import __version__

    solutions_dir, exercises_dir = Path(solutions_dir), Path(exercises_dir)
    chapters: dict[str, Any] = {}
    for source in sorted(solutions_dir.glob("*.ipynb")):
        chapter = chapter_of(source)
        if chapter is None:
            continue
        ids = set(exercise_ids(load_notebook(source)))
        exercises = [ex for ex in exercises_for(chapter) if ex.id in ids]
        cases = [c for ex in exercises for c in ex.cases]
        student = exercises_dir / source.name
        chapters[chapter] = {
            "solution": source.name,
            "solution_sha256": _sha256(source),
            "exercise_sha256": _sha256(student) if student.exists() else None,
            "points": {
                "public": sum(c.points for c in cases if not c.hidden),
                "hidden": sum(c.points for c in cases if c.hidden),
                "total": sum(c.points for c in cases),
            },
            "exercises": [_exercise_entry(ex) for ex in exercises],
        }
    if not chapters:
        raise ValueError(f"no solution notebooks (NN_name.ipynb) in {str(solutions_dir)!r}")
    return {"format": FORMAT, "segedu": __version__, "seed": seed, "chapters": chapters}


def _inside(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
    except ValueError:
        return False
    return True


def write_bundle(directory: str | Path, solutions_dir: str | Path = "solutions",
                 exercises_dir: str | Path = "exercises", *, seed: int | None = None) -> Bundle:
    """Write (or refresh) the instructor bundle in ``directory``; returns it.

    ``seed`` is the grading seed; by default a refreshed bundle keeps its seed and a new one
    draws a random one. Files the instructor put in ``tests/`` are kept.

    Raises:
        ValueError: ``directory`` is inside ``exercises_dir`` (students would get it) or
            inside ``solutions_dir``, is a non-empty folder that is not a bundle, or the seed
            is not a non-negative int.
    """
    directory = Path(directory)
    for tree, what in ((Path(exercises_dir), "the student notebooks"),
                       (Path(solutions_dir), "the solution notebooks")):
        if _inside(directory, tree):
            raise ValueError(f"the instructor bundle must live outside {what} ({tree}/); "
                             f"got {str(directory)!r}. Use a private folder, e.g. ../instructor")
    old_seed = None
    if directory.exists():
        if not directory.is_dir():
            raise ValueError(f"{str(directory)!r} is a file, not a folder for the bundle")
        if (directory / MANIFEST).exists():
            old_seed = read_bundle(directory).seed
        elif any(directory.iterdir()):
            raise ValueError(f"{str(directory)!r} is not empty and holds no {MANIFEST}; choose "
                             "an empty or new folder for the instructor bundle")
    if seed is None:
        seed = old_seed if old_seed is not None else 1 + secrets.randbelow(2**31 - 1)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"the grading seed must be a non-negative int, got {seed!r}")
    manifest = manifest_for(solutions_dir, exercises_dir, seed)
    (directory / "tests").mkdir(parents=True, exist_ok=True)
    readme = directory / "tests" / "README.md"
    if not readme.exists():
        readme.write_text(_TESTS_README, encoding="utf-8")
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    totals = ", ".join(f"{ch} {info['points']['total']:g} points"
                       for ch, info in manifest["chapters"].items())
    (directory / "README.md").write_text(
        "# Instructor bundle (do not hand out)\n\n"
        f"Made by segedu {manifest['segedu']} for: {totals}.\n\n"
        "Grade with it:\n\n"
        f"    segedu grade SUBMISSIONS --bundle {directory} --csv grades.csv\n\n"
        "It grades with this bundle's secret seed (`manifest.json`) and the private tests in "
        "`tests/`. Keep this folder away from students: with the seed, the graded inputs "
        "could be computed in advance. See docs/instructor.md.\n", encoding="utf-8")
    return Bundle(directory, seed, manifest)


def read_bundle(directory: str | Path) -> Bundle:
    """Read the bundle in ``directory``; ``ValueError`` saying what is wrong otherwise."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise ValueError(f"{str(directory)!r} is not an instructor bundle (no {MANIFEST}); "
                         "make one with `segedu assign --bundle DIR`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from err
    seed = manifest.get("seed") if isinstance(manifest, dict) else None
    if manifest.get("format") != FORMAT or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"{path} is not a segedu bundle manifest (format {FORMAT}, a "
                         "non-negative int seed); make it again with `segedu assign --bundle`")
    return Bundle(directory, seed, manifest)


def bundle_mismatches(bundle: Bundle) -> list[str]:
    """How the installed segedu's exercises differ from what the bundle recorded (empty: same).

    It compares the package's exercises: the bundle's private tests, which a grading run
    loads into its own registry, never change them.
    """
    problems = []
    for chapter, info in bundle.manifest["chapters"].items():
        recorded = {ex["id"]: ex for ex in info["exercises"]}
        installed = {ex.id: _exercise_entry(ex) for ex in exercises_for(chapter)}
        for ex_id, entry in recorded.items():
            if ex_id not in installed:
                problems.append(f"{ex_id} is gone")
            elif installed[ex_id]["cases"] != entry["cases"]:
                problems.append(f"{ex_id}: cases or points changed")
    return problems

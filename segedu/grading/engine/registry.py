"""Which exercises exist: the package's chapters, and what one grading run adds to them.

* The **package registry** (:data:`package_registry`) holds the exercises of the chapter
  modules ``segedu/grading/content/chNN.py``. Each lists its exercises in ``EXERCISES``; the
  registry imports a chapter module, by name, the first time one of its ids (or the chapter)
  is asked for. So the engine never imports the content, a new chapter needs no edit here,
  and grading chapter 1 does not import chapter 5's networks.
* A **run registry** (:func:`run_registry`) is what one grading run sees: the package's
  exercises plus those the instructor's test files register (private hidden cases, an
  exercise replaced to add cases). They live in that registry alone and go with it when the
  run ends: the next run, a later ``segedu check`` or another submission graded at the same
  time never sees them.

The module-level functions (:func:`register`, :func:`get_exercise`, :func:`exercises_for`,
...) act on the *active* registry: the package registry, unless a block made another one
active with :meth:`ExerciseRegistry.active` (per thread, so each of a batch's threads has
its own). An instructor's test file calls :func:`register`; :meth:`ExerciseRegistry.load`
runs it with its own registry active, so that the call lands there.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import re
import runpy
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from .exercise import Exercise

__all__ = [
    "ExerciseRegistry",
    "package_registry",
    "run_registry",
    "active_registry",
    "instructor_test_files",
    "register",
    "unregister",
    "get_exercise",
    "exercises_for",
    "all_exercises",
]

#: Where the chapter modules live (imported by name: the engine never imports the content).
CONTENT_PACKAGE = "segedu.grading.content"


def _chapter_of(exercise_id_or_prefix: str) -> str | None:
    """``"ch01"`` for ``"ch01.name"``, ``"ch01."`` and ``"ch01"``; None otherwise."""
    match = re.match(r"(ch\d{2})(\.|$)", exercise_id_or_prefix)
    return match.group(1) if match else None


class ExerciseRegistry:
    """Exercises by id, in the order they were registered.

    Args:
        base: a registry whose exercises this one also holds: looked up when this one has
            no exercise of that id, replaced (in their place) by one registered here with
            ``replace=True``, and never changed by this one.
    """

    def __init__(self, base: ExerciseRegistry | None = None) -> None:
        self.base = base
        self.files: tuple[str, ...] = ()  # the test files loaded into it
        self._own: dict[str, Exercise] = {}

    def _prepare(self, chapter: str | None) -> None:
        """Make sure the exercises of ``chapter`` (of every chapter when None) are known."""
        if self.base is not None:
            self.base._prepare(chapter)

    def _known(self) -> dict[str, Exercise]:
        known = self.base._known() if self.base is not None else {}
        known.update(self._own)  # a replaced exercise keeps its place; new ones come last
        return known

    def register(self, exercise: Exercise, *, replace: bool = False) -> Exercise:
        """Add ``exercise`` (``replace=True`` to overwrite an exercise of the same id)."""
        self._prepare(exercise.chapter)
        existing = self._known().get(exercise.id)
        if existing is not None and existing is not exercise and not replace:
            raise ValueError(f"exercise {exercise.id!r} is already registered")
        self._own[exercise.id] = exercise
        return exercise

    def unregister(self, exercise_id: str) -> None:
        """Remove an exercise registered here; unknown ids are ignored."""
        self._own.pop(exercise_id, None)

    def get(self, exercise_id: str) -> Exercise:
        """The exercise ``exercise_id``; ``ValueError`` listing the known ids if unknown."""
        self._prepare(_chapter_of(exercise_id))
        exercise = self._known().get(exercise_id)
        if exercise is None:
            known = ", ".join(sorted(self.all())) or "none"
            raise ValueError(f"unknown exercise {exercise_id!r}; known exercises: {known}")
        return exercise

    def exercises_for(self, prefix: str) -> list[Exercise]:
        """The exercises whose id starts with ``prefix`` (``"ch01"`` or ``"ch01."``), in
        registration order (the order of the chapter)."""
        if re.fullmatch(r"ch\d{2}", prefix):
            prefix += "."
        self._prepare(_chapter_of(prefix))
        return [ex for ex_id, ex in self._known().items() if ex_id.startswith(prefix)]

    def all(self) -> dict[str, Exercise]:
        """Every exercise, by id (every chapter imported)."""
        self._prepare(None)
        return self._known()

    def load(self, files: Iterable[str]) -> ExerciseRegistry:
        """Run the instructor's test ``files`` with this registry active, so that the
        exercises they :func:`register` land here; returns ``self``."""
        files = tuple(files)
        with self.active():
            for path in files:
                runpy.run_path(path)
        self.files += files
        return self

    @contextmanager
    def active(self) -> Iterator[ExerciseRegistry]:
        """``with registry.active():`` — the module-level functions use this registry in the
        block (in this thread), and the one active before afterwards."""
        token = _active.set(self)
        try:
            yield self
        finally:
            _active.reset(token)


class _ChapterRegistry(ExerciseRegistry):
    """The package's exercises, imported a chapter module at a time from ``package``."""

    def __init__(self, package: str) -> None:
        super().__init__()
        self.package = package
        self._imported: set[str] = set()
        self._lock = threading.RLock()  # a batch's threads may ask for a chapter together

    def chapters(self) -> list[str]:
        """``["ch01", "ch02", ...]``: the chapter modules of the package."""
        spec = importlib.util.find_spec(self.package)
        return sorted(m.name for m in pkgutil.iter_modules(spec.submodule_search_locations)
                      if re.fullmatch(r"ch\d{2}", m.name))

    def _prepare(self, chapter: str | None) -> None:
        with self._lock:
            for name in self.chapters() if chapter is None else [chapter]:
                if name not in self._imported:
                    self._import(name)
                    self._imported.add(name)

    def _import(self, chapter: str) -> None:
        name = f"{self.package}.{chapter}"
        if importlib.util.find_spec(name) is None:
            return
        for exercise in importlib.import_module(name).EXERCISES:
            if exercise.chapter != chapter:
                raise ValueError(f"{name} lists {exercise.id!r}, an exercise of another chapter")
            self._own[exercise.id] = exercise


#: The exercises of the package's chapter modules.
package_registry: ExerciseRegistry = _ChapterRegistry(CONTENT_PACKAGE)
_active: ContextVar[ExerciseRegistry] = ContextVar("segedu_exercises", default=package_registry)


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


def run_registry(tests: Sequence[str | os.PathLike] = ()) -> ExerciseRegistry:
    """The exercises one grading run sees: the package's, plus those registered by the
    instructor's ``tests`` (files or folders, see :func:`instructor_test_files`)."""
    return ExerciseRegistry(base=package_registry).load(instructor_test_files(tests))


def active_registry() -> ExerciseRegistry:
    """The registry the module-level functions act on now."""
    return _active.get()


def register(exercise: Exercise, *, replace: bool = False) -> Exercise:
    """Add ``exercise`` to the active registry (``replace=True`` to overwrite an existing id)."""
    return active_registry().register(exercise, replace=replace)


def unregister(exercise_id: str) -> None:
    """Remove an exercise registered in the active registry (for tests); unknown ids are
    ignored."""
    active_registry().unregister(exercise_id)


def get_exercise(exercise_id: str) -> Exercise:
    """The exercise ``exercise_id``; ``ValueError`` listing the known ids if unknown."""
    return active_registry().get(exercise_id)


def exercises_for(prefix: str) -> list[Exercise]:
    """Exercises whose id starts with ``prefix`` (``"ch01"`` or ``"ch01."``), in
    registration order (the order of the chapter)."""
    return active_registry().exercises_for(prefix)


def all_exercises() -> list[Exercise]:
    """Every exercise of the active registry (every chapter imported)."""
    return list(active_registry().all().values())

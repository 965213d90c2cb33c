"""What crosses the boundary between the grader (the parent) and the process that runs a
submission (the child): read this module to know all of it.

* :class:`ChildRequest` — what the parent asks for: the notebook, the exercises to compute,
  the instructor's test files, the limits, what the submission may not open, the seed. It
  writes itself as the child's command line (:meth:`~ChildRequest.command`) and parses itself
  back in the child (:meth:`~ChildRequest.parse`), so the two sides cannot disagree on an
  option.
* :class:`ChildFiles` — the files the child leaves in its working directory, all named after
  the result file ``RESULT_PATH`` (the command line's second argument):

  ======================  ==============================================================
  ``RESULT_PATH``         the :class:`ChildResult`, saved after every exercise (written to
                          ``RESULT_PATH.tmp``, then renamed over it)
  ``RESULT_PATH.current`` ``[exercise_id, case_name]`` of the case being run (JSON), so the
                          parent can name the case a crash or a timeout interrupted
  ``RESULT_PATH.refused`` a line per operation the confinement refused, appended at once,
                          so the parent learns of it even when the child then dies
  ``output.log``          the child's stdout and stderr (the parent redirects them there)
  ``scratch/``            the child's ``TMPDIR``
  ======================  ==============================================================

  Anything else in the folder was written by the submission (:meth:`ChildFiles.strays`).
* :class:`ChildResult` — what the result file holds: plain data only (tensors, numbers,
  strings, lists, dicts), which the parent reads with ``torch.load(weights_only=True)``.

The child computes, the parent judges: nothing in these files can award points. A
submission that takes the child over can forge all of them, so the parent reads each
defensively and uses it to explain a score, never to raise one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["CHILD_MODULE", "ChildRequest", "ChildFiles", "ChildResult"]

#: The module the parent runs with ``python -m``.
CHILD_MODULE = "segedu.grading.engine.child"
#: The version of the result file's layout.
FORMAT = 1

_save = torch.save  # bound now: a submission that replaces torch.save harms only itself


@dataclass(frozen=True)
class ChildRequest:
    """What the parent asks the child to do.

    Args:
        notebook: the submission's path.
        expect: the exercise ids to compute (empty: those of the notebook's answer cells).
        public_only: run public cases only (``segedu check``).
        case_timeout: seconds one case may run (None: no limit).
        memory_mb: address space the submission may allocate beyond what the child uses
            once it has imported torch, in MiB (None: no limit).
        exercise_files: the instructor's Python files that register more exercises.
        protect: files and folders the submission may not open.
        seed: seeds torch, ``random`` and NumPy before every case, and the case inputs.
        confine: False only to debug the grader (``--no-confine``).
    """

    notebook: str
    expect: tuple[str, ...] = ()
    public_only: bool = False
    case_timeout: float | None = None
    memory_mb: int | None = None
    exercise_files: tuple[str, ...] = ()
    protect: tuple[str, ...] = ()
    seed: int = 0
    confine: bool = True

    def command(self, files: ChildFiles) -> list[str]:
        """``python -m segedu.grading.engine.child NOTEBOOK RESULT_PATH [options]``."""
        cmd = [sys.executable, "-m", CHILD_MODULE, self.notebook, str(files.result),
               "--seed", str(int(self.seed))]
        if self.expect:
            cmd += ["--expect", ",".join(self.expect)]
        if self.public_only:
            cmd.append("--public-only")
        if self.case_timeout:
            cmd += ["--case-timeout", str(self.case_timeout)]
        if self.memory_mb:
            cmd += ["--memory-mb", str(int(self.memory_mb))]
        for path in self.exercise_files:
            cmd += ["--exercises-file", path]
        for path in self.protect:
            cmd += ["--protect", path]
        if not self.confine:
            cmd.append("--no-confine")
        return cmd

    @classmethod
    def parse(cls, argv: Sequence[str] | None = None) -> tuple[ChildRequest, ChildFiles]:
        """Read the child's command line (``sys.argv[1:]`` by default)."""
        args = _parser().parse_args(argv)
        request = cls(
            notebook=args.notebook,
            expect=tuple(i for i in args.expect.split(",") if i),
            public_only=args.public_only,
            case_timeout=args.case_timeout,
            memory_mb=args.memory_mb,
            exercise_files=tuple(args.exercises_file),
            protect=tuple(args.protect),
            seed=args.seed,
            confine=not args.no_confine,
        )
        return request, ChildFiles(args.result_path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {CHILD_MODULE}",
        description="Run a student's notebook and record what its functions return.")
    parser.add_argument("notebook")
    parser.add_argument("result_path")
    parser.add_argument("--public-only", action="store_true",
                        help="run public cases only (local checks)")
    parser.add_argument("--expect", default="",
                        help="comma-separated exercise ids to compute "
                             "(default: the answer cells' ids)")
    parser.add_argument("--exercises-file", action="append", default=[],
                        help="a Python file that registers more exercises (repeatable)")
    parser.add_argument("--case-timeout", type=float, default=None,
                        help="seconds one case may run")
    parser.add_argument("--memory-mb", type=int, default=None,
                        help="extra address space the student's code may use, in MiB")
    parser.add_argument("--protect", action="append", default=[],
                        help="a file or folder the submission may not open (repeatable)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for torch, random and NumPy before every case (0)")
    parser.add_argument("--no-confine", action="store_true",
                        help="do not confine the submission (debugging the grader only)")
    return parser


@dataclass
class ChildResult:
    """The child's account of a run, saved as the result file.

    Attributes:
        complete: every expected exercise was computed (the child's last save).
        notebook_error: why the notebook could not be read, else None.
        cell_errors: a dict per setup or answer cell that raised:
            ``{"cell": int, "kind": "setup" | "answer", "exercise": str, "error": str}``.
        flags: what the submission tried that the child refused or noticed.
        results: ``{exercise_id: {case_name: {"ok_run": bool, "value": data | None,
            "error": str | None}}}``.
    """

    complete: bool = False
    notebook_error: str | None = None
    cell_errors: list[dict[str, Any]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        return {"format": FORMAT, "complete": self.complete,
                "notebook_error": self.notebook_error, "cell_errors": self.cell_errors,
                "flags": self.flags, "results": self.results}

    @classmethod
    def from_data(cls, data: Any) -> ChildResult:
        """Read back what :meth:`to_data` wrote, keeping only entries of the right types
        (the file may be forged); ``TypeError`` when ``data`` is not a dict."""
        if not isinstance(data, dict):
            raise TypeError(f"a result is a dict, not a {type(data).__name__}")
        results, cell_errors, flags = (data.get(key) for key in
                                       ("results", "cell_errors", "flags"))
        return cls(
            complete=data.get("complete") is True,
            notebook_error=str(data["notebook_error"]) if data.get("notebook_error") else None,
            cell_errors=[e for e in cell_errors if isinstance(e, dict)]
            if isinstance(cell_errors, list) else [],
            flags=[str(f) for f in flags[:30]] if isinstance(flags, list) else [],
            results=results if isinstance(results, dict) else {},
        )

    def record(self, exercise_id: str, case_name: str) -> Any:
        """The record of one case (None when there is none); not checked: judge it."""
        cases = self.results.get(exercise_id)
        return cases.get(case_name) if isinstance(cases, dict) else None

    def covers(self, exercise_ids: Iterable[str]) -> bool:
        """Whether it holds the cases of every one of ``exercise_ids``."""
        return all(isinstance(self.results.get(i), dict) for i in exercise_ids)


class ChildFiles:
    """The child's result file and the side files named after it (see the module docstring).

    The child writes them (:meth:`save`, :meth:`mark_current`); the parent reads them back
    (:meth:`read`, :meth:`running`, :meth:`refusals`, :meth:`strays`).
    """

    RESULT = "result.pt"
    LOG = "output.log"
    SCRATCH = "scratch"

    def __init__(self, result: str | os.PathLike) -> None:
        self.result = Path(result)
        self.workdir = self.result.parent

    @classmethod
    def in_folder(cls, workdir: str | os.PathLike) -> ChildFiles:
        """The files of a child working in ``workdir``."""
        return cls(Path(workdir) / cls.RESULT)

    def _beside(self, suffix: str) -> Path:
        return self.result.with_name(self.result.name + suffix)

    @property
    def partial(self) -> Path:
        """Where :meth:`save` writes before renaming over the result."""
        return self._beside(".tmp")

    @property
    def current(self) -> Path:
        return self._beside(".current")

    @property
    def refused(self) -> Path:
        return self._beside(".refused")

    @property
    def log(self) -> Path:
        return self.workdir / self.LOG

    @property
    def scratch(self) -> Path:
        return self.workdir / self.SCRATCH

    # ------------------------------------------------------------------ the child writes

    def save(self, result: ChildResult) -> None:
        """Save ``result`` so that the parent never reads a half-written file."""
        with open(self.partial, "wb") as f:
            _save(result.to_data(), f)
        os.replace(self.partial, self.result)

    def mark_current(self, exercise_id: str, case_name: str) -> None:
        """Note which case is running, so the parent can say which one crashed or hung."""
        self.current.write_text(json.dumps([exercise_id, case_name]), encoding="utf-8")

    # ------------------------------------------------------------------ the parent reads

    def read(self) -> ChildResult | None:
        """The result the child saved last; None when there is none.

        Raises:
            ValueError: the file holds no result (the submission wrote it).
        """
        if not self.result.exists():
            return None
        try:
            return ChildResult.from_data(torch.load(self.result, weights_only=True))
        except Exception as error:
            raise ValueError(f"unreadable result file: {error}") from None

    def running(self) -> Any:
        """``[exercise_id, case_name]`` of the last case started (None if unknown)."""
        try:
            return json.loads(self.current.read_text(encoding="utf-8")[:10_000])
        except (OSError, ValueError):
            return None

    def refusals(self, limit: int = 20) -> list[str]:
        """What the confinement refused, one line each (at most ``limit``)."""
        if not self.refused.is_file():
            return []
        with open(self.refused, encoding="utf-8", errors="replace") as f:
            return [line for line in f.read(20_000).splitlines()[:limit] if line.strip()]

    def strays(self) -> list[str]:
        """Names of the files in the working directory that the protocol does not know."""
        ours = {self.result.name, self.partial.name, self.current.name, self.refused.name,
                self.LOG, self.SCRATCH}
        return sorted(p.name for p in self.workdir.iterdir() if p.name not in ours)

"""Starting the child and ending it: the parent's side of the sandbox.

:func:`launch` runs ``python -m segedu.grading.engine.child`` under the operating system's
isolation (:func:`~segedu.grading.engine.isolation.run_isolated`): in a fresh, size-capped
folder holding only the files of the protocol (:mod:`~segedu.grading.engine.protocol`), with
the stubbed copy of the package (:mod:`~segedu.grading.engine.stubs`) read-only on its path,
an environment built from nothing (it grades on the CPU), resource limits, and every process
of the run killed at the end. :func:`protected_paths` says what the confinement, the second
layer inside the child, refuses to open where the isolation level shows the child the host's
file system.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .isolation import IsolatedRun, Isolation, Limits, run_isolated
from .protocol import ChildRequest
from .stubs import PACKAGE_DIR

__all__ = ["launch", "protected_paths", "CHILD_ENV"]

_CHECKOUT = PACKAGE_DIR.parent  # the folder holding segedu/ (a source checkout's root)

#: The child's environment, besides the isolation's fixed minimum: nothing of the grader's.
CHILD_ENV = {"MPLBACKEND": "Agg", "CUDA_VISIBLE_DEVICES": "", "SEGEDU_DEVICE": "cpu"}


def protected_paths(extra: Sequence[str | os.PathLike] = ()) -> list[str]:
    """What a submission may not open: the course's ``solutions/`` (next to the package in
    a source checkout, or in the current folder) and ``extra``."""
    paths = [str(Path(p).resolve()) for p in extra]
    for folder in (_CHECKOUT / "solutions", Path.cwd() / "solutions"):
        if folder.is_dir() and any(folder.glob("*.ipynb")):
            paths.append(str(folder.resolve()))
    return list(dict.fromkeys(paths))


def launch(inputs: Mapping[str, bytes], *, isolation: Isolation, package: Path,
           timeout: float, memory_mb: int | None) -> IsolatedRun:
    """Run the child on ``inputs`` (the protocol's files, by name) for at most ``timeout``
    seconds, importing the package folder ``package``."""
    limits = Limits(wall_seconds=timeout, cpu_seconds=int(timeout) + 5,
                    memory_bytes=None if memory_mb is None else (memory_mb << 20) + (6 << 30),
                    disk_bytes=512 << 20, read_file_bytes=64 << 20)
    return run_isolated(ChildRequest.command(), isolation=isolation, limits=limits,
                        inputs=inputs, packages=[package], env=CHILD_ENV)

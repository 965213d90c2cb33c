"""Running untrusted code at a given isolation level: :func:`run_isolated` and what it
returns, :class:`IsolatedRun`."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .bwrap import run_bwrap
from .levels import Isolation
from .plain import run_none, run_user
from .processes import DEFAULT_LIMITS, Limits, become_subreaper

__all__ = ["IsolatedRun", "run_isolated"]


@dataclass(frozen=True)
class IsolatedRun:
    """What a run did. ``returncode`` is None on timeout and negative for a signal;
    ``files`` are the regular files left in the child's folder (relative paths);
    ``rejected`` the other entries, with the reason they were not read."""

    isolation: Isolation
    returncode: int | None
    timed_out: bool
    stdout: bytes
    stderr: bytes
    files: dict[str, bytes] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def killed_by(self) -> str | None:
        """``"SIGKILL"`` etc. when a signal ended the child (a timeout included)."""
        if self.timed_out:
            return "SIGKILL"
        if self.returncode is not None and self.returncode < 0:
            try:
                return signal.Signals(-self.returncode).name
            except ValueError:
                return f"signal {-self.returncode}"
        return None

    def summary(self) -> str:
        """One line for the screen: how it ended, and under which isolation."""
        if self.timed_out:
            end = "timed out (killed)"
        elif self.killed_by:
            end = f"killed by {self.killed_by}"
        else:
            end = f"exit code {self.returncode}"
        return f"{end} after {self.seconds:.1f} s under {self.isolation.level} isolation"


def _tail(f, limit: int) -> bytes:
    size = os.fstat(f.fileno()).st_size
    f.seek(max(0, size - limit))
    return f.read(limit)


def run_isolated(
    argv: Sequence[str],
    *,
    isolation: Isolation,
    limits: Limits = DEFAULT_LIMITS,
    inputs: Mapping[str, bytes] | None = None,
    ro_binds: Mapping[str, str | os.PathLike] | None = None,
    packages: Iterable[str | os.PathLike] = (),
    env: Mapping[str, str] | None = None,
    tmp_root: str | os.PathLike | None = None,
) -> IsolatedRun:
    """Run ``argv`` as untrusted code and return what it did (see the module docstring).

    Args:
        argv: the command; ``argv[0]`` as seen inside the sandbox (``sys.executable`` is,
            since the interpreter's folders are bound at their own paths).
        isolation: from :func:`detect_isolation`.
        limits: resource limits.
        inputs: files to put in the child's folder first (relative path -> content).
        ro_binds: more host paths the child may read: sandbox path -> host path
            (bubblewrap only; the other levels see the host's file system anyway).
        packages: Python package folders (such as ``segedu/``) the child may import: each is
            bound read-only at ``CHILD_PACKAGES/<name>`` and that folder is put on
            ``PYTHONPATH`` — only the package, not the checkout around it.
        env: variables added to the fixed minimal environment :data:`BASE_ENV` (the
            grader's own environment is never passed on).
        tmp_root: where the grader's private temporary folder goes (default: tempfile's).
    """
    if not argv:
        raise ValueError("argv is empty")
    runner = {"bubblewrap": run_bwrap, "user": run_user, "none": run_none}[isolation.level]
    become_subreaper()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="segedu-isolated-", dir=tmp_root) as private:
        os.chmod(private, 0o711)  # the child (another uid) may enter, not list
        with open(os.path.join(private, "stdout"), "w+b") as out, \
                open(os.path.join(private, "stderr"), "w+b") as err:
            returncode, timed_out, files, rejected = runner(
                list(argv), isolation, limits, dict(inputs or {}), dict(ro_binds or {}),
                [Path(p) for p in packages], env, private, out, err)
            stdout = _tail(out, limits.output_tail_bytes)
            stderr = _tail(err, limits.output_tail_bytes)
    return IsolatedRun(isolation, returncode, timed_out, stdout, stderr, files, rejected,
                       time.monotonic() - start)

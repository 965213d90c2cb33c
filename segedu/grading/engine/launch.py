"""Starting the child process and ending it: the parent's side of the sandbox.

:func:`launch` runs the child's command in its working directory, in a process group of its
own, with an environment that grades on the CPU and keeps the child's temporary files in
that directory; it waits at most ``timeout`` seconds and then kills the *whole group*, so
that nothing the submission started outlives it. :func:`protected_paths` says what the
submission may not open. What the child refuses from the inside is in
:mod:`~segedu.grading.engine.confine`.
"""

from __future__ import annotations

import os
import signal
import site
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .protocol import ChildFiles

__all__ = ["launch", "protected_paths"]

_PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the folder holding segedu/


def protected_paths(extra: Sequence[str | os.PathLike] = ()) -> list[str]:
    """What a submission may not open: the course's ``solutions/`` (next to the package in
    a source checkout, or in the current folder) and ``extra``."""
    paths = [str(Path(p).resolve()) for p in extra]
    for folder in (_PACKAGE_ROOT / "solutions", Path.cwd() / "solutions"):
        if folder.is_dir() and any(folder.glob("*.ipynb")):
            paths.append(str(folder.resolve()))
    return list(dict.fromkeys(paths))


def _child_env(files: ChildFiles) -> dict[str, str]:
    env = dict(os.environ)
    site_dirs = {str(Path(p).resolve()) for p in site.getsitepackages()}
    if str(_PACKAGE_ROOT) not in site_dirs:  # a source checkout: let the child import it too
        env["PYTHONPATH"] = os.pathsep.join(
            [str(_PACKAGE_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["MPLBACKEND"] = "Agg"
    env["CUDA_VISIBLE_DEVICES"] = ""  # graded on the CPU, like the reference values
    env["SEGEDU_DEVICE"] = "cpu"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # tempfile's files go inside the only place the child may write (caches such as
    # matplotlib's are only read)
    files.scratch.mkdir(exist_ok=True)
    env["TMPDIR"] = str(files.scratch)
    return env


def _wait_unreaped(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait for the child to exit *without reaping it*, so that its pid (the id of its
    process group) cannot be reused before the group is killed. False on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(2 * delay, 0.05)
    return True


def launch(cmd: list[str], files: ChildFiles, timeout: float) -> tuple[int | None, str]:
    """Run ``cmd`` in ``files.workdir`` in its own process group; kill the whole group when
    the child exits or times out.

    The child's output goes to ``files.log`` (not a pipe: a submission printing without end
    must not fill the grader's memory).

    Returns:
        (the exit code, None on timeout, negative for a signal; the last lines of the
        child's output).
    """
    kwargs: dict[str, Any] = {}
    group = os.name == "posix"
    if group:
        kwargs["start_new_session"] = True
    with open(files.log, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=files.workdir, env=_child_env(files),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                **kwargs)
        if group and hasattr(os, "waitid"):
            exited = _wait_unreaped(proc, timeout)
        else:
            try:
                proc.wait(timeout=timeout)
                exited = True
            except subprocess.TimeoutExpired:
                exited = False
        if group:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        elif not exited:
            proc.kill()
        code: int | None = proc.wait()
        if not exited:
            code = None
    return code, _tail(files.log)


def _tail(path: Path, lines: int = 15, width: int = 200) -> str:
    """The last ``lines`` lines of the file, each cut to ``width`` characters."""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 4096))
        text = f.read().decode("utf-8", errors="replace")
    return "\n".join(line[:width] for line in text.splitlines()[-lines:])

"""The ``"user"`` and ``"none"`` levels: the child on the host's file system, in a private
folder of its own.

* ``"user"`` — we are root but have no bubblewrap: the child runs as a fresh uid
  (:func:`~.processes.pick_uid`, no supplementary groups, umask 077). The kernel's
  permission checks keep it out of the grader's ``0600``/``0700`` files and stop it
  signalling the grader; it still sees every world-readable file, the network and the
  process list. At the end every process of that uid is killed.
* ``"none"`` — only when the instructor asks for it: a plain subprocess with the grader's
  own rights, in a process group of its own that is killed at the end.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
from pathlib import Path

from .files import collect, write_inputs
from .levels import IsolationUnavailable, child_env
from .processes import kill_uid, pick_uid, reap, rlimits, via_launcher, wait_for

__all__ = ["run_user", "run_none"]


def _private_workdir(private: str, owner: int | None) -> str:
    workdir = os.path.join(private, "work")
    os.mkdir(workdir, 0o700)
    os.mkdir(os.path.join(workdir, ".tmp"), 0o700)
    if owner is not None:
        os.chown(workdir, owner, owner)
        os.chown(os.path.join(workdir, ".tmp"), owner, owner)
    return workdir


def run_user(argv, isolation, limits, inputs, ro_binds, packages, env, private, out, err):
    return _run_plain(argv, limits, inputs, packages, env, private, out, err, pick_uid())


def run_none(argv, isolation, limits, inputs, ro_binds, packages, env, private, out, err):
    return _run_plain(argv, limits, inputs, packages, env, private, out, err, None)


def _run_plain(argv, limits, inputs, packages, env, private, out, err, uid):
    """The ``"user"`` level (``uid`` given) and the ``"none"`` level (``uid`` None): the
    child runs on the host's file system, in a private folder of its own."""
    workdir = _private_workdir(private, uid)
    pythonpath = [str(Path(p).resolve().parent) for p in packages]
    environment = child_env(env, workdir, list(dict.fromkeys(pythonpath)))
    environment["TMPDIR"] = os.path.join(workdir, ".tmp")
    limits_here = rlimits(limits, 0) if uid is not None else [
        r for r in rlimits(limits, 0) if r[0] != resource.RLIMIT_NPROC]
    work_fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        write_inputs(work_fd, inputs, owner=uid)
        status_r, status_w = os.pipe()
        try:  # the launcher (started with our rights) becomes ``uid``, then executes argv
            proc = subprocess.Popen(
                via_launcher(argv, limits_here, uid=uid, status_fd=status_w), cwd=workdir,
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=environment,
                pass_fds=[status_w], start_new_session=True)
            os.close(status_w)
            status_w = None
            failed = os.read(status_r, 4096).decode("utf-8", "replace")
        finally:
            for fd in (status_r, status_w):
                if fd is not None:
                    os.close(fd)
        if failed:
            proc.wait()
            number, _, why = failed.partition(":")
            if uid is None or int(number) not in (errno.EACCES, errno.EPERM):
                raise OSError(int(number), why, argv[0])
            raise IsolationUnavailable(
                f"the run's user (uid {uid}) cannot start {argv[0]!r} ({why}): at "
                "the 'user' level the interpreter and its packages must be readable by other "
                "users (not under /root, as pyenv installs it). Install bubblewrap, which "
                "binds them without that, or install Python system-wide.")
        exited = wait_for(proc, limits.wall_seconds)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        code = proc.wait()
        if uid is not None:
            kill_uid(uid)
            reap(uid=uid)
        files, rejected = collect(work_fd, limits)
        files = {k: v for k, v in files.items() if not k.startswith(".tmp/")}
        rejected = {k: v for k, v in rejected.items() if not k.startswith(".tmp/")}
        return (code if exited else None), not exited, files, rejected
    finally:
        os.close(work_fd)
        if uid is not None:
            kill_uid(uid)

"""Isolation levels: which one this machine offers, and what each guarantees.

:func:`detect_isolation` picks the strongest level available (:data:`LEVELS`, strongest
first); :func:`choose_isolation` takes the instructor's explicit choice and checks that it is
available. Each :class:`Isolation` carries one line saying what it guarantees
(:data:`DESCRIPTIONS`), which the grader prints on every run. This module also fixes what
every level shows the child of its environment: :data:`BASE_ENV`, built from nothing, and
the child's folder :data:`CHILD_HOME`.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from .processes import pick_uid

__all__ = ["LEVELS", "CHILD_HOME", "CHILD_PACKAGES", "CHILD_UID", "BASE_ENV", "DESCRIPTIONS",
           "Isolation", "IsolationUnavailable", "detect_isolation", "choose_isolation",
           "bwrap_flags", "child_env"]

LEVELS = ("bubblewrap", "user", "none")
CHILD_HOME = "/work"            # the child's writable folder, its HOME and working directory
CHILD_PACKAGES = "/opt/isolated/python"  # where ``packages`` are bound (on PYTHONPATH)
CHILD_UID = 1000                # the child's uid and gid inside the bubblewrap sandbox
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONNOUSERSITE": "1",
    "PYTHONHASHSEED": "0",
}


class IsolationUnavailable(RuntimeError):
    """No isolation level the caller accepts is available on this machine."""


@dataclass(frozen=True)
class Isolation:
    """How a child is isolated: ``level`` is one of :data:`LEVELS`; ``description`` says in
    one line what it guarantees (print it: the instructor should see it on every run)."""

    level: str
    description: str
    bwrap: str | None = None

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"isolation level must be one of {LEVELS}, not {self.level!r}")

    def __str__(self) -> str:
        return f"isolation: {self.level} — {self.description}"


DESCRIPTIONS = {
    "bubblewrap": ("bubblewrap: own user, mount, PID, network, IPC and UTS namespaces as an "
                   "unprivileged uid; sees only the interpreter, system libraries and the "
                   "paths bound read-only; writes only its size-capped /work, /tmp, /dev/shm; "
                   "no network; resource limits; every process killed at the end"),
    "user": ("separate unprivileged user: cannot read the grader's private files or signal "
             "its processes; resource limits; every process of that user killed at the "
             "end. NOT isolated: it sees all world-readable files, the network and the "
             "process list, and its folder has no total size cap"),
    "none": ("NO isolation (allowed by the instructor): the child has the grader's own "
             "rights over files, network and processes; only resource limits and a "
             "process-group kill at the end"),
}



def bwrap_flags() -> list[str]:
    return ["--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--new-session",
            "--uid", str(CHILD_UID), "--gid", str(CHILD_UID), "--hostname", "sandbox"]


@functools.cache
def _bubblewrap_works(bwrap: str) -> bool:
    """Whether ``bwrap`` can build the sandbox :func:`run_isolated` builds (probed once)."""
    probe = [bwrap, *bwrap_flags(), "--ro-bind", "/", "/", "--proc", "/proc",
             "--dev", "/dev", "--size", str(1 << 20), "--tmpfs", CHILD_HOME, "true"]
    uid = pick_uid() if os.geteuid() == 0 else None
    try:
        done = subprocess.run(probe, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=30, env=dict(BASE_ENV),
                              user=uid, group=uid, extra_groups=[] if uid else None)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def detect_isolation(allow_none: bool = False) -> Isolation:
    """The strongest isolation available: bubblewrap, else a separate user (as root), else
    :class:`IsolationUnavailable` — or, with ``allow_none`` (the instructor's explicit
    choice), a plain subprocess."""
    bwrap = shutil.which("bwrap")
    if bwrap is not None and _bubblewrap_works(bwrap):
        return Isolation("bubblewrap", DESCRIPTIONS["bubblewrap"], bwrap)
    if os.geteuid() == 0:
        return Isolation("user", DESCRIPTIONS["user"])
    if allow_none:
        return Isolation("none", DESCRIPTIONS["none"])
    why = ("`bwrap` is not installed" if bwrap is None else
           f"`{bwrap}` cannot create a sandbox here (are unprivileged user namespaces "
           "disabled? see sysctl kernel.unprivileged_userns_clone / user.max_user_namespaces)")
    raise IsolationUnavailable(
        f"cannot isolate the submissions: {why}, and the grader is not running as root (so "
        "it cannot run them as a separate user). Install bubblewrap (Debian/Ubuntu: apt-get "
        "install bubblewrap), or run the grader as root, or accept running student code "
        "with your own rights by passing allow_none=True (--no-isolation).")


def child_env(env: Mapping[str, str] | None, home: str, pythonpath: list[str]) -> dict:
    result = dict(BASE_ENV, HOME=home, TMPDIR="/tmp")
    if pythonpath:
        result["PYTHONPATH"] = os.pathsep.join(pythonpath)
    for key, value in (env or {}).items():
        if not isinstance(key, str) or not isinstance(value, str) or "=" in key:
            raise ValueError(f"environment entries must be str=str, not {key!r}={value!r}")
        result[key] = value
    return result


def choose_isolation(level: str = "auto", allow_none: bool = False) -> Isolation:
    """The isolation level the instructor names (``"auto"``: :func:`detect_isolation`),
    checked to be available here; :class:`IsolationUnavailable` says why it is not.

    Naming ``"user"`` where bubblewrap also works is how to test the level Gradescope's
    containers fall back to."""
    if level == "auto":
        return detect_isolation(allow_none)
    if level not in LEVELS:
        raise ValueError(f"isolation level must be 'auto' or one of {LEVELS}, not {level!r}")
    if level == "bubblewrap":
        bwrap = shutil.which("bwrap")
        if bwrap is None or not _bubblewrap_works(bwrap):
            raise IsolationUnavailable(
                "the 'bubblewrap' level was asked for, but `bwrap` is "
                + ("not installed (apt-get install bubblewrap)" if bwrap is None else
                   "unable to create a sandbox here (are user namespaces disabled?)"))
        return Isolation("bubblewrap", DESCRIPTIONS["bubblewrap"], bwrap)
    if level == "user" and os.geteuid() != 0:
        raise IsolationUnavailable("the 'user' level was asked for, but it runs each "
                                   "submission as a fresh uid, which needs the grader to "
                                   "run as root")
    if level == "none" and not allow_none:
        raise IsolationUnavailable("the 'none' level runs the submissions with your own "
                                   "rights: pass allow_none=True (--allow-unisolated) too")
    return Isolation(level, DESCRIPTIONS[level])

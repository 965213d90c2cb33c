"""Resource limits, and the processes of a run: starting them limited, finding them, killing
and reaping them.

* :class:`Limits` are what every level applies: ``setrlimit`` in the child before it starts
  (address space, CPU seconds, processes, file size, open files, no core files), the
  wall-clock timeout and the size caps of the writable folders. :func:`via_launcher` wraps a
  command in :mod:`~segedu.grading.engine.sandbox_exec`, which applies them (and becomes
  another uid) in the new process before it executes the command.
* As root a run gets a fresh host uid (:func:`pick_uid`), so that the process limit counts
  only its own processes and :func:`kill_uid` can end all of them (``kill(-1)`` as that uid).
* The grader is a child subreaper (:func:`become_subreaper`) and collects the run's orphans
  by pid (:func:`reap`), never with ``waitpid(-1)``, which could take another grading
  thread's child.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
import pwd
import random
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Limits", "DEFAULT_LIMITS", "RUN_UID_RANGE", "rlimits", "via_launcher",
           "processes_of", "pick_uid", "become_subreaper", "reap", "kill_uid", "as_user",
           "wait_for"]

RUN_UID_RANGE = (1_500_000_000, 1_600_000_000)  # host uids picked for runs (as root)


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run. Sizes in bytes; ``None`` for no limit."""

    wall_seconds: float = 120.0        # killed after this long (the whole process tree)
    cpu_seconds: int | None = 300      # RLIMIT_CPU: SIGXCPU, then SIGKILL a second later
    memory_bytes: int | None = 8 << 30  # RLIMIT_AS, per process (torch maps ~2 GiB itself)
    processes: int | None = 64         # RLIMIT_NPROC: processes *and threads* of the run
    file_bytes: int | None = 256 << 20  # RLIMIT_FSIZE: largest file (stdout/stderr too)
    disk_bytes: int = 512 << 20        # size of the writable /work (bubblewrap only)
    tmp_bytes: int = 64 << 20          # size of /tmp and of /dev/shm (bubblewrap only)
    open_files: int | None = 256       # RLIMIT_NOFILE
    output_tail_bytes: int = 16 << 10  # how much of the end of stdout/stderr is kept
    read_file_bytes: int = 64 << 20    # largest output file read back
    read_files: int = 200              # most output files read back


DEFAULT_LIMITS = Limits()


def rlimits(limits: Limits, nproc_base: int) -> list[tuple[int, int, int]]:
    pairs = [(resource.RLIMIT_CORE, 0, 0)]
    if limits.cpu_seconds is not None:
        pairs.append((resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1))
    for which, value in ((resource.RLIMIT_AS, limits.memory_bytes),
                         (resource.RLIMIT_FSIZE, limits.file_bytes),
                         (resource.RLIMIT_NOFILE, limits.open_files)):
        if value is not None:
            pairs.append((which, value, value))
    if limits.processes is not None:
        value = nproc_base + limits.processes
        pairs.append((resource.RLIMIT_NPROC, value, value))
    return pairs


_SANDBOX_EXEC = str(Path(__file__).resolve().parents[1] / "sandbox_exec.py")


def via_launcher(argv: Sequence[str], rlimits: list[tuple[int, int, int]], *,
                  uid: int | None = None, mounts: Sequence[tuple[str, str]] = (),
                  status_fd: int | None = None) -> list[str]:
    """``argv`` run through :mod:`~segedu.grading.engine.sandbox_exec`, which stages
    ``mounts``, becomes ``uid``, sets a restrictive umask, ``PR_SET_PDEATHSIG`` and the
    limits, then executes ``argv`` (no ``preexec_fn``: grading threads may call us at once)."""
    config = {"mounts": [list(m) for m in mounts], "uid": uid, "umask": 0o077,
              "rlimits": [list(r) for r in rlimits], "argv": list(argv),
              "status_fd": status_fd}
    return [sys.executable, "-I", "-S", _SANDBOX_EXEC, json.dumps(config)]


def processes_of(uid: int) -> list[int]:
    """Pids of the live (not zombie) processes of ``uid`` that this process can see."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid != uid:
                    continue
                with open(f"/proc/{entry}/stat", "rb") as f:
                    state = f.read().rpartition(b")")[2].split()[0]
            except (OSError, IndexError):
                continue
            if state not in (b"Z", b"X"):
                pids.append(int(entry))
    return pids


def pick_uid() -> int:
    """A host uid no process uses and no account names, for one run."""
    rng = random.SystemRandom()
    while True:
        uid = rng.randrange(*RUN_UID_RANGE)
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        if not processes_of(uid):
            return uid


@functools.cache
def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (``PR_SET_CHILD_SUBREAPER``):
    a sandbox's init, or a daemon of the ``user`` level, whose parent exits is re-parented
    here rather than to the container's PID 1, which may never reap it; :func:`reap` then
    collects them. True when the kernel accepted it."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER


def reap(pids: Iterable[int] = (), uid: int | None = None, wait: float = 1.0) -> None:
    """Reap the run's orphans re-parented to this process: the given ``pids`` (waited for up
    to ``wait`` seconds each) and the zombie children owned by ``uid``. Never ``waitpid(-1)``:
    that could take the exit status of another thread's subprocess."""
    me = os.getpid()
    targets = set(pids)
    if uid is not None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.stat(f"/proc/{entry}").st_uid != uid:
                    continue
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rpartition(b")")[2].split()
            except (OSError, IndexError):
                continue
            if fields[0] == b"Z" and int(fields[1]) == me:
                targets.add(int(entry))
    for pid in targets:
        deadline = time.monotonic() + wait
        while True:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:  # not (yet) ours: gone, or still being re-parented
                if not os.path.exists(f"/proc/{pid}"):
                    break
            if time.monotonic() > deadline:
                break
            time.sleep(0.002)


def kill_uid(uid: int) -> None:
    """Kill every process of ``uid``: a helper switches to that uid and sends SIGKILL to
    every process it may signal (``kill(-1)``), until none is left."""
    for _ in range(50):
        if not processes_of(uid):
            return
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the helper
            try:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.01)


def as_user(uid: int | None, fn) -> None:
    """Call ``fn()`` here (``uid`` None) or in a forked helper running as ``uid``."""
    if uid is None:
        fn()
        return
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the helper
        code = 1
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            fn()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise OSError(errno.EIO, "could not write the inputs into the child's folder")


def wait_for(proc: subprocess.Popen, seconds: float) -> bool:
    try:
        proc.wait(timeout=max(seconds, 0.001))
        return True
    except subprocess.TimeoutExpired:
        return False

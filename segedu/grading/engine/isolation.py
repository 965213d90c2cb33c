"""Start an untrusted command under operating-system isolation, and read back what it wrote.

The grader's other defences (:mod:`segedu.grading.engine.confine`: Python audit hooks, a call
monitor) live *inside* the submission's process, so code that takes the process over can
undo them. This module puts the boundary in the kernel instead. Read it in this order:

1. :func:`detect_isolation` chooses the strongest level this machine offers and says, in one
   line, what it guarantees (:class:`Isolation`):

   * ``"bubblewrap"`` — ``bwrap`` gives the child its own user, mount, PID, network, IPC, UTS
     and cgroup namespaces. It sees only the interpreter, the system libraries, a few files of
     ``/etc`` and the host paths the caller binds, all read-only; it writes only a fresh,
     size-capped ``/work`` (holding the inputs), ``/tmp`` and ``/dev/shm``; it has no network
     (only its own loopback); it sees only its own processes, so it can signal no other.
   * ``"user"`` — no bubblewrap, but we are root: the child runs as a uid of its own (no
     supplementary groups) in a private folder. The kernel's permission checks keep it out
     of the grader's ``0600``/``0700`` files and stop it signalling the grader; it still
     sees every world-readable file, the network and the process list.
   * ``"none"`` — only when the instructor asks for it (``allow_none=True``): a plain
     subprocess with the grader's own rights. Otherwise :class:`IsolationUnavailable`.

2. :class:`Limits` are the resource limits every level applies (``setrlimit`` in the child
   before it starts: address space, CPU seconds, processes, file size, open files, no core
   files) plus the wall-clock timeout and the size caps of the writable folders.

3. :func:`run_isolated` runs ``argv`` and returns an :class:`IsolatedRun`: exit status,
   timeout, the tails of stdout/stderr, and the regular files the child left in ``/work``,
   read with :func:`read_child_file`. When it returns, no process of the run is left:
   under bubblewrap the PID namespace's init is killed, and the kernel kills everything in
   the namespace with it (``setsid`` and double forks included); at the ``"user"`` level
   every process of the run's uid is killed (``kill(-1)`` as that uid).

4. :func:`read_child_file` and :func:`list_child_dir` read what the child wrote without
   trusting it: no symbolic link is followed, only regular files are read, never more than
   a given size, and nothing blocks (a FIFO or a link to ``/dev/zero`` is refused at once).

Why each choice (where we differ from the obvious):

* **bwrap never runs as root.** ``bwrap`` started by root keeps *all* capabilities inside
  the sandbox, and ``RLIMIT_NPROC`` is never enforced for uid 0. So as root we first switch
  to a fresh unprivileged uid (random, from :data:`RUN_UID_RANGE`), then ``bwrap`` creates
  an unprivileged user namespace in which the child is uid/gid :data:`CHILD_UID`.
  A fresh uid per run also means the process limit counts only this run's processes.
* **Host paths are bound through file descriptors** (``--ro-bind-fd``) that the grader opens
  with its own rights, so the interpreter may live in a folder the child's uid could not
  traverse (pyenv under ``/root``) while the rest of that folder stays invisible.
* **The output folder is a tmpfs capped with ``--size``** (bubblewrap 0.5 and later), which
  vanishes with the sandbox. Before the child's command starts (``--block-fd``) the grader
  opens ``/proc/<sandbox init>/root/work`` and keeps that descriptor: it keeps the tmpfs
  alive after the sandbox is gone, writes the inputs and reads the outputs through it.
* **The environment is built, never inherited** (``--clearenv`` and a fixed set), so no
  secret of the grader's environment reaches the child. ``/proc`` is the sandbox's own: the
  grader's ``environ`` and ``cmdline`` are not there to read.
* A bwrap exit status above 128 is reported as a signal (``-(status - 128)``, as
  :mod:`subprocess` does); the child could fake it by exiting with 137, which only changes
  the message the student reads.
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
import select
import shutil
import signal
import site
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CHILD_HOME", "Isolation", "IsolationUnavailable", "IsolatedRun", "Limits",
    "ChildFileRejected", "detect_isolation", "list_child_dir", "read_child_file",
    "run_isolated",
]

LEVELS = ("bubblewrap", "user", "none")
CHILD_HOME = "/work"            # the child's writable folder, its HOME and working directory
CHILD_PACKAGES = "/opt/isolated/python"  # where ``packages`` are bound (on PYTHONPATH)
CHILD_UID = 1000                # the child's uid and gid inside the bubblewrap sandbox
RUN_UID_RANGE = (1_500_000_000, 1_600_000_000)  # host uids picked for runs (as root)
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONNOUSERSITE": "1",
    "PYTHONHASHSEED": "0",
}
# What of /etc a Python child needs: the dynamic loader's cache, user and group names,
# time zone, and the /usr/bin -> /etc/alternatives links of Debian. Nothing else.
ETC_FILES = ("alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime",
             "passwd", "group", "nsswitch.conf", "hosts", "mime.types")
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
_TMPFS_MAGIC = 0x01021994


class IsolationUnavailable(RuntimeError):
    """No isolation level the caller accepts is available on this machine."""


class ChildFileRejected(OSError):
    """A path the child left is not a regular file within the size allowed."""


# --------------------------------------------------------------------------- levels


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


_DESCRIPTIONS = {
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


def _bwrap_flags() -> list[str]:
    return ["--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--new-session",
            "--uid", str(CHILD_UID), "--gid", str(CHILD_UID), "--hostname", "sandbox"]


@functools.cache
def _bubblewrap_works(bwrap: str) -> bool:
    """Whether ``bwrap`` can build the sandbox :func:`run_isolated` builds (probed once)."""
    probe = [bwrap, *_bwrap_flags(), "--ro-bind", "/", "/", "--proc", "/proc",
             "--dev", "/dev", "--size", str(1 << 20), "--tmpfs", CHILD_HOME, "true"]
    uid = _pick_uid() if os.geteuid() == 0 else None
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
        return Isolation("bubblewrap", _DESCRIPTIONS["bubblewrap"], bwrap)
    if os.geteuid() == 0:
        return Isolation("user", _DESCRIPTIONS["user"])
    if allow_none:
        return Isolation("none", _DESCRIPTIONS["none"])
    why = ("`bwrap` is not installed" if bwrap is None else
           f"`{bwrap}` cannot create a sandbox here (are unprivileged user namespaces "
           "disabled? see sysctl kernel.unprivileged_userns_clone / user.max_user_namespaces)")
    raise IsolationUnavailable(
        f"cannot isolate the submissions: {why}, and the grader is not running as root (so "
        "it cannot run them as a separate user). Install bubblewrap (Debian/Ubuntu: apt-get "
        "install bubblewrap), or run the grader as root, or accept running student code "
        "with your own rights by passing allow_none=True (--no-isolation).")


# --------------------------------------------------------------------------- limits


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


def _rlimits(limits: Limits, nproc_base: int) -> list[tuple[int, int, int]]:
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


_SANDBOX_EXEC = str(Path(__file__).with_name("sandbox_exec.py"))


def _via_launcher(argv: Sequence[str], rlimits: list[tuple[int, int, int]], *,
                  uid: int | None = None, mounts: Sequence[tuple[str, str]] = (),
                  status_fd: int | None = None) -> list[str]:
    """``argv`` run through :mod:`~segedu.grading.engine.sandbox_exec`, which stages
    ``mounts``, becomes ``uid``, sets a restrictive umask, ``PR_SET_PDEATHSIG`` and the
    limits, then executes ``argv`` (no ``preexec_fn``: grading threads may call us at once)."""
    config = {"mounts": [list(m) for m in mounts], "uid": uid, "umask": 0o077,
              "rlimits": [list(r) for r in rlimits], "argv": list(argv),
              "status_fd": status_fd}
    return [sys.executable, "-I", "-S", _SANDBOX_EXEC, json.dumps(config)]


def _processes_of(uid: int) -> list[int]:
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


def _pick_uid() -> int:
    """A host uid no process uses and no account names, for one run."""
    rng = random.SystemRandom()
    while True:
        uid = rng.randrange(*RUN_UID_RANGE)
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        if not _processes_of(uid):
            return uid


@functools.cache
def _become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (``PR_SET_CHILD_SUBREAPER``):
    a sandbox's init, or a daemon of the ``user`` level, whose parent exits is re-parented
    here rather than to the container's PID 1, which may never reap it; :func:`_reap` then
    collects them. True when the kernel accepted it."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER


def _reap(pids: Iterable[int] = (), uid: int | None = None, wait: float = 1.0) -> None:
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


def _kill_uid(uid: int) -> None:
    """Kill every process of ``uid``: a helper switches to that uid and sends SIGKILL to
    every process it may signal (``kill(-1)``), until none is left."""
    for _ in range(50):
        if not _processes_of(uid):
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


# --------------------------------------------------------------------------- reading back


def _open_nofollow(path: str | os.PathLike, dir_fd: int | None, flags: int) -> int:
    """Open ``path`` (relative to ``dir_fd`` when given: then every component is opened
    without following links, and ``..`` and absolute paths are refused)."""
    flags |= os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    if dir_fd is None:
        return os.open(path, flags)
    parts = [p for p in os.fspath(path).split("/") if p not in ("", ".")]
    if not parts or os.path.isabs(os.fspath(path)) or ".." in parts:
        raise ChildFileRejected(errno.EPERM, "not a path inside the child's folder",
                                os.fspath(path))
    fd = os.dup(dir_fd)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=fd)
            os.close(fd)
            fd = nxt
        return os.open(parts[-1], flags, dir_fd=fd)
    finally:
        os.close(fd)


def read_child_file(path: str | os.PathLike, max_bytes: int, *,
                    dir_fd: int | None = None) -> bytes:
    """The content of a file the child wrote, read without trusting it.

    Refused with :class:`ChildFileRejected` (at once, never blocking): a symbolic link (to
    ``/dev/zero``, to a private file), a FIFO, a socket, a device, a folder, or a file larger
    than ``max_bytes``. With ``dir_fd``, ``path`` is relative to that folder and no component
    of it may be a link; without, only the last component is checked (the caller vouches for
    the folders above it).
    """
    try:
        fd = _open_nofollow(path, dir_fd, os.O_RDONLY)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ChildFileRejected(errno.ELOOP, "a symbolic link (not followed)",
                                    os.fspath(path)) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ChildFileRejected(errno.EINVAL, f"not a regular file ({_kind(info.st_mode)})",
                                    os.fspath(path))
        if info.st_size > max_bytes:
            raise ChildFileRejected(errno.EFBIG, f"{info.st_size} bytes, more than the "
                                    f"{max_bytes} allowed", os.fspath(path))
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:  # grew while we read
                raise ChildFileRejected(errno.EFBIG, f"more than the {max_bytes} bytes "
                                        "allowed", os.fspath(path))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "symbolic link"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISDIR, "folder"),
                       (stat.S_ISREG, "regular file")):
        if test(mode):
            return name
    return "unknown"


def list_child_dir(dir_fd: int, *, max_entries: int = 1000,
                   max_depth: int = 4) -> list[tuple[str, str]]:
    """``(relative path, kind)`` for everything under the folder ``dir_fd``, sorted, without
    following links (a linked folder is listed as a link, not entered)."""
    found: list[tuple[str, str]] = []

    def walk(fd: int, prefix: str, depth: int) -> None:
        for name in sorted(os.listdir(fd)):
            if len(found) >= max_entries:
                return
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            kind = _kind(info.st_mode)
            found.append((prefix + name, kind))
            if kind == "folder" and depth < max_depth:
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                              | os.O_CLOEXEC, dir_fd=fd)
                try:
                    walk(sub, prefix + name + "/", depth + 1)
                finally:
                    os.close(sub)

    walk(dir_fd, "", 0)
    return found


def _collect(dir_fd: int, limits: Limits) -> tuple[dict[str, bytes], dict[str, str]]:
    files: dict[str, bytes] = {}
    rejected: dict[str, str] = {}
    budget = limits.disk_bytes + limits.read_file_bytes
    for name, kind in list_child_dir(dir_fd, max_entries=limits.read_files * 5):
        if kind == "folder":
            continue
        if len(files) >= limits.read_files:
            rejected[name] = "too many files"
            continue
        try:
            data = read_child_file(name, min(limits.read_file_bytes, budget), dir_fd=dir_fd)
        except OSError as error:
            rejected[name] = error.strerror or str(error)
            continue
        budget -= len(data)
        files[name] = data
    return files, rejected


# --------------------------------------------------------------------------- running


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


def _child_env(env: Mapping[str, str] | None, home: str, pythonpath: list[str]) -> dict:
    result = dict(BASE_ENV, HOME=home, TMPDIR="/tmp")
    if pythonpath:
        result["PYTHONPATH"] = os.pathsep.join(pythonpath)
    for key, value in (env or {}).items():
        if not isinstance(key, str) or not isinstance(value, str) or "=" in key:
            raise ValueError(f"environment entries must be str=str, not {key!r}={value!r}")
        result[key] = value
    return result


def _python_dirs() -> list[str]:
    """Folders the interpreter needs: its prefixes and site-packages (real paths)."""
    dirs = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
            os.path.dirname(os.path.realpath(sys.executable)), *site.getsitepackages()]
    real = sorted({os.path.realpath(d) for d in dirs if d and os.path.isdir(d)})
    return [d for d in real if not any(d != o and d.startswith(o.rstrip("/") + "/")
                                       for o in real)]


def _tail(f, limit: int) -> bytes:
    size = os.fstat(f.fileno()).st_size
    f.seek(max(0, size - limit))
    return f.read(limit)


def run_isolated(
    argv: Sequence[str],
    *,
    isolation: Isolation,
    limits: Limits = Limits(),
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
    runner = {"bubblewrap": _run_bwrap, "user": _run_user, "none": _run_none}[isolation.level]
    _become_subreaper()
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


def _write_inputs(dir_fd: int, inputs: Mapping[str, bytes], owner: int | None) -> None:
    for name, data in inputs.items():
        parts = [p for p in name.split("/") if p]
        if not parts or ".." in parts or name.startswith("/"):
            raise ValueError(f"input names must be relative paths, not {name!r}")
        fd = os.dup(dir_fd)
        try:
            for part in parts[:-1]:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = nxt
            out = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                          0o644, dir_fd=fd)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(out, view):]
                if owner is not None:
                    os.fchown(out, owner, owner)
            finally:
                os.close(out)
        finally:
            os.close(fd)


def _wait(proc: subprocess.Popen, seconds: float) -> bool:
    try:
        proc.wait(timeout=max(seconds, 0.001))
        return True
    except subprocess.TimeoutExpired:
        return False


def _bwrap_binds(ro_binds, packages) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """(bwrap options for the fixed layout, [(host path, sandbox path)] to bind read-only,
    PYTHONPATH inside)."""
    layout: list[str] = []
    binds: list[tuple[str, str]] = []
    for name in SYSTEM_DIRS:
        host = f"/{name}"
        if os.path.islink(host):
            layout += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host):
            binds.append((host, host))
    for name in ETC_FILES:
        host = f"/etc/{name}"
        if os.path.lexists(host) and not os.path.islink(host):
            binds.append((host, host))
    binds += [(folder, folder) for folder in _python_dirs()]
    pythonpath = []
    for package in packages:
        binds.append((str(Path(package).resolve()), f"{CHILD_PACKAGES}/{Path(package).name}"))
        pythonpath = [CHILD_PACKAGES]
    binds += [(str(Path(host).resolve()), dest) for dest, host in ro_binds.items()]
    return layout, binds, pythonpath


def _as_user(uid: int | None, fn) -> None:
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


def _run_bwrap(argv, isolation, limits, inputs, ro_binds, packages, env, private, out, err):
    uid = _pick_uid() if os.geteuid() == 0 else None
    nproc_base = 0 if uid is not None else len(_processes_of(os.getuid()))
    token = f".segedu-ready-{random.SystemRandom().getrandbits(64):016x}"
    layout, binds, pythonpath = _bwrap_binds(ro_binds, packages)
    rlimits = _rlimits(limits, nproc_base)
    stages: list[tuple[str, str]] = []
    if uid is not None:
        staging = os.path.join(private, "mnt")
        os.mkdir(staging, 0o711)
        stages = []
        for i, (host, dest) in enumerate(binds):
            point = os.path.join(staging, str(i))
            if os.path.isdir(host):
                os.mkdir(point, 0o711)
            else:
                open(point, "xb").close()
            stages.append((host, point))
            binds[i] = (point, dest)
    cmd = [isolation.bwrap or "bwrap", *_bwrap_flags(), *layout]
    for host, dest in binds:
        cmd += ["--ro-bind", host, dest]
    cmd += ["--proc", "/proc", "--dev", "/dev",
            "--size", str(limits.tmp_bytes), "--tmpfs", "/dev/shm",
            "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
            "--size", str(limits.disk_bytes), "--tmpfs", CHILD_HOME,
            "--dir", f"{CHILD_HOME}/{token}", "--remount-ro", "/",
            "--chdir", CHILD_HOME, "--clearenv"]
    for key, value in _child_env(env, CHILD_HOME, pythonpath).items():
        cmd += ["--setenv", key, value]
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    cmd[1:1] = ["--info-fd", str(info_w), "--block-fd", str(block_r)]
    cmd += ["--", *argv]
    work_fd = init_pidfd = init_pid = None
    proc = None
    try:
        proc = subprocess.Popen(
            _via_launcher(cmd, rlimits, uid=uid, mounts=stages), stdin=subprocess.DEVNULL,
            stdout=out, stderr=err, env=dict(BASE_ENV), pass_fds=[info_w, block_r],
            cwd=private)
        os.close(info_w)
        os.close(block_r)
        info_w = block_r = None
        deadline = time.monotonic() + limits.wall_seconds
        init_pid = _read_init_pid(info_r, deadline)
        if init_pid is not None:
            init_pidfd = os.pidfd_open(init_pid)
            work_fd = _open_work(proc, init_pid, token, deadline)
        if work_fd is None:  # closing block_w would start the command: stop bwrap first
            proc.kill()
            proc.wait()
            raise IsolationUnavailable(
                "bubblewrap did not set up the sandbox: "
                + err.read()[-2000:].decode("utf-8", "replace").strip())
        os.rmdir(token, dir_fd=work_fd)
        # The tmpfs belongs to the sandbox's user namespace: files in it must be created by
        # a uid mapped there, the run's own (as root), which is also what the child is.
        _as_user(uid, lambda: _write_inputs(work_fd, inputs, owner=None))
        os.write(block_w, b"1")  # the child's command starts now
        os.close(block_w)
        block_w = None
        exited = _wait(proc, deadline - time.monotonic())
        if init_pidfd is not None:  # the namespace's init: the kernel kills all with it
            try:
                signal.pidfd_send_signal(init_pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not exited:
            proc.kill()
        code = proc.wait()
        if init_pid is not None:
            _reap([init_pid])
        files, rejected = _collect(work_fd, limits) if work_fd is not None else ({}, {})
        if exited and code > 128:  # bwrap reports a signal N as 128 + N
            code = -(code - 128)
        return (code if exited else None), not exited, files, rejected
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        for fd in (info_r, info_w, block_r, block_w, work_fd, init_pidfd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        if uid is not None:
            _kill_uid(uid)


def _read_init_pid(fd: int, deadline: float) -> int | None:
    """The host pid of the sandbox's init, from bwrap's ``--info-fd`` (None if bwrap failed)."""
    data = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    try:
        return int(json.loads(data.decode())["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None


def _open_work(proc: subprocess.Popen, init_pid: int, token: str,
               deadline: float) -> int | None:
    """A descriptor of the sandbox's ``/work`` tmpfs, once bwrap has mounted it (it holds
    ``token``; the child's command has not started yet)."""
    path = f"/proc/{init_pid}/root{CHILD_HOME}"
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:  # not mounted yet
            time.sleep(0.002)
            continue
        try:
            os.stat(token, dir_fd=fd, follow_symlinks=False)
            if os.statvfs(fd).f_blocks and _is_tmpfs(fd):
                return fd
        except OSError:
            pass
        os.close(fd)
        time.sleep(0.002)
    return None


def _is_tmpfs(fd: int) -> bool:
    class _Statfs(ctypes.Structure):
        _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 120)]

    buf = _Statfs()
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.fstatfs(fd, ctypes.byref(buf)) == 0 and buf.f_type == _TMPFS_MAGIC


def _private_workdir(private: str, owner: int | None) -> str:
    workdir = os.path.join(private, "work")
    os.mkdir(workdir, 0o700)
    os.mkdir(os.path.join(workdir, ".tmp"), 0o700)
    if owner is not None:
        os.chown(workdir, owner, owner)
        os.chown(os.path.join(workdir, ".tmp"), owner, owner)
    return workdir


def _run_user(argv, isolation, limits, inputs, ro_binds, packages, env, private, out, err):
    return _run_plain(argv, limits, inputs, packages, env, private, out, err, _pick_uid())


def _run_none(argv, isolation, limits, inputs, ro_binds, packages, env, private, out, err):
    return _run_plain(argv, limits, inputs, packages, env, private, out, err, None)


def _run_plain(argv, limits, inputs, packages, env, private, out, err, uid):
    """The ``"user"`` level (``uid`` given) and the ``"none"`` level (``uid`` None): the
    child runs on the host's file system, in a private folder of its own."""
    workdir = _private_workdir(private, uid)
    pythonpath = [str(Path(p).resolve().parent) for p in packages]
    child_env = _child_env(env, workdir, list(dict.fromkeys(pythonpath)))
    child_env["TMPDIR"] = os.path.join(workdir, ".tmp")
    limits_here = _rlimits(limits, 0) if uid is not None else [
        r for r in _rlimits(limits, 0) if r[0] != resource.RLIMIT_NPROC]
    work_fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _write_inputs(work_fd, inputs, owner=uid)
        status_r, status_w = os.pipe()
        try:  # the launcher (started with our rights) becomes ``uid``, then executes argv
            proc = subprocess.Popen(
                _via_launcher(argv, limits_here, uid=uid, status_fd=status_w), cwd=workdir,
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=child_env,
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
        exited = _wait(proc, limits.wall_seconds)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        code = proc.wait()
        if uid is not None:
            _kill_uid(uid)
            _reap(uid=uid)
        files, rejected = _collect(work_fd, limits)
        files = {k: v for k, v in files.items() if not k.startswith(".tmp/")}
        rejected = {k: v for k, v in rejected.items() if not k.startswith(".tmp/")}
        return (code if exited else None), not exited, files, rejected
    finally:
        os.close(work_fd)
        if uid is not None:
            _kill_uid(uid)

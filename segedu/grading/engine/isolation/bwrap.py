"""The ``"bubblewrap"`` level: the child in its own user, mount, PID, network, IPC, UTS and
cgroup namespaces, built by ``bwrap``.

It sees only the interpreter, the system libraries, a few files of ``/etc`` and the host
paths bound read-only; it writes only a fresh, size-capped ``/work`` (holding the inputs),
``/tmp`` and ``/dev/shm``; it has only its own loopback; it sees only its own processes.

* **bwrap never runs as root.** ``bwrap`` started by root keeps *all* capabilities inside
  the sandbox, and ``RLIMIT_NPROC`` is never enforced for uid 0. So as root we first switch
  to a fresh unprivileged uid (:func:`~.processes.pick_uid`), then ``bwrap`` creates an
  unprivileged user namespace in which the child is uid/gid
  :data:`~.levels.CHILD_UID`. Host paths below a folder that uid cannot traverse (pyenv
  under ``/root``) are bind-mounted first at a staging point, in a mount namespace of the
  launcher's own, so the rest of that folder stays invisible.
* **The output folder is a tmpfs capped with ``--size``** (bubblewrap 0.5 and later), which
  vanishes with the sandbox. Before the child's command starts (``--block-fd``) the grader
  opens ``/proc/<sandbox init>/root/work`` and keeps that descriptor: it keeps the tmpfs
  alive after the sandbox is gone, writes the inputs and reads the outputs through it.
* **The environment is built, never inherited** (``--clearenv`` and
  :data:`~.levels.BASE_ENV`). ``/proc`` is the sandbox's own: the grader's ``environ`` and
  ``cmdline`` are not there to read.
* **Killed as a whole**: SIGKILL to the namespace's init, and the kernel kills everything
  in the namespace with it (``setsid`` and double forks included).
* A bwrap exit status above 128 is reported as a signal (``-(status - 128)``, as
  :mod:`subprocess` does); the child could fake it by exiting with 137, which only changes
  the message the student reads.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import select
import signal
import site
import subprocess
import sys
import time
from pathlib import Path

from .files import collect, write_inputs
from .levels import (
    BASE_ENV,
    CHILD_HOME,
    CHILD_PACKAGES,
    IsolationUnavailable,
    bwrap_flags,
    child_env,
)
from .processes import (
    as_user,
    kill_uid,
    pick_uid,
    processes_of,
    reap,
    rlimits,
    via_launcher,
    wait_for,
)

__all__ = ["run_bwrap", "ETC_FILES", "SYSTEM_DIRS"]

# What of /etc a Python child needs: the dynamic loader's cache, user and group names,
# time zone, and the /usr/bin -> /etc/alternatives links of Debian. Nothing else.
ETC_FILES = ("alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime",
             "passwd", "group", "nsswitch.conf", "hosts", "mime.types")
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
_TMPFS_MAGIC = 0x01021994


def _python_dirs() -> list[str]:
    """Folders the interpreter needs: its prefixes and site-packages (real paths)."""
    dirs = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
            os.path.dirname(os.path.realpath(sys.executable)), *site.getsitepackages()]
    real = sorted({os.path.realpath(d) for d in dirs if d and os.path.isdir(d)})
    return [d for d in real if not any(d != o and d.startswith(o.rstrip("/") + "/")
                                       for o in real)]


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


def run_bwrap(argv, isolation, limits, inputs, ro_binds, packages, env, private, out, err):
    uid = pick_uid() if os.geteuid() == 0 else None
    nproc_base = 0 if uid is not None else len(processes_of(os.getuid()))
    token = f".segedu-ready-{random.SystemRandom().getrandbits(64):016x}"
    layout, binds, pythonpath = _bwrap_binds(ro_binds, packages)
    limits_here = rlimits(limits, nproc_base)
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
    cmd = [isolation.bwrap or "bwrap", *bwrap_flags(), *layout]
    for host, dest in binds:
        cmd += ["--ro-bind", host, dest]
    cmd += ["--proc", "/proc", "--dev", "/dev",
            "--size", str(limits.tmp_bytes), "--tmpfs", "/dev/shm",
            "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
            "--size", str(limits.disk_bytes), "--tmpfs", CHILD_HOME,
            "--dir", f"{CHILD_HOME}/{token}", "--remount-ro", "/",
            "--chdir", CHILD_HOME, "--clearenv"]
    for key, value in child_env(env, CHILD_HOME, pythonpath).items():
        cmd += ["--setenv", key, value]
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    cmd[1:1] = ["--info-fd", str(info_w), "--block-fd", str(block_r)]
    cmd += ["--", *argv]
    work_fd = init_pidfd = init_pid = None
    proc = None
    try:
        proc = subprocess.Popen(
            via_launcher(cmd, limits_here, uid=uid, mounts=stages), stdin=subprocess.DEVNULL,
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
        as_user(uid, lambda: write_inputs(work_fd, inputs, owner=None))
        os.write(block_w, b"1")  # the child's command starts now
        os.close(block_w)
        block_w = None
        exited = wait_for(proc, deadline - time.monotonic())
        if init_pidfd is not None:  # the namespace's init: the kernel kills all with it
            try:
                signal.pidfd_send_signal(init_pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not exited:
            proc.kill()
        code = proc.wait()
        if init_pid is not None:
            reap([init_pid])
        files, rejected = collect(work_fd, limits) if work_fd is not None else ({}, {})
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
            kill_uid(uid)


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

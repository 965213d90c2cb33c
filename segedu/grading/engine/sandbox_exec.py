"""The small program that :mod:`~segedu.grading.engine.isolation` executes between its own
process and the sandbox: set up what must be set up in the new process, then ``execv``.

Run as ``python -I -S sandbox_exec.py CONFIG_JSON`` (standard library only: it imports
neither segedu nor torch). ``CONFIG_JSON`` holds, in this order of application:

* ``mounts`` — ``[[host path, staging point], ...]``: in a mount namespace of its own, bind
  each host path at its staging point (so that bwrap, run as another uid, can bind a path
  below a folder that uid could not traverse, such as pyenv under ``/root``);
* ``uid`` — become this uid and gid, with no supplementary groups (None: stay);
* ``umask``, then ``PR_SET_PDEATHSIG`` (SIGKILL when the grader's thread dies), then
  ``rlimits`` — ``[[resource, soft, hard], ...]``, each capped at the current hard limit;
* ``argv`` — the program to execute;
* ``status_fd`` — optional: a pipe on which a failed ``execv`` is reported as
  ``errno:message`` (a successful one closes it, as ``subprocess`` does).

Why a program rather than ``subprocess``'s ``preexec_fn``: Python code between ``fork`` and
``exec`` in a process with threads (``segedu grade --jobs N`` grades in threads) may deadlock
on a lock another thread held at the fork. Here the fork is done by ``subprocess`` in C and
all the Python runs in a fresh, single-threaded interpreter.
"""

import ctypes
import json
import os
import resource
import signal
import sys

_CLONE_NEWNS = 0x00020000
_MS_BIND, _MS_REC, _MS_PRIVATE = 0x1000, 0x4000, 0x40000
_PR_SET_PDEATHSIG = 1


def _fail(what: str) -> None:
    os.write(2, f"sandbox_exec: {what}\n".encode())
    os._exit(125)


def main() -> None:
    config = json.loads(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_void_p]
    if config.get("mounts"):
        if libc.unshare(_CLONE_NEWNS) != 0:
            _fail(f"unshare(CLONE_NEWNS) failed: {os.strerror(ctypes.get_errno())}")
        if libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
            _fail(f"making / private failed: {os.strerror(ctypes.get_errno())}")
        for src, dst in config["mounts"]:
            if libc.mount(os.fsencode(src), os.fsencode(dst), None, _MS_BIND | _MS_REC,
                          None) != 0:
                _fail(f"staging {src!r} failed: {os.strerror(ctypes.get_errno())}")
    uid = config.get("uid")
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    os.umask(config.get("umask", 0o077))
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after the uid change, which
    for which, soft, hard in config.get("rlimits", []):       # would clear it
        _, old_hard = resource.getrlimit(which)
        if old_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, old_hard), min(hard, old_hard)
        resource.setrlimit(which, (soft, hard))
    argv = config["argv"]
    status_fd = config.get("status_fd")
    if status_fd is not None:
        os.set_inheritable(status_fd, False)
    try:
        os.execv(argv[0], argv)
    except OSError as error:
        if status_fd is not None:
            os.write(status_fd, f"{error.errno}:{error.strerror}".encode())
        _fail(f"cannot execute {argv[0]!r}: {error.strerror}")


if __name__ == "__main__":
    main()

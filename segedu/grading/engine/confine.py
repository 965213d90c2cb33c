"""Defences the grader's child process raises around a submission's code.

The score never depends on these: the parent process computes the reference values and
judges (see :mod:`~segedu.grading.engine.judge`). They exist so that a submission is graded on *its
own* code and cannot harm the instructor's machine or the other submissions:

* :class:`Confinement` — an audit hook (:pep:`578`; once added it cannot be removed from
  Python code) that refuses, with ``PermissionError``, to open, list, rename or delete
  anything under the protected paths (the course's ``solutions/``, the instructor's test
  files, the folder of submissions), to write, create, rename or delete files outside the
  child's working directory, to start processes (``subprocess``, ``os.system``, ``fork``,
  ``exec``) and to send signals to other processes. Every refusal is recorded.
* :class:`ReferenceMonitor` — notices when the exercise's reference implementation (from the
  installed ``segedu`` package) runs while the submission's code runs, through
  :func:`sys.settrace`. A case computed that way earns nothing: only the student's own code
  is graded.

Both are defences in depth against careless and moderately clever code, not a security
boundary: code that walks the interpreter's objects with :mod:`gc` can reach their state,
and code that saves the tracer and restores it around a call to the reference escapes the
monitor. The instructor guide (``docs/instructor.md``) says so.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Confinement", "ReferenceMonitor", "reference_code_keys", "trusted_files"]

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_PROCESS_EVENTS = {
    "subprocess.Popen": "starting a process",
    "os.system": "running a shell command",
    "os.exec": "replacing the process (os.exec*)",
    "os.posix_spawn": "starting a process",
    "os.spawn": "starting a process",
    "os.fork": "forking the process",
    "os.forkpty": "forking the process",
    "pty.spawn": "starting a process",
}
# path events: event -> (positions of the paths it changes, positions of those it only reads)
_PATH_EVENTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "os.remove": ((0,), ()), "os.rmdir": ((0,), ()), "os.mkdir": ((0,), ()),
    "os.truncate": ((0,), ()), "os.chmod": ((0,), ()), "os.chown": ((0,), ()),
    "os.utime": ((0,), ()), "shutil.rmtree": ((0,), ()),
    "os.rename": ((0, 1), ()), "shutil.move": ((0, 1), ()),
    "os.link": ((1,), (0,)), "os.symlink": ((1,), (0,)),
    "shutil.copyfile": ((1,), (0,)), "shutil.copytree": ((1,), (0,)),
    "os.listdir": ((), (0,)), "os.scandir": ((), (0,)), "glob.glob": ((), (0,)),
}


def _path(value: Any) -> str | None:
    """A real, absolute path for an audit event's path argument (None for a file descriptor)."""
    if isinstance(value, int) or value is None:
        return None
    try:
        return os.path.realpath(os.fsdecode(os.fspath(value)))
    except (TypeError, ValueError, OSError):
        return None


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class Confinement:
    """Refuse file, process and signal operations a graded submission has no business doing.

    Args:
        workdir: the child's working directory; the only place it may write.
        protected: files and folders it may not open, list, change or delete at all.

    Call :meth:`install` once, after the runner has read everything it needs (the
    notebook, the instructor's test files) and before the submission's first line runs.
    ``blocked`` lists what was refused, as sentences, first ones first (at most 20); each
    is also appended to ``log_path`` at once, so that the parent learns of it even when the
    submission then kills its own process.
    """

    MAX_EVENTS = 20

    def __init__(self, workdir: str | os.PathLike, protected: Iterable[str | os.PathLike] = (),
                 log_path: str | os.PathLike | None = None):
        self.workdir = os.path.realpath(workdir)
        self.log_path = os.fspath(log_path) if log_path is not None else None
        self.protected = tuple(p for p in (_path(p) for p in protected) if p)
        self.allowed_writes = (self.workdir, os.path.realpath(os.devnull))
        self.blocked: list[str] = []
        self._busy = threading.local()

    def install(self) -> None:
        sys.addaudithook(self._hook)

    def _refuse(self, what: str) -> None:
        if len(self.blocked) < self.MAX_EVENTS and what not in self.blocked:
            self.blocked.append(what)
            if self.log_path is not None:
                try:
                    fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                    try:
                        os.write(fd, (" ".join(what.split()) + "\n").encode("utf-8", "replace"))
                    finally:
                        os.close(fd)
                except OSError:
                    pass
        raise PermissionError(f"segedu grader: {what} is not allowed while grading")

    def _is_protected(self, path: str | None) -> bool:
        return path is not None and any(_inside(path, p) for p in self.protected)

    def _may_write(self, path: str | None) -> bool:
        return path is None or any(_inside(path, p) for p in self.allowed_writes)

    def _hook(self, event: str, args: tuple) -> None:
        if getattr(self._busy, "on", False):  # realpath below must not re-enter the hook
            return
        self._busy.on = True
        try:
            self._check(event, args)
        finally:
            self._busy.on = False

    def _check(self, event: str, args: tuple) -> None:
        if event == "open":
            path = _path(args[0])
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            if self._is_protected(path):
                self._refuse(f"opening {path}")
            if flags & _WRITE_FLAGS and not self._may_write(path):
                self._refuse(f"writing {path} (outside the grader's working directory)")
        elif event in _PROCESS_EVENTS:
            self._refuse(_PROCESS_EVENTS[event])
        elif event in ("os.kill", "os.killpg", "signal.pthread_kill"):
            if event != "os.kill" or args[0] not in (0, os.getpid()):
                self._refuse("sending a signal to another process")
        elif event in _PATH_EVENTS:
            changed, read = _PATH_EVENTS[event]
            action = event.rsplit(".", 1)[-1]
            for i in changed + read:
                path = _path(args[i]) if i < len(args) else None
                if self._is_protected(path):
                    self._refuse(f"{action} on {path}")
                if event == "os.mkdir" and path is not None and os.path.isdir(path):
                    continue  # it exists: mkdir changes nothing (os.makedirs(exist_ok=True))
                if i in changed and not self._may_write(path):
                    self._refuse(f"{action} on {path} (outside the grader's working directory)")


# --------------------------------------------------------------------------- reference monitor

CodeKey = tuple[str, int, str]


def trusted_files(exercise: Any) -> frozenset[str]:
    """The files of the exercise's own grading code (its cases' input builders and
    summaries): they may call the reference while a case runs."""
    functions = [exercise.summary, *(c.summary for c in exercise.cases),
                 *(c.make_inputs for c in exercise.cases)]
    return frozenset(f.__code__.co_filename for f in functions if hasattr(f, "__code__"))


def reference_code_keys(reference: Any) -> set[CodeKey]:
    """What identifies the reference's code: ``(file, first line, name)`` of its function,
    or of every function defined in its class body when it is a class. Keys, not code
    objects, so that a reloaded module or a copied function is recognised too."""
    functions: list[Any] = []
    target = getattr(reference, "func", reference)  # functools.partial
    if isinstance(target, type):
        for value in vars(target).values():
            value = getattr(value, "__func__", value)  # staticmethod, classmethod
            if hasattr(value, "__code__"):
                functions.append(value)
    elif hasattr(target, "__code__"):
        functions.append(target)
    return {(f.__code__.co_filename, f.__code__.co_firstlineno, f.__code__.co_name)
            for f in functions}


class ReferenceMonitor:
    """Notice calls of a reference implementation while the submission's code runs."""

    REMOVED = "removed"

    @contextmanager
    def watching(self, keys: set[CodeKey], hits: list[str],
                 trusted_callers: frozenset[str] = frozenset()) -> Iterator[list[str]]:
        """Trace Python calls inside the ``with`` block; ``hits`` receives
        ``"module.function"`` for each reference function that ran, and :attr:`REMOVED`
        when the submission replaced or removed the tracer.

        A call made directly from code in one of the files ``trusted_callers`` (the
        exercise's own chapter module, whose summaries may build a reference object to
        learn its expected structure) is not a hit."""
        files = {key[0] for key in keys}

        def tracer(frame, event: str, arg: Any) -> Callable | None:
            code = frame.f_code
            if event == "call" and code.co_filename in files:
                key = (code.co_filename, code.co_firstlineno, code.co_name)
                caller = frame.f_back
                if key in keys and (caller is None
                                    or caller.f_code.co_filename not in trusted_callers):
                    qualname = getattr(code, "co_qualname", code.co_name)
                    name = f"{frame.f_globals.get('__name__', '?')}.{qualname}"
                    if name not in hits:
                        hits.append(name)
            return None  # no line events: only calls are of interest

        previous = sys.gettrace()
        sys.settrace(tracer)
        threading.settrace(tracer)
        try:
            yield hits
        finally:
            if sys.gettrace() is not tracer:
                hits.append(self.REMOVED)
            sys.settrace(previous)
            threading.settrace(previous)  # type: ignore[arg-type]

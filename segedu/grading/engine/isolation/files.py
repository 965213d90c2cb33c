"""Files across the boundary: writing the child's inputs, and reading back what it left
without trusting it.

:func:`read_child_file` and :func:`list_child_dir` follow no symbolic link, read only
regular files, never more than a given size, and never block (a FIFO or a link to
``/dev/zero`` is refused at once with :class:`ChildFileRejected`). :func:`collect` reads a
whole folder that way, within a total budget; :func:`write_inputs` puts the inputs into a
folder opened by descriptor, creating nothing through a link.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Mapping

from .processes import Limits

__all__ = ["ChildFileRejected", "read_child_file", "list_child_dir", "collect",
           "write_inputs"]


class ChildFileRejected(OSError):
    """A path the child left is not a regular file within the size allowed."""


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


def collect(dir_fd: int, limits: Limits) -> tuple[dict[str, bytes], dict[str, str]]:
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


def write_inputs(dir_fd: int, inputs: Mapping[str, bytes], owner: int | None) -> None:
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

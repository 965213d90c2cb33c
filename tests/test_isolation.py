"""Hostile children run through :func:`segedu.grading.engine.isolation.run_isolated`: each test
states an attack, asserts that it fails, and that the parent (this test process) survives.

The bubblewrap tests run wherever ``bwrap`` is installed (CI installs it); the "user" level
tests need root."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sys
import sysconfig
import threading
import uuid
from pathlib import Path

import pytest

import segedu
from segedu.grading.engine.isolation import (
    ChildFileRejected,
    Isolation,
    IsolationUnavailable,
    Limits,
    detect_isolation,
    levels,
    list_child_dir,
    read_child_file,
    run_isolated,
)

PACKAGE = Path(segedu.__file__).resolve().parent
ROOT = os.geteuid() == 0
SMALL = Limits(wall_seconds=30, memory_bytes=1 << 30, processes=32, disk_bytes=8 << 20,
               tmp_bytes=4 << 20, file_bytes=16 << 20)

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None,
                                 reason="bubblewrap is not installed (apt-get install bubblewrap)")
needs_root = pytest.mark.skipif(not ROOT, reason="the 'user' level needs the grader to be root")


@pytest.fixture(scope="module")
def bwrap() -> Isolation:
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)")
    found = detect_isolation()
    assert found.level == "bubblewrap", f"bwrap is installed but unusable: {found}"
    return found


USER = Isolation("user", levels.DESCRIPTIONS["user"])


def py(iso: Isolation, code: str, *args: str, limits: Limits = SMALL, **kwargs):
    return run_isolated([sys.executable, "-c", code, *map(str, args)], isolation=iso,
                        limits=limits, **kwargs)


def out(run) -> str:
    return (run.stdout + run.stderr).decode("utf-8", "replace")


def survivors(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


@pytest.fixture
def solutions(tmp_path) -> Path:
    """A folder standing for the course's solutions/, with a secret in it."""
    folder = tmp_path / "solutions"
    folder.mkdir()
    (folder / "secret.txt").write_text("THE-ANSWER-42")
    return folder


# --------------------------------------------------------------------------- choosing a level


@needs_bwrap
def test_detect_isolation_chooses_bubblewrap_when_it_works(bwrap):
    assert bwrap.level == "bubblewrap" and "network" in bwrap.description
    assert str(bwrap).startswith("isolation: bubblewrap")


def test_detect_isolation_refuses_to_run_unisolated_unless_the_instructor_allows_it(monkeypatch):
    monkeypatch.setattr(levels.shutil, "which", lambda name: None)
    monkeypatch.setattr(levels.os, "geteuid", lambda: 1000)
    with pytest.raises(IsolationUnavailable, match="bubblewrap"):
        detect_isolation()
    assert detect_isolation(allow_none=True).level == "none"


def test_detect_isolation_falls_back_to_a_separate_user_as_root(monkeypatch):
    monkeypatch.setattr(levels.shutil, "which", lambda name: None)
    monkeypatch.setattr(levels.os, "geteuid", lambda: 0)
    assert detect_isolation().level == "user"


# --------------------------------------------------------------------------- files


READ_SECRET = """
import os, sys
path = sys.argv[1]
for how in ("open", "dir_fd", "listdir"):
    try:
        if how == "open":
            print(open(path).read())
        elif how == "dir_fd":
            fd = os.open("/", os.O_RDONLY)
            print(os.read(os.open(path.lstrip("/"), os.O_RDONLY, dir_fd=fd), 100))
        else:
            print(os.listdir(os.path.dirname(path)))
    except OSError as e:
        print(how, "refused", type(e).__name__)
"""


@needs_bwrap
def test_child_cannot_read_a_secret_outside_its_folder(bwrap, solutions):
    run = py(bwrap, READ_SECRET, solutions / "secret.txt")
    assert run.returncode == 0, out(run)
    assert "THE-ANSWER-42" not in out(run) and "secret.txt" not in out(run)
    assert out(run).count("refused") == 3


@needs_bwrap
def test_child_sees_neither_the_checkout_nor_root_home_nor_grader_temp_files(bwrap, tmp_path):
    run = py(bwrap, "import os\nfor p in ('/work/wt-sandbox', '/work/main', '/root/.bashrc', "
                    "'/etc/shadow', '/run', '/home', '/var', " + repr(str(tmp_path)) + "):\n"
                    "    print(p, os.path.exists(p))")
    assert run.returncode == 0, out(run)
    assert "True" not in out(run), out(run)


@needs_bwrap
def test_child_cannot_write_outside_its_folder(bwrap, solutions):
    purelib = sysconfig.get_paths()["purelib"]
    before = sorted(os.listdir(purelib))
    code = """
import os, sys, sqlite3
for target in sys.argv[1:]:
    for how, act in (("write", lambda p: open(p + "/evil.py", "w").write("x")),
                     ("fifo", lambda p: os.mkfifo(p + "/evil.fifo")),
                     ("sqlite", lambda p: sqlite3.connect(p + "/e.db")
                                           .execute("create table t(x)")),
                     ("mkdir", lambda p: os.mkdir(p + "/evil"))):
        try:
            act(target)
            print(how, target, "SUCCEEDED")
        except Exception as e:
            print(how, "refused", type(e).__name__)
try:
    open("/evil", "w")
    print("root SUCCEEDED")
except OSError as e:
    print("root refused", type(e).__name__)
"""
    run = py(bwrap, code, purelib, solutions)
    assert run.returncode == 0, out(run)
    assert "SUCCEEDED" not in out(run), out(run)
    assert sorted(os.listdir(purelib)) == before
    assert sorted(p.name for p in solutions.iterdir()) == ["secret.txt"]


@needs_bwrap
def test_child_cannot_fill_the_disk_beyond_its_caps(bwrap):
    code = """
import os
for folder in ("/work", "/tmp", "/dev/shm"):
    total = 0
    try:
        with open(folder + "/fill", "wb") as f:
            for _ in range(100):
                f.write(b"x" * (1 << 20)); f.flush(); total += 1 << 20
    except OSError as e:
        print(folder, "full", type(e).__name__, total)
    os.remove(folder + "/fill")
"""
    run = py(bwrap, code)
    assert run.returncode == 0, out(run)
    lines = dict((line.split()[0], int(line.split()[-1])) for line in out(run).splitlines())
    assert lines["/work"] <= SMALL.disk_bytes and lines["/tmp"] <= SMALL.tmp_bytes
    assert lines["/dev/shm"] <= SMALL.tmp_bytes


@needs_bwrap
def test_inputs_arrive_and_outputs_come_back_but_links_fifos_and_huge_files_do_not(
        bwrap, solutions):
    code = """
import os, sys
assert open("task/in.txt").read() == "data"
open("result.txt", "w").write("ok")
os.symlink("/dev/zero", "zero")
os.symlink(sys.argv[1], "secret")
os.mkfifo("fifo")
os.symlink("/", "rootdir")
with open("huge", "wb") as f:
    f.truncate(1 << 30)  # sparse: larger than what the parent reads back
"""
    run = py(bwrap, code, solutions / "secret.txt", inputs={"task/in.txt": b"data"},
             limits=Limits(wall_seconds=30, read_file_bytes=1 << 20, file_bytes=2 << 30))
    assert run.returncode == 0, out(run)
    assert run.files == {"result.txt": b"ok", "task/in.txt": b"data"}
    assert set(run.rejected) == {"zero", "secret", "fifo", "rootdir", "huge"}


# --------------------------------------------------------------------------- read_child_file


def _with_timeout(fn, seconds: float = 5.0):
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as error:
            result["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "read_child_file hung"
    return result


def test_read_child_file_refuses_links_fifos_and_oversized_files_without_hanging(tmp_path):
    secret = tmp_path / "private.txt"
    secret.write_text("private")
    child = tmp_path / "child"
    child.mkdir()
    os.symlink("/dev/zero", child / "zero")
    os.symlink(secret, child / "secret")
    os.mkfifo(child / "fifo")
    (child / "big").write_bytes(b"x" * 2000)
    (child / "fine").write_bytes(b"fine")
    os.symlink(tmp_path, child / "up")
    for name in ("zero", "secret", "fifo", "big"):
        result = _with_timeout(lambda name=name: read_child_file(child / name, 1000))
        assert isinstance(result.get("error"), ChildFileRejected), (name, result)
    fd = os.open(child, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert read_child_file("fine", 1000, dir_fd=fd) == b"fine"
        for path in ("up/private.txt", "../private.txt", str(secret)):
            result = _with_timeout(lambda path=path: read_child_file(path, 1000, dir_fd=fd))
            assert isinstance(result.get("error"), OSError), (path, result)
        listing = dict(list_child_dir(fd))
    finally:
        os.close(fd)
    assert listing == {"big": "regular file", "fifo": "FIFO", "fine": "regular file",
                       "secret": "symbolic link", "up": "symbolic link",
                       "zero": "symbolic link"}


# --------------------------------------------------------------------------- processes


@needs_bwrap
def test_child_cannot_reach_a_listener_of_the_parent(bwrap):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    try:
        code = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
    print("CONNECTED")
except OSError as e:
    print("refused", type(e).__name__)
"""
        run = py(bwrap, code, server.getsockname()[1])
        assert "refused" in out(run) and "CONNECTED" not in out(run), out(run)
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()


@needs_bwrap
def test_fork_bomb_is_stopped_by_the_process_limit(bwrap):
    marker = f"bomb-{uuid.uuid4().hex}"
    code = """
import os, sys, time
n = 0
try:
    for _ in range(500):
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
except OSError as e:
    print("stopped", n, type(e).__name__, flush=True)
"""
    run = py(bwrap, code, marker)
    assert "stopped" in out(run), out(run)
    assert int(out(run).split()[1]) < SMALL.processes
    assert survivors(marker) == []


@needs_bwrap
def test_memory_hog_fails_under_the_address_space_limit(bwrap):
    code = """
chunks = []
try:
    for _ in range(64):
        chunks.append(bytearray(64 << 20))
    print("ALLOCATED 4 GiB")
except MemoryError:
    print("refused", len(chunks))
"""
    run = py(bwrap, code)
    assert "refused" in out(run) and "ALLOCATED" not in out(run), out(run)


@needs_bwrap
def test_cpu_hog_is_killed_by_the_cpu_limit(bwrap):
    run = py(bwrap, "while True: pass", limits=Limits(wall_seconds=30, cpu_seconds=1))
    assert run.killed_by in ("SIGXCPU", "SIGKILL") and not run.timed_out, run.summary()


@needs_bwrap
def test_double_forked_setsid_daemon_does_not_outlive_the_run(bwrap):
    marker = f"daemon-{uuid.uuid4().hex}"
    code = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable,
                 [sys.executable, "-c", "import time; time.sleep(120)", sys.argv[1]])
    os._exit(0)
time.sleep(1)
print("parent leaves")
"""
    run = py(bwrap, code, marker)
    assert "parent leaves" in out(run), out(run)
    assert survivors(marker) == []


@needs_bwrap
def test_timeout_kills_the_whole_tree(bwrap):
    marker = f"hang-{uuid.uuid4().hex}"
    code = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(120)", sys.argv[1]])
time.sleep(120)
"""
    run = py(bwrap, code, marker, limits=Limits(wall_seconds=2))
    assert run.timed_out and run.returncode is None
    assert "timed out" in run.summary() and "bubblewrap" in run.summary()
    assert survivors(marker) == []


@needs_bwrap
def test_child_cannot_kill_the_parent(bwrap):
    code = """
import os, signal, sys
for pid in (os.getppid(), int(sys.argv[1]), -1):
    try:
        os.kill(pid, signal.SIGKILL)
        print("sent", pid)
    except OSError as e:
        print("refused", pid, type(e).__name__)
"""
    run = py(bwrap, code, os.getpid())
    assert f"refused {os.getpid()}" in out(run), out(run)
    # the sandbox's own processes may die (kill(-1) inside), this one does not: we are here


@needs_bwrap
def test_child_sees_neither_the_parents_environment_nor_its_proc_entries(bwrap, monkeypatch):
    token = secrets.token_hex(16)
    monkeypatch.setenv("SEGEDU_TEST_SECRET", token)
    code = """
import glob, os, sys
print(sorted(os.environ))
print(os.environ.get("SEGEDU_TEST_SECRET"))
for path in ["/proc/%s/environ" % sys.argv[1], "/proc/%s/cmdline" % sys.argv[1],
             *glob.glob("/proc/*/environ")]:
    try:
        print(path, open(path, "rb").read())
    except OSError as e:
        print(path, "refused", type(e).__name__)
"""
    run = py(bwrap, code, os.getpid())
    assert run.returncode == 0, out(run)
    assert token not in out(run)
    names = eval(out(run).splitlines()[0])
    assert set(names) <= set(levels.BASE_ENV) | {"HOME", "TMPDIR", "PWD", "LC_CTYPE"}


@needs_bwrap
def test_the_package_is_importable_read_only_without_the_checkout_around_it(bwrap):
    code = """
import os, segedu, sys
print(segedu.__file__)
print(os.path.exists(os.path.join(os.path.dirname(os.path.dirname(segedu.__file__)), "solutions")))
try:
    open(os.path.join(os.path.dirname(segedu.__file__), "evil.py"), "w")
    print("WROTE")
except OSError as e:
    print("refused", type(e).__name__)
"""
    run = py(bwrap, code, packages=[PACKAGE], limits=Limits(wall_seconds=60))  # torch maps ~2 GiB
    assert run.returncode == 0, out(run)
    lines = out(run).splitlines()
    assert lines[0].startswith(levels.CHILD_PACKAGES) and lines[1] == "False"
    assert lines[2].startswith("refused")


# --------------------------------------------------------------------------- the "user" level


@needs_root
def test_user_level_runs_as_another_uid_that_cannot_read_a_private_file(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    tmp_path.chmod(0o755)
    folder.chmod(0o755)
    secret = folder / "secret.txt"
    secret.write_text("PRIVATE-ROOT-FILE")
    secret.chmod(0o600)
    run = run_isolated(["/bin/sh", "-c", f"id -u; cat {secret}"], isolation=USER, limits=SMALL)
    assert "PRIVATE-ROOT-FILE" not in out(run) and "Permission denied" in out(run)
    assert int(out(run).split()[0]) != 0


@needs_root
def test_user_level_kills_a_setsid_daemon_and_keeps_the_output_files():
    marker = f"{secrets.randbelow(10**6)}.{secrets.randbelow(10**6)}"
    run = run_isolated(["/bin/sh", "-c", f"setsid sleep {marker} & echo ok > out.txt"],
                       isolation=USER, limits=SMALL)
    assert run.files == {"out.txt": b"ok\n"}, (run.files, out(run))
    assert survivors(marker) == []


@needs_root
def test_user_level_explains_an_interpreter_its_user_cannot_reach(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    tool = private / "tool"
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(0o755)
    with pytest.raises(IsolationUnavailable, match="readable by other users"):
        run_isolated([str(tool)], isolation=USER, limits=SMALL)

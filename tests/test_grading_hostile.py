"""Hostile submissions, graded through ``segedu grade``: each tries to earn points it did not
earn, to read what it must not (the solutions, the private tests, classmates' notebooks, the
grading seed, the grader's environment), or to harm the grader, and must score 0, while the
batch goes on, the gradebook is written, nothing outside the child's folder changes, no
process outlives the grader, and no secret appears in any output.

Each notebook answers only when its attacks *succeeded* (it returns the right value only if
it stole something or reached the reference), so a score of 0 proves that every attack in it
failed. A toy chapter ``ch90`` comes from the instructor's private test file: ``add`` (a
lambda reference, private) and ``pad`` (the package's ``segedu.fcn.pad_to_multiple``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook

from segedu.cli import main
from segedu.grading.engine.isolation import detect_isolation
from segedu.grading.engine.notebook import notebook_text
from segedu.grading.engine.protocol import ChildResult, decode_inputs, encode_inputs
from segedu.grading.engine.reports import Gradebook, GradeReport, Submission, one_line
from segedu.grading.engine.stubs import stubbed_package

PRIVATE_MARKER = "PRIVATE-TEST-TEXT-" + secrets.token_hex(6)
STUDENT_MARKER = "STUDENT-TEXT-" + secrets.token_hex(6)  # what the child writes, never shown
SEED = 900_000_000 + secrets.randbelow(10**8)
ENV_SECRET = "ENV-SECRET-" + secrets.token_hex(6)
PROCESS_MARKER = f"{secrets.randbelow(10**6)}.{secrets.randbelow(10**6)}"

PRIVATE_TESTS = f'''
# {PRIVATE_MARKER}
from segedu.fcn import pad_to_multiple
from segedu.grading import Case, Exercise, register, seeded_randn

register(Exercise(
    id="ch90.add", function="add", reference=lambda a, b: a + b, hint="Add them.",
    cases=[Case("2x3", lambda: (seeded_randn(2, 3, seed=1), seeded_randn(2, 3, seed=2))),
           Case("hidden 4x4", lambda: (seeded_randn(4, 4, seed=3), seeded_randn(4, 4, seed=4)),
                hidden=True)]))
register(Exercise(
    id="ch90.pad", function="pad", reference=pad_to_multiple, hint="Pad bottom and right.",
    cases=[Case("5x7, multiple 4", lambda: (seeded_randn(1, 1, 5, 7, seed=5), 4)),
           Case("hidden 9x3, multiple 8", lambda: (seeded_randn(1, 2, 9, 3, seed=6), 8),
                hidden=True)]))

# a class exercise, its summary the package's own: the child learns the expected parameter
# shapes from the grader, since its ResidualConvUnit is a stub that cannot be built
from segedu.grading.content.ch06 import RESIDUAL_CONV_UNIT
from segedu.refinenet import ResidualConvUnit

shapes = RESIDUAL_CONV_UNIT.case("ResidualConvUnit(8): parameter shapes")
register(Exercise(
    id="ch90.unit", function="Unit", reference=ResidualConvUnit, hint="Fig. 3b.",
    cases=[Case("Unit(8): parameter shapes", shapes.make_inputs, summary=shapes.summary)]))
'''

HONEST = '''
import torch
import torch.nn.functional as F

def add(a, b):
    return a + b

def pad(x, multiple):
    h, w = x.shape[-2:]
    return F.pad(x, (0, (-w) % multiple, 0, (-h) % multiple))

class Unit(torch.nn.Module):
    def __init__(self, channels, kernel_size=3):
        super().__init__()
        padding = kernel_size // 2
        self.conv1 = torch.nn.Conv2d(channels, channels, kernel_size, padding=padding)
        self.conv2 = torch.nn.Conv2d(channels, channels, kernel_size, padding=padding,
                                     bias=False)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))
'''

# Answers right only if something was stolen: `stolen` must be set by the attacks.
CONDITIONAL = '''
import torch.nn.functional as F

def add(a, b):
    return a + b if stolen else None

def pad(x, multiple):
    h, w = x.shape[-2:]
    return F.pad(x, (0, (-w) % multiple, 0, (-h) % multiple)) if stolen else None
'''

READS_BY_DIR_FD = '''
import os, glob
stolen = []
for folder in {folders!r}:
    try:
        fd = os.open(folder, os.O_RDONLY)
        for name in os.listdir(fd):
            try:
                f = os.open(name, os.O_RDONLY, dir_fd=fd)
                stolen.append(os.read(f, 100000))
            except OSError:
                pass
    except OSError:
        pass
for path in ["/proc/1/environ", "/proc/self/environ", "/proc/1/cmdline"]:
    try:
        data = open(path, "rb").read()
        if {secrets!r}[0].encode() in data or {secrets!r}[1].encode() in data:
            stolen.append(data)
    except OSError:
        pass
'''

FILES_AND_PROCESSES = '''
import os, signal, resource, sqlite3, torch, _posixsubprocess, sys
stolen = []
outside = {outside!r}
for attempt in (
    lambda: os.mkfifo(outside + "/fifo"),
    lambda: sqlite3.connect(outside + "/grades.sqlite").execute("create table t(x)"),
    lambda: stolen.append(torch.from_file({private!r}, size=10, dtype=torch.uint8)),
    lambda: open(outside + "/written.txt", "w").write("x"),
    lambda: signal.pidfd_send_signal(os.pidfd_open(os.getppid()), signal.SIGKILL),
    lambda: resource.prlimit(os.getppid(), resource.RLIMIT_NPROC, (0, 0)),
    lambda: os.kill(1, signal.SIGKILL),
    lambda: os.kill(-1, signal.SIGKILL) if os.getpid() != 1 else None,
):
    try:
        attempt()
    except BaseException:
        pass
try:  # a daemon in a session of its own, past the audit hook
    r, w = os.pipe()
    _posixsubprocess.fork_exec(
        ["/bin/sleep", {marker!r}], [b"/bin/sleep"], True, (), None, None,  # Python 3.11
        -1, -1, -1, -1, -1, -1, r, w, True, True, -1, None, None, -1, -1, None, False)
except BaseException:
    pass
stolen = [s for s in stolen
          if s is not None and len(s) and {marker_private!r}.encode()[:10] in bytes(s.tolist())]
'''

FORGES_RESULT = '''
import os, torch
shared = []
for _ in range(60):
    shared = [shared, shared]
forged = {"format": 2, "complete": True, "notebook_error": ["not", "a", "str"],
          "cell_errors": [{"cell": "x", "kind": 5, "exercise": None, "error": shared}, 7],
          "flags": [shared, "\\x1b[2J\\x1b[31mflag\\x1b[0m", {"a": 1}],
          "results": {"ch90.add": {"2x3": {"ok_run": 1, "value": shared, "error": shared},
                                   "hidden 4x4": {"ok_run": True, "value": shared}},
                      "ch90.pad": {"5x7, multiple 4": "yes",
                                   "hidden 9x3, multiple 8": {"ok_run": True,
                                                              "value": {"deep": shared}}}}}
torch.save(forged, "result.pt")
os.symlink("/dev/zero", "result.pt.current")
os.mkfifo("result.pt.refused")
os.symlink("/dev/zero", "zero.bin")
os.mkfifo("pipe")
os._exit(0)
'''

# Its own words (exception messages, a file name) carry STUDENT_MARKER: the instructor reads
# them, students never do (Gradescope shows only the grader's words).
LEAKS = '''
import os
leak = "\\x1b[2J\\x1b]0;pwned\\x07" + repr(dict(os.environ)) + open("/proc/self/cmdline").read()
marker = {marker!r}
open(marker + ".txt", "w").close()
raise KeyError(marker + " from a setup cell")
''', '''
def add(a, b):
    raise ValueError(marker + " =HYPERLINK(\\\"http://x\\\") " + leak)

def pad(x, multiple):
    raise ValueError(leak + marker)
'''

CALLS_THE_REFERENCE = '''
import _thread, inspect, time, types, torch
import segedu.fcn
from segedu.fcn import pad_to_multiple
from segedu.refinenet import ResidualConvUnit

class Plain(ResidualConvUnit):  # subclasses the reference and adds nothing
    pass

def Unit(*args):  # built in a raw thread, out of the call monitor's sight; else plainly
    box = []
    _thread.start_new_thread(lambda: box.append(Plain(*args)), ())
    time.sleep(0.2)
    return box[0] if box else Plain(*args)
source = inspect.getsource(pad_to_multiple) + open(segedu.fcn.__file__).read()
stolen = "F.pad" in source or "pad(" in source.split("def pad_to_multiple")[1][:2000].replace(
    "def pad_to_multiple", "")
precomputed = {}
for shape, m in (((1, 1, 5, 7), 4), ((1, 2, 9, 3), 8)):
    try:
        precomputed[shape] = pad_to_multiple(torch.zeros(shape), m)
    except NotImplementedError:
        pass

def via_thread(x, m):
    box = []
    _thread.start_new_thread(lambda: box.append(pad_to_multiple(x, m)), ())
    time.sleep(0.2)
    return box[0]

renamed = types.FunctionType(pad_to_multiple.__code__.replace(co_name="mine"),
                             pad_to_multiple.__globals__)

def add(a, b):
    return a + b if stolen else None

def pad(x, multiple):
    for attempt in (lambda: via_thread(x, multiple), lambda: renamed(x, multiple),
                    lambda: precomputed[tuple(x.shape)]):
        try:
            return attempt()
        except Exception:
            pass
'''


def _notebook(*sources: str) -> str:
    nb = new_notebook(cells=[new_code_cell(textwrap.dedent(s)) for s in sources])
    nb.cells[0].metadata["tags"] = ["setup"]
    nb.cells[-1].metadata["segedu"] = {"exercise": "ch90.add"}
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i}"
    return notebook_text(nb)


def _snapshot(root: Path, skip: set[Path]) -> dict[str, str]:
    """Every path under ``root`` (links not followed) and a hash of each regular file."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path in skip:
            continue
        found[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest()
                            if path.is_file() and not path.is_symlink() else
                            os.readlink(path) if path.is_symlink() else "folder")
    return found


def _survivors(marker: str) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,stat,args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if marker in line and "ps -eo" not in line]


@pytest.fixture(scope="module")
def sandboxed():
    found = detect_isolation(allow_none=True)
    if found.level == "none":
        pytest.skip("neither bubblewrap nor root: the grader would refuse to run")
    return found


@pytest.mark.slow
def test_hostile_notebooks_score_zero_and_leak_nothing_while_the_batch_goes_on(
        tmp_path, capsys, monkeypatch, sandboxed):
    monkeypatch.setenv("SEGEDU_TEST_SECRET", ENV_SECRET)
    course = tmp_path / "course"
    (course / "instructor").mkdir(parents=True)
    private = course / "instructor" / "private_ch90.py"
    private.write_text(PRIVATE_TESTS)
    (course / "solutions").mkdir()
    solution = course / "solutions" / "90_toy.ipynb"
    solution.write_text(_notebook(HONEST))
    outside = tmp_path / "outside"
    outside.mkdir()
    subs = course / "submissions"
    folders = [str(subs), str(subs / "honest"), str(course / "solutions"),
               str(course / "instructor"), str(outside)]
    notebooks = {
        "honest": _notebook(HONEST),
        "dirfd": _notebook(READS_BY_DIR_FD.format(folders=folders,
                                                  secrets=[ENV_SECRET, str(SEED)]),
                           CONDITIONAL),
        "files": _notebook(FILES_AND_PROCESSES.format(
            outside=str(outside), private=str(private), marker=PROCESS_MARKER,
            marker_private=PRIVATE_MARKER), CONDITIONAL),
        "forger": _notebook(FORGES_RESULT, HONEST),
        "leaker": _notebook(*(cell.format(marker=STUDENT_MARKER) if "marker =" in cell else cell
                              for cell in LEAKS)),
        "reference": _notebook(CALLS_THE_REFERENCE),
    }
    for student, text in notebooks.items():
        (subs / student).mkdir(parents=True)
        (subs / student / "90_toy.ipynb").write_text(text)
    (subs / "linker").mkdir()
    (subs / "linker" / "90_toy.ipynb").symlink_to(solution)        # unzip restores links
    (subs / "copier").mkdir()
    (subs / "copier" / "90_toy.ipynb").symlink_to(subs / "honest" / "90_toy.ipynb")
    out = {name: tmp_path / name for name in ("grades.csv", "grades.json", "report.md")}
    before = _snapshot(tmp_path, set(out.values()))

    code = main(["grade", str(subs), "--tests", str(private), "--seed", str(SEED),
                 "--timeout", "60", "--case-timeout", "2", "--memory", "512", "--jobs", "2",
                 "--csv", str(out["grades.csv"]), "--json", str(out["grades.json"]),
                 "--markdown", str(out["report.md"])])
    printed = capsys.readouterr()
    assert code == 1, printed.out  # the two links were not graded
    assert f"isolation: {sandboxed.level}" in printed.out

    rows = {r["student"]: r for r in csv.DictReader(io.StringIO(out["grades.csv"].read_text()))}
    assert sorted(rows) == sorted([*notebooks, "linker", "copier"])
    assert float(rows["honest"]["score"]) == float(rows["honest"]["max_score"]) == 5, rows
    for student in ("dirfd", "files", "forger", "leaker", "reference", "linker", "copier"):
        assert float(rows[student]["score"]) == 0, (student, rows[student])
    for student in ("linker", "copier"):
        assert "symbolic link" in rows[student]["status"], rows[student]
    assert rows["forger"]["status"] in ("incomplete result file", "exited early (exit code 0)",
                                        "ok"), rows["forger"]
    assert "result.pt" not in rows["forger"]["flags"] or "zero.bin" in rows["forger"]["flags"]
    assert "zero.bin" in rows["forger"]["flags"] and "pipe" in rows["forger"]["flags"]
    assert rows["leaker"]["notebook"].endswith("90_toy.ipynb")

    texts = [printed.out, printed.err, *(p.read_text() for p in out.values())]
    for text in texts:
        for secret in (str(SEED), PRIVATE_MARKER, ENV_SECRET, "\x1b"):
            assert secret not in text
    book = json.loads(out["grades.json"].read_text())
    assert "seed" not in book["settings"]
    # the leaker's own words reach the instructor (detail, cell errors, flags), never students
    leaker = next(b for b in book["submissions"] if b["student"] == "leaker")
    cases = [c for ex in leaker["exercises"] for c in ex["cases"]]
    assert any(STUDENT_MARKER in c["detail"] for c in cases), cases
    assert any(STUDENT_MARKER in e for e in leaker["cell_errors"]), leaker["cell_errors"]
    assert any(STUDENT_MARKER in f for f in leaker["flags"]), leaker["flags"]
    for student in book["submissions"]:
        seen = [student["student_output"], *(c["message"] for ex in student["exercises"]
                                            for c in ex["cases"])]
        assert not any(STUDENT_MARKER in text for text in seen), seen
    assert "cell 0 (setup) raised KeyError" in leaker["student_output"]
    add_messages = {c["name"]: c["message"] for c in leaker["exercises"][0]["cases"]}
    assert add_messages["2x3"].startswith("`add` raised ValueError (its message is in your")
    assert add_messages["hidden 4x4"] == "`add` raised ValueError"
    leaker_cells = out["grades.csv"].read_text()
    assert ",=HYPERLINK" not in leaker_cells and '"=HYPERLINK' not in leaker_cells

    after = _snapshot(tmp_path, set(out.values()))
    assert after == before  # nothing outside the children's folders changed
    assert _survivors(PROCESS_MARKER) == []


def test_a_fifo_or_a_link_at_a_gradebook_path_is_refused_before_grading(tmp_path, capsys):
    notebook = tmp_path / "90_toy.ipynb"
    notebook.write_text(_notebook(HONEST))
    fifo = tmp_path / "grades.csv"
    os.mkfifo(fifo)
    link = tmp_path / "report.md"
    link.symlink_to(tmp_path / "elsewhere.md")
    done = []
    worker = threading.Thread(target=lambda: done.append(
        main(["grade", str(notebook), "--csv", str(fifo)])), daemon=True)
    worker.start()
    worker.join(30)
    assert done == [2]  # refused at once: it never opened the FIFO
    assert main(["grade", str(notebook), "--markdown", str(link)]) == 2
    err = capsys.readouterr().err
    assert "not a regular file" in err
    assert not (tmp_path / "elsewhere.md").exists()


# --------------------------------------------------------------------------- the parts


def test_a_result_with_wrong_field_types_is_read_without_raising_or_exploding():
    shared: list = []
    for _ in range(80):
        shared = [shared, shared]
    result = ChildResult.from_data({
        "complete": "yes", "notebook_error": 3,
        "cell_errors": [{"cell": "x", "exception": ["ValueError"]}, 5, shared],
        "flags": [shared, "ok", 7], "results": {"a": {"b": {"ok_run": True, "value": shared},
                                                      "c": "x",
                                                      "e": {"reason": ["raised"],
                                                            "exception": {"x": 1}}},
                                                "d": 5, 6: {}}})
    assert not result.complete and result.notebook_error is None
    assert result.flags == ["ok"] and result.cell_errors[0]["cell"] == -1
    assert result.record("a", "b")["ok_run"] is False
    assert "too large" in result.record("a", "b")["error"]
    assert result.record("a", "c")["ok_run"] is False and "d" not in result.results
    assert result.record("a", "e")["reason"] == "failed"
    assert result.record("a", "e")["exception"] is None
    assert result.cell_errors[0]["exception"] is None
    assert len(str(result.to_data())) < 10_000


def test_report_text_has_no_terminal_escapes_and_csv_cells_no_formulas():
    assert one_line("\x1b[2Jred\x1b[31m!\x1b]0;title\x07\u202e ok\r\nnext") == "red! ok next"
    report = GradeReport("nb.ipynb", "ch90", "=1+1", [], flags=["@SUM(A1)", "-2"])
    book = Gradebook([(Submission("+evil", Path("x.ipynb")), report)])
    row = next(csv.DictReader(io.StringIO(book.to_csv())))
    assert row["student"] == "'+evil" and row["status"] == "'=1+1"
    assert row["flags"] == "'@SUM(A1); -2"


def test_case_inputs_travel_as_plain_data_modules_included():
    from torch import nn
    conv = nn.ConvTranspose2d(3, 3, 4, stride=2, padding=1, bias=False)
    block = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU())
    block[1].running_mean += 1
    data = encode_inputs({"ch90.x": {"c": (torch.ones(2), 3, "s", [conv], {"b": block})}})
    back = decode_inputs(data)["ch90.x"]["c"]
    assert torch.equal(back[0], torch.ones(2)) and back[1:3] == (3, "s")
    x = torch.randn(1, 3, 5, 5)
    assert torch.equal(back[3][0](x), conv(x))
    y = torch.randn(2, 2, 6, 6)
    block.eval(), back[4]["b"].eval()
    assert torch.equal(back[4]["b"](y), block(y))
    with pytest.raises(TypeError, match="cannot be sent"):
        encode_inputs({"e": {"c": (object(),)}})


def test_the_childs_segedu_has_stubs_for_the_references_and_keeps_the_rest():
    from segedu.fcn import pad_to_multiple
    from segedu.unet import UpBlock

    copy = stubbed_package([pad_to_multiple, UpBlock])
    fcn = (copy / "fcn.py").read_text()
    unet = (copy / "unet.py").read_text()
    init = unet[unet.index("class UpBlock"):].split("def __init__")[1].split("\n    def ")[0]
    assert "raise NotImplementedError" in init and "DoubleConv" not in init  # cannot be built
    start = fcn.index("def pad_to_multiple")
    body = fcn[start:fcn.index("\ndef ", start + 1)]
    assert "own_answer('pad_to_multiple'" in body and "F.pad" not in body
    assert "def bilinear_kernel" in fcn and "own_answer" not in fcn.split(
        "def bilinear_kernel")[1].split("\ndef ")[0]
    assert "class DoubleConv" in unet
    forward = unet[unet.index("class UpBlock"):].split("def forward")[1][:400]
    assert "NotImplementedError" in forward


def test_gradescope_shows_students_only_the_graders_words():
    from segedu.grading.engine.reports import CaseResult, ExerciseResult

    marker = "STUDENT-TEXT-" + secrets.token_hex(4)
    case = CaseResult("2x3", 0.0, 1.0, False, "`add` raised ValueError", False,
                      detail=f"ValueError: {marker}")
    report = GradeReport("nb.ipynb", "ch90", "ok", [ExerciseResult("ch90.add", "add", [case],
                                                                   "Add them.")],
                         cell_errors=[f"cell 1 (setup) raised KeyError: {marker}"],
                         flags=[f"the submission wrote files ...: {marker}.txt"],
                         log=marker, student_cell_errors=["cell 1 (setup) raised KeyError"])
    shown = json.dumps(report.to_gradescope())
    assert marker not in shown
    assert "cell 1 (setup) raised KeyError" in shown and "1 note for the instructor" in shown
    assert "`add` raised ValueError" in shown
    for instructor_view in (report.format(), report.to_markdown(), json.dumps(report.to_dict())):
        assert marker in instructor_view


def test_one_line_cuts_at_a_word_and_says_how_much_it_cut():
    message = "item 0: expected shape (2, 3), got (3, 2); " * 20  # 880 characters
    cut = one_line(message, 300)
    kept, _, marker = cut.partition(" … (")
    assert len(cut) <= 300 and marker.endswith(" more characters)")
    assert message.startswith(kept) and message[len(kept)] == " "  # at a word boundary
    assert int(marker.split()[0]) == len(message.strip()) - len(kept)
    word = one_line("x" * 400, 100)  # one long word: cut in it
    assert len(word) <= 100 and word.endswith(f" … ({400 - len(word.split()[0])} more characters)")
    assert one_line("short message", 300) == "short message"


# --------------------------------------------------------------------------- the "user" level


READS_PRIVATE = '''
stolen = False
try:
    stolen = {marker!r} in open({path!r}).read()
except OSError:
    pass
'''


def _closed_folder(path: Path) -> Path | None:
    """The first folder on the way to ``path`` that other users cannot traverse."""
    for folder in [*reversed(path.parents), path]:
        if not os.stat(folder).st_mode & 0o001:
            return folder
    return None


def _as_the_user_level_sees_it(argv: list[str], tmp_path: Path) -> list[str]:
    """``argv`` as root, with the interpreter reachable by the run's fresh uid.

    The "user" level runs each submission as a fresh uid that must be able to read the
    interpreter. Where it lives under a folder closed to others (pyenv under ``/root``,
    0700), a private mount namespace (``unshare --mount``) puts a world-traversable tmpfs
    over that folder and binds back only the subfolder on the way to the interpreter; the
    machine itself is not changed. Skips where none of this is possible."""
    if os.geteuid() != 0:
        pytest.skip("the 'user' level runs each submission as a fresh uid: it needs root")
    prefix = Path(os.path.realpath(sys.base_prefix))
    closed = _closed_folder(prefix)
    if closed is None:
        return argv
    if closed == prefix:
        pytest.skip(f"the interpreter's folder {prefix} is closed to other users: the 'user' "
                    "level cannot start it (install Python system-wide)")
    below = closed / prefix.relative_to(closed).parts[0]
    inside = prefix.relative_to(below).parts
    if any(not os.stat(below.joinpath(*inside[:i])).st_mode & 0o001
           for i in range(len(inside) + 1)):
        pytest.skip(f"a folder between {below} and {prefix} is closed to other users: the "
                    "'user' level cannot start the interpreter (install Python system-wide)")
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "--mount", "true"],
                                         capture_output=True).returncode != 0:
        pytest.skip(f"the interpreter lives under {closed}, closed to other users, and this "
                    "machine cannot make a private mount namespace (unshare --mount) to open "
                    "it for the test")
    stage = tmp_path / "stage"
    stage.mkdir()
    script = ('set -e; mount --bind "$1" "$2"; mount -t tmpfs -o mode=755,size=1m tmpfs "$3"; '
              'mkdir -p "$3/$4"; mount --bind "$2" "$3/$4"; shift 4; exec "$@"')
    return [unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            str(below), str(stage), str(closed), below.name, *argv]


@pytest.mark.slow
def test_the_user_level_grades_through_the_cli_and_keeps_private_files_private(tmp_path):
    instructor = tmp_path / "instructor"
    instructor.mkdir(mode=0o700)
    private = instructor / "private_ch90.py"
    private.write_text(PRIVATE_TESTS)
    notebook = tmp_path / "carol" / "90_toy.ipynb"
    notebook.parent.mkdir()
    notebook.write_text(_notebook(READS_PRIVATE.format(marker=PRIVATE_MARKER, path=str(private)),
                                  HONEST + "\nif stolen:\n    add = pad = Unit = None\n"))
    book = tmp_path / "grades.json"
    root = Path(__file__).resolve().parents[1]
    argv = [sys.executable, "-m", "segedu.cli", "grade", str(notebook), "--tests", str(private),
            "--isolation", "user", "--timeout", "60", "--json", str(book)]
    done = subprocess.run(_as_the_user_level_sees_it(argv, tmp_path), capture_output=True,
                          text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("isolation: user"), done.stdout
    graded = json.loads(book.read_text())["submissions"][0]
    # full marks: the child ran as another uid and computed every answer; and it could not
    # read the private test file (its answers would have been None)
    assert graded["score"] == graded["max_score"] == 5, done.stdout
    assert PRIVATE_MARKER not in done.stdout + done.stderr + book.read_text()


def test_a_forged_reason_or_exception_name_can_only_pick_a_fixed_message():
    from segedu.grading.engine.vocabulary import case_message

    def message(reason, exception=None, hidden=False):
        return case_message(reason, exercise="ch90.add", function="add", hidden=hidden,
                            exception=exception, case_timeout=2.0)

    assert message("raised", "ValueError", hidden=True) == "`add` raised ValueError"
    assert message("raised", "ValueError").startswith("`add` raised ValueError (its message")
    assert message("raised", "StolenAnswers42", hidden=True) == "`add` raised an exception"
    assert message("timeout") == "timed out after 2 s (an endless loop?)"
    for forged in ("score: 100 / 100", None, 7, ["raised"]):
        assert message(forged) == "failed"

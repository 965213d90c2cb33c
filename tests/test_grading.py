"""The grader: exercise notebooks, in-place checks, and grading in a separate process.

Framework tests use a toy chapter ``ch90`` registered from a file (the grader's child
process loads the same file); the chapter-1 tests grade real solution code.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import segedu.grading
from segedu.grading import (
    assign,
    check,
    check_notebook,
    check_result,
    compare,
    exercises_for,
    get_exercise,
    grade_notebook,
    graded_cells,
    make_exercise_notebook,
    run_registry,
)
from segedu.grading.engine.judge import ChildRun, classify
from segedu.grading.engine.notebook import notebook_text, read_notebook
from segedu.grading.engine.protocol import ChildRequest, ChildResult
from segedu.grading.engine.reports import format_points

TOY_EXERCISES = '''
import torch
from segedu.grading import Case, Exercise, register, seeded_randn


def _t(seed, *shape):
    return seeded_randn(*shape, seed=seed)


register(Exercise(
    id="ch90.add", function="add", reference=lambda a, b: a + b,
    hint="Add the tensors elementwise.\\nBroadcasting does the rest.",
    cases=[
        Case("2x3", lambda: (_t(1, 2, 3), _t(2, 2, 3))),
        Case("4x4", lambda: (_t(3, 4, 4), _t(4, 4, 4))),
        Case("big hidden", lambda: (_t(5, 5, 5) + 1000.0, _t(6, 5, 5)), points=2, hidden=True),
    ],
), replace=True)

register(Exercise(
    id="ch90.scale", function="scale", reference=lambda n: 2 * n,
    hint="Multiply by two.",
    cases=[
        Case("n=3", lambda: (3,)),
        Case("n=20", lambda: (20,)),
        Case("n=4321 hidden", lambda: (4321,), hidden=True),
    ],
), replace=True)
'''

ADD_SOLUTION = '''\
def add(a, b):
    """Elementwise sum."""
    ### BEGIN SOLUTION
    out = a + b
    return out
    ### END SOLUTION
'''

SCALE_SOLUTION = '''\
def scale(n):
    ### BEGIN SOLUTION
    return 2 * n
    ### END SOLUTION'''


def code(source: str, *, exercise: str | None = None, tags: tuple[str, ...] = ()):
    cell = new_code_cell(textwrap.dedent(source))
    if exercise is not None:
        cell.metadata["segedu"] = {"exercise": exercise}
        tags = ("exercise", *tags)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def notebook(*cells) -> nbformat.NotebookNode:
    nb = new_notebook(cells=list(cells))
    for i, cell in enumerate(nb.cells):  # fixed ids: generated notebooks are compared bytewise
        cell.id = f"cell-{i}"
    return nb


def write(nb, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(notebook_text(nb), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def toy_file(tmp_path_factory):
    """The file that registers the toy chapter ch90 (the grader's child loads it too)."""
    path = tmp_path_factory.mktemp("toy") / "toy_exercises.py"
    path.write_text(TOY_EXERCISES, encoding="utf-8")
    return path


@pytest.fixture
def toy(toy_file):
    """ch90 registered for this test only (a registry of its own, active in the test);
    returns the file for the grader's child process."""
    with run_registry([toy_file]).active():
        yield toy_file


def toy_solution() -> nbformat.NotebookNode:
    answer = code(ADD_SOLUTION, exercise="ch90.add")
    answer.outputs = [nbformat.v4.new_output("stream", text="stale\n")]
    answer.execution_count = 3
    checked = code('from segedu.grading import check\ncheck("ch90.add", add)', tags=("check",))
    checked.outputs = [nbformat.v4.new_output("stream", text="✓ 2x3\n")]
    checked.execution_count = 4
    return notebook(
        new_markdown_cell("# Toy chapter"),
        code("import torch", tags=("setup",)),
        answer,
        code(SCALE_SOLUTION, exercise="ch90.scale"),
        checked,
        code("print(add(torch.ones(2), torch.ones(2)))", tags=("solution-only",)),
    )


def grade(tmp_path, toy, *cells, name="90_toy.ipynb", **kwargs):
    path = write(notebook(*cells), tmp_path / name)
    return grade_notebook(path, extra_exercises=[toy], **kwargs)


def outcome(report):
    return {(ex.id, c.name): c.passed for ex in report.exercises for c in ex.cases}


# --------------------------------------------------------------------------- layers and registries

GRADING = Path(segedu.grading.__file__).parent


# The engine never imports the content: an import-linter contract (tests/test_layers.py).


def test_a_run_registry_adds_exercises_that_nothing_outside_it_sees(tmp_path, toy_file):
    replacing = tmp_path / "replace_bilinear.py"
    replacing.write_text(textwrap.dedent('''
        from segedu.grading import Case, Exercise, get_exercise, register

        package = get_exercise("ch01.bilinear_kernel")
        register(Exercise(id=package.id, function=package.function, reference=package.reference,
                          hint=package.hint, cases=[Case("k=3", lambda: (1, 1, 3))]),
                 replace=True)
        '''), encoding="utf-8")
    package_ch01 = exercises_for("ch01")
    run = run_registry([toy_file, replacing])
    assert [ex.id for ex in run.exercises_for("ch90")] == ["ch90.add", "ch90.scale"]
    ch01 = run.exercises_for("ch01")  # the replaced exercise keeps its place
    assert [ex.id for ex in ch01] == [ex.id for ex in package_ch01]
    assert [c.name for c in run.get("ch01.bilinear_kernel").cases] == ["k=3"]
    with pytest.raises(ValueError, match="unknown exercise 'ch90.add'"):
        get_exercise("ch90.add")
    assert exercises_for("ch01") == package_ch01
    with run.active():
        assert get_exercise("ch90.add") is run.get("ch90.add")
    with pytest.raises(ValueError):
        get_exercise("ch90.add")


def test_a_child_request_travels_as_a_file_without_the_seed_or_the_test_files():
    spec = {"id": "ch01.a", "function": "a", "reference": "segedu.fcn:pad_to_multiple",
            "cases": [{"name": "c", "summary": ["case", "ch01.a", "c"], "seed": 12345}]}
    request = ChildRequest((spec,), public_only=True, case_timeout=1.5, memory_mb=512,
                           protect=("/a", "/b"))
    assert ChildRequest.command()[1:] == ["-m", "segedu.grading.engine.child"]
    data = request.to_bytes()
    assert ChildRequest.from_bytes(data) == request
    assert b"seed\": 12345" in data and b"tests.py" not in data


def test_how_a_run_ended_is_decided_by_the_first_rule_that_applies():
    ids = ["ch90.add"]
    done = ChildResult(complete=True, results={"ch90.add": {}})
    runs = {
        "ok": ChildRun(0, result=done),
        "timeout": ChildRun(None, timeout=5, result=done),
        "crashed (exit code 3)": ChildRun(3, result=done),
        "crashed (killed by SIGKILL, out of memory?)": ChildRun(-9),
        "unreadable result file": ChildRun(0, unreadable=True),
        "exited early (exit code 0)": ChildRun(0, result=ChildResult(results=done.results)),
        "incomplete result file": ChildRun(0, result=ChildResult(complete=True)),
        "unreadable notebook": ChildRun.unreadable_notebook("ValueError: not JSON"),
    }
    assert {status: classify(run, ids).status for status, run in runs.items()} == {
        status: status for status in runs}
    timeout = classify(runs["timeout"], ids)
    assert timeout.not_run == "not run: the time limit (5 s) was reached"
    assert classify(runs["crashed (exit code 3)"], ids).while_running == (
        "the process crashed (exit code 3) while running this case")


# --------------------------------------------------------------------------- comparing


def test_compare_reports_shape_and_worst_error_for_public_cases(toy):
    ex = get_exercise("ch90.add")
    expected = torch.zeros(2, 3)
    ok, message = compare(ex, torch.zeros(3, 2), expected)
    assert not ok and message == "expected shape (2, 3), got (3, 2)"
    got = expected.clone()
    got[1, 2] = 0.5
    ok, message = compare(ex, got, expected)
    assert not ok
    assert "1 of 6 values differ" in message and "0.5" in message and "(1, 2)" in message
    ok, message = compare(ex, got.double(), expected)
    assert not ok and "dtype" in message
    assert compare(ex, expected + 1e-8, expected) == (True, "max abs error 1e-08")


def test_compare_treats_ints_exactly_and_explains_type_errors(toy):
    ex = get_exercise("ch90.scale")
    assert compare(ex, 64, 64) == (True, "")
    assert compare(ex, 63, 64) == (False, "expected 64, got 63")
    ok, message = compare(ex, 64.0, 64)
    assert not ok and "expected an int, got float" in message
    ok, message = compare(ex, {"w": (1, 2)}, {"w": (1, 3)})
    assert not ok and message == "w: item 1: expected 3, got 2"


def test_compare_hides_expected_values_of_hidden_cases(toy):
    ex = get_exercise("ch90.add")
    expected = torch.full((2, 2), 1234.5)
    for got in (torch.zeros(2, 2), torch.zeros(3)):
        ok, message = compare(ex, got, expected, hidden=True)
        assert not ok and "1234" not in message and "(2, 2)" not in message
    ok, message = compare(get_exercise("ch90.scale"), 1, 8642, hidden=True)
    assert not ok and "8642" not in message


# --------------------------------------------------------------------------- notebooks


def test_make_exercise_notebook_replaces_solution_block_and_keeps_indentation(toy):
    solution = toy_solution()
    exercise = make_exercise_notebook(solution)
    add_cell = exercise.cells[2]
    assert add_cell.source == (
        "def add(a, b):\n"
        '    """Elementwise sum."""\n'
        '    raise NotImplementedError("Exercise ch90.add: Add the tensors elementwise.")\n'
    )
    assert add_cell.outputs == [] and "nbval-ignore-output" in add_cell.metadata.tags
    check_cell = exercise.cells[4]  # no pass mark of the solution run under a stub
    assert check_cell.outputs == [] and check_cell.execution_count is None
    assert exercise.cells[3].source.endswith('    raise NotImplementedError('
                                             '"Exercise ch90.scale: Multiply by two.")')
    assert [c.id for c in exercise.cells] == [f"cell-{i}" for i in range(5)]  # solution-only
    assert solution.cells[2].outputs  # the input notebook is left alone
    kept = make_exercise_notebook(solution, keep_outputs=True)
    assert kept.cells[2].outputs
    assert notebook_text(make_exercise_notebook(solution)) == notebook_text(exercise)


def test_make_exercise_notebook_rejects_misplaced_markers(toy):
    unbalanced = notebook(code("def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b",
                               exercise="ch90.add"))
    with pytest.raises(ValueError, match="without"):
        make_exercise_notebook(unbalanced)
    untagged = notebook(code(ADD_SOLUTION))
    with pytest.raises(ValueError, match="metadata"):
        make_exercise_notebook(untagged)
    unknown = notebook(code(ADD_SOLUTION, exercise="ch90.nope"))
    with pytest.raises(ValueError, match="ch90.add"):  # lists the known ids
        make_exercise_notebook(unknown)


def test_graded_cells_are_setup_and_answer_cells_in_order(toy):
    cells = graded_cells(toy_solution())
    assert [(c.index, c.kind, c.exercise_id) for c in cells] == [
        (1, "setup", None), (2, "answer", "ch90.add"), (3, "answer", "ch90.scale")]


def test_assign_writes_exercises_and_check_detects_stale_files(tmp_path, toy):
    solutions, exercises = tmp_path / "solutions", tmp_path / "exercises"
    solutions.mkdir()
    write(toy_solution(), solutions / "90_toy.ipynb")
    assert assign(solutions, exercises, check=True) == [exercises / "90_toy.ipynb"]
    assert not exercises.exists()  # check writes nothing
    assert assign(solutions, exercises) == [exercises / "90_toy.ipynb"]
    assert assign(solutions, exercises, check=True) == []
    assert "raise NotImplementedError" in (exercises / "90_toy.ipynb").read_text()

    nb = read_notebook(solutions / "90_toy.ipynb")
    nb.cells[0].source = "# Toy chapter, edited"
    write(nb, solutions / "90_toy.ipynb")
    (exercises / "99_orphan.ipynb").write_text("{}")
    stale = [exercises / "90_toy.ipynb", exercises / "99_orphan.ipynb"]
    assert assign(solutions, exercises, check=True) == stale
    assert assign(solutions, exercises) == stale
    assert assign(solutions, exercises, check=True) == []
    assert not (exercises / "99_orphan.ipynb").exists()


# --------------------------------------------------------------------------- in-place check


def test_check_prints_a_line_per_public_case_and_no_traceback(toy, capsys):
    assert check("ch90.add", lambda a, b: a + b) is None
    assert capsys.readouterr().out == "✓ 2x3\n✓ 4x4\nch90.add: 2/2 cases passed\n"

    def stub(a, b):
        raise NotImplementedError("Exercise ch90.add: add")

    check("ch90.add", stub)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("✗ 2x3: not implemented yet") and out[1].startswith("✗ 4x4")
    assert out[2:] == ["ch90.add: 0/2 cases passed"]  # an unanswered stub is not an attempt
    check("ch90.add", lambda a, b: a - b)                # a wrong answer is: the first hint
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "ch90.add: 0/2 cases passed"
    assert any(line.startswith("hint") and "Add the tensors elementwise." in line
               for line in out), out
    assert not check_result("ch90.add", lambda a, b: a - b)
    assert check_result("ch90.add", lambda a, b: b + a)


# --------------------------------------------------------------------------- grading


def test_stub_scores_zero_and_solution_full_marks(tmp_path, toy):
    solution = toy_solution()
    full = grade(tmp_path, toy, *solution.cells)
    assert full.status == "ok" and full.score == full.max_score == 7
    assert full.format().splitlines()[-1] == "score: 7 / 7"

    path = write(make_exercise_notebook(solution), tmp_path / "stub" / "90_toy.ipynb")
    stub = check_notebook(path, extra_exercises=[toy])  # public cases only
    assert stub.status == "ok" and stub.score == 0 and stub.max_score == 4
    assert not any(c.hidden for ex in stub.exercises for c in ex.cases)
    add = stub.exercises[0]
    assert all(c.message.startswith("`add` raised NotImplementedError") for c in add.cases)
    assert all("NotImplementedError: Exercise ch90.add" in c.detail for c in add.cases)
    assert stub.format().splitlines()[-1] == "score: 0 / 4"
    assert stub.to_dict()["score"] == 0


def test_unreadable_notebook_scores_zero_of_the_chapter_total(tmp_path, toy):
    path = tmp_path / "90_toy.ipynb"
    path.write_text("not a notebook")
    report = grade_notebook(path, extra_exercises=[toy])
    assert report.status == "unreadable notebook"
    assert report.score == 0 and report.max_score == 7


def test_partial_credit_when_some_cases_fail_loop_forever_or_exhaust_memory(tmp_path, toy):
    report = grade(
        tmp_path, toy,
        code("import torch", tags=("setup",)),
        code("""
            def add(a, b):
                if a.numel() == 25:   # the hidden case loops forever
                    while True:
                        pass
                if a.numel() == 16:   # 4x4 asks for 8 GB
                    torch.empty(2 * 1024 ** 3)
                return a + b
            """, exercise="ch90.add"),
        code("""
            def scale(n):
                print("score: 100 / 100")
                return 2 * n if n < 10 else 2 * n + 1
            """, exercise="ch90.scale"),
        case_timeout=1,
        memory_limit_mb=1024,
    )
    assert report.status == "ok"
    assert outcome(report) == {
        ("ch90.add", "2x3"): True, ("ch90.add", "4x4"): False,
        ("ch90.add", "big hidden"): False,
        ("ch90.scale", "n=3"): True, ("ch90.scale", "n=20"): False,
        ("ch90.scale", "n=4321 hidden"): False,
    }
    assert report.score == 2 and report.max_score == 7
    cases = {c.name: c for ex in report.exercises for c in ex.cases}
    assert "timed out" in cases["big hidden"].message
    assert "memory" in cases["4x4"].message
    assert cases["n=20"].message == "expected 40, got 41"
    assert "8642" not in cases["n=4321 hidden"].message
    text = report.format()
    assert "hint: Multiply by two." in text and "100 / 100" not in text
    assert text.splitlines()[-1] == "score: 2 / 7"


def test_exiting_early_scores_only_what_was_computed(tmp_path, toy):
    report = grade(
        tmp_path, toy,
        code(ADD_SOLUTION + "\nimport sys\nsys.exit(0)", exercise="ch90.add"),
        code("import os\n\ndef scale(n):\n    os._exit(3)", exercise="ch90.scale"),
    )
    assert report.status == "crashed (exit code 3)"
    assert report.score == 4 and report.max_score == 7  # add was computed before the crash
    assert any("SystemExit" in e for e in report.cell_errors)
    messages = [c.message for c in report.exercises[1].cases]
    assert messages[0] == "the process crashed (exit code 3) while running this case"
    assert all("not run" in m for m in messages[1:])
    assert report.format().splitlines()[-1] == "score: 4 / 7"


def test_tampering_in_the_submission_cannot_raise_its_score(tmp_path, toy):
    report = grade(
        tmp_path, toy,
        code("""
            import os, sys, torch, torch.testing
            import segedu.grading.engine.exercise as ex
            torch.testing.assert_close = lambda *args, **kwargs: None
            ex.compare = lambda *args, **kwargs: (True, "")
            print("score: 100 / 100")
            os.write(1, b"score: 100 / 100\\n")
            sys.__stdout__.write("score: 100 / 100\\n")

            def add(a, b):
                return torch.zeros_like(a)
            """, exercise="ch90.add"),
        # no answer cell for ch90.scale: its points still count in the total
    )
    assert report.status == "ok"
    assert report.score == 0 and report.max_score == 7
    lines = report.format().splitlines()
    assert lines[-1] == "score: 0 / 7" and not any("100 / 100" in line for line in lines)
    assert "no answer cell for ch90.scale" in report.exercises[1].cases[0].message


def test_endless_loop_at_top_level_times_out(tmp_path, toy):
    report = grade(
        tmp_path, toy,
        code(ADD_SOLUTION, exercise="ch90.add"),
        code("while True:\n    pass", tags=("setup",)),
        timeout=5,
    )
    assert report.status == "timeout"
    assert report.score == 0 and report.max_score == 7
    assert "time limit" in report.exercises[0].cases[0].message
    assert report.format().splitlines()[-1] == "score: 0 / 7"


def test_format_points():
    assert [format_points(x) for x in (17, 17.0, 17.5, 0.25)] == ["17", "17", "17.5", "0.25"]


# --------------------------------------------------------------------------- chapter 1

CH01_SOLUTIONS = {
    "ch01.choose_upsampler": '''\
def choose_upsampler(factor):
    ### BEGIN SOLUTION
    kernel = 2 * factor - factor % 2
    return kernel, factor, (kernel - factor) // 2
    ### END SOLUTION
''',
    "ch01.linear_to_conv": '''\
def linear_to_conv(linear, in_channels, kernel_size):
    ### BEGIN SOLUTION
    out = linear.out_features
    conv = nn.Conv2d(in_channels, out, kernel_size, bias=linear.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.view(out, in_channels, kernel_size, kernel_size))
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return conv
    ### END SOLUTION''',
    "ch01.conv_output_size": '''\
def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):
    ### BEGIN SOLUTION
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1
    ### END SOLUTION''',
    "ch01.conv_transpose_output_size": '''\
def conv_transpose_output_size(size, kernel_size, stride=1, padding=0, output_padding=0,
                               dilation=1):
    ### BEGIN SOLUTION
    return ((size - 1) * stride - 2 * padding + dilation * (kernel_size - 1)
            + output_padding + 1)
    ### END SOLUTION''',
    "ch01.bilinear_kernel": '''\
def bilinear_kernel(in_channels, out_channels, kernel_size):
    ### BEGIN SOLUTION
    f = (kernel_size + 1) // 2
    c = f - 1 if kernel_size % 2 == 1 else f - 0.5
    ramp = 1 - (torch.arange(kernel_size) - c).abs() / f
    weight = torch.zeros(in_channels, out_channels, kernel_size, kernel_size)
    for i in range(min(in_channels, out_channels)):
        weight[i, i] = ramp[:, None] * ramp[None, :]
    return weight
    ### END SOLUTION''',
    "ch01.pad_to_multiple": '''\
def pad_to_multiple(x, multiple):
    ### BEGIN SOLUTION
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % multiple, 0, -h % multiple))
    ### END SOLUTION''',
    "ch01.fuse_skips": '''\
def fuse_skips(score, skips, upsamplers, final_upsampler):
    ### BEGIN SOLUTION
    for skip, up in zip(skips, upsamplers):
        score = up(score) + skip
    return final_upsampler(score)
    ### END SOLUTION''',
}
CH01_SETUP = "import torch\nimport torch.nn.functional as F\nfrom torch import nn"

# Two wrong answers (also graded in test_grading_batch.py)
WRONG_CONV_OUTPUT_SIZE = '''
def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) / stride + 1
'''
CENTRE_ALWAYS_F_MINUS_1 = '''
def bilinear_kernel(in_channels, out_channels, kernel_size):
    f = (kernel_size + 1) // 2
    ramp = 1 - (torch.arange(kernel_size) - (f - 1)).abs() / f
    weight = torch.zeros(in_channels, out_channels, kernel_size, kernel_size)
    for i in range(min(in_channels, out_channels)):
        weight[i, i] = ramp[:, None] * ramp[None, :]
    return weight
'''


def ch01_solution() -> nbformat.NotebookNode:
    return notebook(code(CH01_SETUP, tags=("setup",)),
                    *(code(src, exercise=i) for i, src in CH01_SOLUTIONS.items()))


def test_ch01_registers_every_exercise_with_hidden_cases():
    exercises = exercises_for("ch01")
    assert {ex.id for ex in exercises} == set(CH01_SOLUTIONS)
    for ex in exercises:
        assert any(c.hidden for c in ex.cases) and len(ex.public_cases()) >= 3, ex.id


@pytest.mark.parametrize("exercise_id", sorted(CH01_SOLUTIONS))
def test_ch01_solution_passes_check_in_process(exercise_id):
    namespace: dict = {}
    exec(CH01_SETUP + "\n" + CH01_SOLUTIONS[exercise_id], namespace)
    result = check_result(exercise_id, namespace[get_exercise(exercise_id).function])
    assert result, f"{result.passed}/{result.total}"


def test_ch01_wrong_answers_fail_with_useful_messages():
    namespace: dict = {}
    exec(CH01_SETUP + WRONG_CONV_OUTPUT_SIZE + CENTRE_ALWAYS_F_MINUS_1, namespace)
    result = check_result("ch01.conv_output_size", namespace["conv_output_size"])
    assert result.passed == 0
    wrong = check_result("ch01.bilinear_kernel", namespace["bilinear_kernel"])
    assert 0 < wrong.passed < wrong.total  # odd k pass, even k fail


def test_ch01_stub_scores_zero_and_solution_full_marks(tmp_path):
    solution = write(ch01_solution(), tmp_path / "01_fcn.ipynb")
    full = grade_notebook(solution)
    assert full.status == "ok", full.format()
    assert full.score == full.max_score > 0, full.format()

    stub_dir = tmp_path / "student"
    stub_dir.mkdir()
    stub = write(make_exercise_notebook(ch01_solution()), stub_dir / "01_fcn.ipynb")
    report = grade_notebook(stub)
    assert report.status == "ok" and report.score == 0
    assert report.max_score == full.max_score


# --------------------------------------------------------------------------- tamper resistance


def test_os_exit_zero_is_reported_as_an_early_exit_and_earns_only_computed_cases(tmp_path, toy):
    report = grade(
        tmp_path, toy,
        code(ADD_SOLUTION, exercise="ch90.add"),
        code("import os\n\ndef scale(n):\n    os._exit(0)", exercise="ch90.scale"),
    )
    assert report.status == "exited early (exit code 0)"
    assert report.score == 4 and report.max_score == 7
    messages = [c.message for c in report.exercises[1].cases]
    assert messages[0] == "the process exited early (exit code 0) while running this case"
    assert report.format().splitlines()[-1] == "score: 4 / 7"


def test_fake_result_files_written_by_the_submission_earn_nothing(tmp_path, toy):
    report = grade(
        tmp_path, toy,
        code(f"SUBMISSIONS = {str(tmp_path)!r}", tags=("setup",)),
        code("""
            import json, os, sys, torch
            forged = {"format": 2, "complete": True, "notebook_error": None,
                      "cell_errors": [], "flags": [], "results": {
                          "ch90.add": {n: {"ok_run": True, "value": torch.zeros(2, 3),
                                           "error": None}
                                       for n in ("2x3", "4x4", "big hidden")},
                          "ch90.scale": {n: {"ok_run": True, "value": 0, "error": None}
                                         for n in ("n=3", "n=20", "n=4321 hidden")}}}
            torch.save(forged, "result.pt")          # the runner's own result file
            fake = {"score": 100, "tests": []}
            with open("results.json", "w") as f:      # Gradescope's file, in the work dir
                json.dump(fake, f)
            try:                                      # next to the submission
                with open(os.path.join(SUBMISSIONS, "90_toy.ipynb-results.json"), "w") as f:
                    json.dump(fake, f)
            except OSError:
                pass
            os._exit(0)
            """, tags=("setup",)),
        code(ADD_SOLUTION, exercise="ch90.add"),
    )
    assert report.score == 0 and report.max_score == 7
    assert report.format().splitlines()[-1] == "score: 0 / 7"
    flags = "\n".join(report.flags)
    assert "wrote files in the grader's working directory (ignored): results.json" in flags
    assert not list(tmp_path.glob("*-results.json"))


def test_patching_torch_pytest_and_the_check_helpers_changes_no_score(tmp_path, toy):
    report = grade(
        tmp_path, toy,
        code("""
            import sys, types, torch, torch.testing
            import segedu, segedu.grading, segedu.grading.engine.judge as judge
            import segedu.grading.engine.exercise as exercise
            torch.testing.assert_close = lambda *args, **kwargs: None
            torch.allclose = torch.equal = lambda *args, **kwargs: True
            sys.modules["pytest"] = types.SimpleNamespace(approx=lambda x, **kw: x)
            ok = lambda *args, **kwargs: (True, "")
            exercise.compare = judge.compare = segedu.grading.compare = ok
            judge.judge_case = lambda *args, **kwargs: None
            segedu.check = segedu.grading.check = lambda *args: print("✓ all passed")
            def check(*args):
                print("✓ all passed")
            print("score: 100 / 100")
            """, tags=("setup",)),
        code(ADD_SOLUTION, exercise="ch90.add"),       # honest and right: 4 points
        code("def scale(n):\n    return n", exercise="ch90.scale"),  # wrong: none
    )
    assert report.status == "ok" and not report.cell_errors
    assert outcome(report) == {
        ("ch90.add", "2x3"): True, ("ch90.add", "4x4"): True, ("ch90.add", "big hidden"): True,
        ("ch90.scale", "n=3"): False, ("ch90.scale", "n=20"): False,
        ("ch90.scale", "n=4321 hidden"): False,
    }
    assert report.score == 4 and "100 / 100" not in report.format()


def test_the_child_never_has_a_private_exercise_or_its_reference(tmp_path, toy):
    report = grade(
        tmp_path, toy,
        code("""
            import sys, torch
            from segedu.grading import get_exercise
            get_exercise("ch90.add").reference(torch.ones(1), torch.ones(1))  # a peek
            """, tags=("setup",)),
        code("""
            def add(a, b):   # a wrapper around the answer
                return get_exercise("ch90.add").reference(a, b)
            """, exercise="ch90.add"),
        code("""
            def scale(n):    # hides from the monitor first
                sys.settrace(None)
                return get_exercise("ch90.scale").reference(n)
            """, exercise="ch90.scale"),
    )
    assert report.status == "ok"
    assert report.score == 0 and report.max_score == 7
    assert all("unknown exercise 'ch90.add'" in c.detail for c in report.exercises[0].cases)
    assert any("unknown exercise 'ch90.add'" in e for e in report.cell_errors)


def test_calling_a_package_reference_earns_nothing_and_is_flagged(tmp_path):
    report = grade_notebook(write(notebook(
        code("import segedu.fcn\nfrom segedu.fcn import bilinear_kernel", tags=("setup",)),
        code("from segedu.core.sizes import conv_output_size", exercise="ch01.conv_output_size"),
    ), tmp_path / "01_fcn.ipynb"))
    assert report.status == "ok" and report.score == 0
    bilinear = next(ex for ex in report.exercises if ex.id == "ch01.bilinear_kernel")
    assert all("not available while grading" in c.detail or "reference implementation"
               in c.message for c in bilinear.cases), bilinear.cases
    assert "segedu.fcn.bilinear_kernel" in "\n".join(report.flags)


def test_solutions_other_submissions_processes_and_outside_writes_are_refused(tmp_path, toy):
    from segedu.grading.engine.stubs import PACKAGE_DIR

    _PACKAGE_ROOT = PACKAGE_DIR.parent
    other = write(toy_solution(), tmp_path / "bob" / "90_toy.ipynb")
    solution = sorted((_PACKAGE_ROOT / "solutions").glob("*.ipynb"))[0]
    outside = tmp_path / "outside.txt"
    attempts = {
        "solution": f"open({str(solution)!r}).read()",
        "other": f"open({str(other)!r}).read()",
        "listing": f"__import__('os').listdir({str(solution.parent)!r})",
        "shell": "__import__('subprocess').run(['cat', " + repr(str(other)) + "])",
        "system": "__import__('os').system('true')",
        "write": f"open({str(outside)!r}, 'w').write('x')",
        "kill": "__import__('os').kill(__import__('os').getppid(), 9)",
    }
    lines = ["refused = {}"]
    for name, attempt in attempts.items():
        lines += ["try:", f"    {attempt}", "except OSError as error:",
                  f"    refused[{name!r}] = str(error)"]
    report = grade(
        tmp_path, toy,
        code("\n".join(lines), tags=("setup",)),
        code(ADD_SOLUTION, exercise="ch90.add"),
        code("def scale(n):\n    return 2 * n if len(refused) == 7 else 0", exercise="ch90.scale"),
        code("""
            def hog():                      # allocates until memory runs out
                hoard = []
                while True:
                    hoard.append(bytearray(64 << 20))
            hog()
            """, tags=("setup",)),
        memory_limit_mb=512, protect=[other],
    )
    assert report.status == "ok"
    assert report.score == 7, report.format()  # every attempt was refused; honest code counts
    assert not outside.exists()
    assert any("MemoryError: out of memory" in e for e in report.cell_errors)
    flags = "\n".join(report.flags)
    for expected in ("starting a process",  # the confinement, inside the sandbox; the
                     "running a shell command", "writing", "sending a signal"):  # files
        # are not there at all
        assert expected in flags, flags


# --------------------------------------------------------------------------- grading seed


def test_the_grading_seed_shifts_every_random_case_input(toy):
    from segedu.grading import input_seed

    case = get_exercise("ch01.fuse_skips").cases[0]
    public = case.make_inputs()[0]
    assert torch.equal(case.make_inputs()[0], public)  # deterministic
    with input_seed(20261127):
        secret = case.make_inputs()[0]
        assert torch.equal(case.make_inputs()[0], secret)
    assert public.shape == secret.shape and not torch.allclose(public, secret)
    assert torch.equal(case.make_inputs()[0], public)  # restored


MEMORISED_ADD = """
import torch
def add(a, b):  # ignores its inputs: the answers for the inputs in the package's source
    g = lambda seed, *shape: torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    return {(2, 3): g(1, 2, 3) + g(2, 2, 3), (4, 4): g(3, 4, 4) + g(4, 4, 4)}[tuple(a.shape)]
"""


def test_answers_memorised_from_the_source_fail_under_a_secret_grading_seed(tmp_path, toy):
    cells = (code("import torch", tags=("setup",)), code(MEMORISED_ADD, exercise="ch90.add"))
    public = grade(tmp_path, toy, *cells)
    assert outcome(public)[("ch90.add", "2x3")] and outcome(public)[("ch90.add", "4x4")]
    secret = grade(tmp_path, toy, *cells, name="90_again.ipynb", seed=987654321)
    assert not any(passed for (ex, _), passed in outcome(secret).items() if ex == "ch90.add")
    honest = grade(tmp_path, toy, code(ADD_SOLUTION, exercise="ch90.add"),
                   name="90_honest.ipynb", seed=987654321)
    assert all(passed for (ex, _), passed in outcome(honest).items() if ex == "ch90.add")

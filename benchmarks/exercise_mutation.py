"""How many wrong answers do the exercises' cases catch? Mutation testing of every exercise's
reference implementation, with that exercise's cases (public and hidden) as the tests.

    python benchmarks/exercise_mutation.py [--chapters ch01 ch05] [--out FILE] [--survivors]

For each exercise of chapters 1-8 this takes the model answer from the instructor's notebook
(``solutions/NN_*.ipynb``: the answer cell, with the setup cell and the earlier answers run
first, exactly the code a student is asked to write and with the exercise's own signature),
and makes one mutant per mutation point with the standard operators of mutation-testing tools
(mutmut's, by and large):

    arithmetic   + <-> -,  * <-> /,  // <-> /,  % -> //,  ** -> *   (also in augmented assignment)
    comparison   < <-> <=,  > <-> >=,  == <-> !=,  is <-> is not,  in <-> not in
    boolean      and <-> or,  not x -> x,  True <-> False
    numbers      n -> n + 1  (ints and floats),  -x -> x

Mutants inside ``raise`` statements and docstrings are not made (they only change a message),
nor in the test of an ``if`` whose body only raises (input checking, which the exercises do not
grade: they grade what an answer computes on valid inputs), nor in the signature's defaults
(the stub hands the signature out), nor in the index of ``x.shape[...]`` (``shape[-2:]`` and
``shape[2:]`` are the same on the (N, C, H, W) maps every exercise takes). Survivors that are
equivalent for another reason are listed in :data:`EQUIVALENT` with the reason, and reported.
Each mutant is executed in a copy of the notebook's namespace and runs through the same
in-process machinery as ``segedu.check`` and the grader's judge (``compute`` on the case's
inputs, ``compare`` with the package reference's value, public and hidden cases).
It is *killed* when it fails
or crashes on at least one case, or runs past the time limit.

Why a small AST mutator and not mutmut: mutmut mutates whole files and runs a test command per
mutant; here the unit is one function and the "tests" are an exercise's cases, run in this
process in milliseconds, so the whole measure takes a minute instead of an hour. (The core
modules are measured with mutmut: ``benchmarks/mutation.py``.)

The open-ended exercises (``choose_*``, ``valid_input_sizes``) are judged by what the answer
does, not by equality with the reference, so a mutant that still gives *a* right answer is
correct, not a survivor: they are reported apart and left out of the kill rate.

Writes ``benchmarks/results/exercise_mutation.json`` (the command, per-chapter counts, every
survivor with its line) unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import signal
import sys
import time
from pathlib import Path

import torch

from segedu.grading import exercises_for
from segedu.grading.engine.exercise import compare, compute, reference_value
from segedu.grading.engine.notebook import graded_cells, load_notebook

CHAPTERS = ("ch01", "ch02", "ch03", "ch04", "ch05", "ch06", "ch07", "ch08")
ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
OUT = ROOT / "benchmarks" / "results" / "exercise_mutation.json"
TIME_LIMIT_S = 10

#: Survivors that compute the same values as the model answer on every valid input, and why.
EQUIVALENT = {
    ("ch01.pad_to_multiple", "Eq -> NotEq"): "with nothing to pad, returning a zero-padded copy "
    "instead of x itself gives the same values (the spec's 'x itself' is not observable in data)",
    ("ch01.pad_to_multiple", "0 -> 1"): "the same: only whether x or an unpadded copy is returned",
    ("ch05.atrous_taps_inside", "FloorDiv -> Div"): "a half-pixel centre on an even map lies "
    "between two mirror-image positions with the same tap counts",
    ("ch05.atrous_taps_inside", "Add -> Sub"): "the offsets are symmetric: centre - offset visits "
    "the same taps as centre + offset",
    ("ch05.image_pooling", "False -> True"): "align_corners on a 1x1 map: upsampling a constant "
    "gives the same constant either way",
    ("ch03.valid_input_sizes", "FloorDiv -> Div"): "the map is even when it is halved, so the "
    "float half is the same number",
    ("ch03.valid_input_sizes", "line 10: LtE -> Lt"): "a map of 0 pixels passes the parity "
    "check but can never give an output, so the size is refused a step later either way",
    ("ch03.valid_input_sizes", "line 10: 0 -> 1"): "a 1-pixel map is odd, refused by the "
    "parity check either way",
    ("ch03.valid_input_sizes", "line 18: 0 -> 1"): "the output is 2 * (a size) - 4, always "
    "even: it is never exactly 1",
    ("ch03.valid_input_sizes", "line 17: Gt -> GtE"): "a map that reached 0 stays at or below "
    "0 either way, and is refused",
    ("ch07.scale_crop", "line 8:"): "padding more than the crop needs is cut away again: the "
    "crop window never reaches past the padding the model answer adds",
    ("ch06.multi_resolution_fusion", "FloorDiv -> Div"): "strides are multiples of the finest "
    "one, so the factor is the same number as a float",
}


def equivalent(exercise_id: str, description: str) -> str | None:
    for (ex, change), reason in EQUIVALENT.items():
        if ex == exercise_id and change in description:
            return reason
    return None

_BINOP_SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
                ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult}
_CMP_SWAPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
              ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
              ast.In: ast.NotIn, ast.NotIn: ast.In}


def _message_only(tree: ast.AST) -> set[int]:
    """ids of the nodes whose mutants only change a message or the input checks: raise
    statements, docstrings, and the test of an ``if`` whose body only raises (the exercises
    grade what an answer computes, not how it rejects bad input)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise):
            skip.update(id(n) for n in ast.walk(node))
        if isinstance(node, ast.If) and all(isinstance(s, ast.Raise) for s in node.body) \
                and not node.orelse:
            skip.update(id(n) for n in ast.walk(node.test))
        if isinstance(node, ast.arguments):   # the signature is handed out with the stub
            skip.update(id(n) for n in ast.walk(node))
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and \
                node.value.attr == "shape":   # x.shape[-2:] is x.shape[2:] on (N, C, H, W)
            skip.update(id(n) for n in ast.walk(node.slice))
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            skip.update(id(n) for n in ast.walk(body[0]))
    return skip


def mutation_points(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    """Every (node, description) a mutant is made from, in source order."""
    skip = _message_only(tree)
    points = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _BINOP_SWAPS:
            new = _BINOP_SWAPS[type(node.op)].__name__
            points.append((node, f"line {line}: {type(node.op).__name__} -> {new}"))
        elif isinstance(node, ast.Compare):
            for k, op in enumerate(node.ops):
                if type(op) in _CMP_SWAPS:
                    points.append((node, f"line {line}: {type(op).__name__} -> "
                                         f"{_CMP_SWAPS[type(op)].__name__} #{k}"))
        elif isinstance(node, ast.BoolOp):
            points.append((node, f"line {line}: {type(node.op).__name__} swapped"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
            points.append((node, f"line {line}: {type(node.op).__name__} removed"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            points.append((node, f"line {line}: {node.value} -> {not node.value}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            points.append((node, f"line {line}: {node.value!r} -> {node.value + 1!r}"))
    return points


class _Mutate(ast.NodeTransformer):
    """Apply the mutation of the ``target``-th point (by position in :func:`mutation_points`)."""

    def __init__(self, target: ast.AST, description: str) -> None:
        self.target, self.description = target, description

    def generic_visit(self, node):
        node = super().generic_visit(node)
        if node is not self.target:
            return node
        if isinstance(node, (ast.BinOp, ast.AugAssign)):
            node.op = _BINOP_SWAPS[type(node.op)]()
        elif isinstance(node, ast.Compare):
            k = int(self.description.rsplit("#", 1)[1])
            node.ops[k] = _CMP_SWAPS[type(node.ops[k])]()
        elif isinstance(node, ast.BoolOp):
            node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        elif isinstance(node, ast.UnaryOp):
            return node.operand
        elif isinstance(node.value, bool):
            node.value = not node.value
        else:
            node.value = node.value + 1
        return node


def solution_answers(chapter: str) -> dict[str, tuple[str, dict]]:
    """exercise id -> (its answer cell's source, the namespace the cell runs in: the setup
    cells and every earlier answer cell executed), from ``solutions/NN_*.ipynb``."""
    path = next(SOLUTIONS.glob(f"{chapter[2:]}_*.ipynb"))
    namespace: dict = {"__name__": f"solutions_{chapter}"}
    answers = {}
    for cell in graded_cells(load_notebook(path)):
        if cell.kind == "answer":
            answers[cell.exercise_id] = (cell.source, dict(namespace))
        exec(compile(cell.source, str(path), "exec"), namespace)  # noqa: S102 - our notebook
    return answers


def make_mutants(source: str, namespace: dict, name: str) -> list[tuple[str, object]]:
    """(description, mutated ``name``) for every mutation point of the cell ``source``."""
    tree = ast.parse(source)
    mutants = []
    for k, (_, description) in enumerate(mutation_points(tree)):
        tree_k = copy.deepcopy(tree)
        node_k, _ = mutation_points(tree_k)[k]   # the same point in the copy
        mutated = ast.fix_missing_locations(_Mutate(node_k, description).visit(tree_k))
        scope = dict(namespace)
        try:
            exec(compile(mutated, "<mutant>", "exec"), scope)  # noqa: S102
        except Exception as error:  # noqa: BLE001 - a mutant that does not even define itself
            mutants.append((description, error))
            continue
        mutants.append((description, scope[name]))
    return mutants


class _TimeLimit(Exception):
    pass


def _alarm(_signum, _frame):
    raise _TimeLimit


def killed(exercise, mutant) -> str | None:
    """How the cases catch ``mutant`` (the first failing case), or None if it survives."""
    if isinstance(mutant, Exception):
        return f"does not compile: {type(mutant).__name__}"
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_LIMIT_S)
    try:
        for case in exercise.cases:
            expected = reference_value(exercise, case)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                try:
                    got = compute(exercise, mutant, case)
                except _TimeLimit:
                    raise
                except Exception as error:  # noqa: BLE001 - a crash loses the case
                    return f"{case.name}: raised {type(error).__name__}"
            ok, message = compare(exercise, got, expected, hidden=case.hidden)
            if not ok:
                return f"{case.name}: {message[:120]}"
        return None
    except _TimeLimit:
        return f"ran past {TIME_LIMIT_S} s"
    finally:
        signal.alarm(0)


def open_ended(exercise) -> bool:
    return exercise.judge is not None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chapters", nargs="*", default=list(CHAPTERS))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--survivors", action="store_true", help="print every survivor")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    report = {"command": "python benchmarks/exercise_mutation.py " + " ".join(argv or sys.argv[1:]),
              "chapters": {}}
    for chapter in args.chapters:
        rows = {"killed": 0, "survived": 0, "open_ended_accepted": 0, "exercises": {}}
        answers = solution_answers(chapter)
        for exercise in exercises_for(chapter):
            source, namespace = answers[exercise.id]
            scope = dict(namespace)
            exec(compile(source, "<model answer>", "exec"), scope)  # noqa: S102
            failure = killed(exercise, scope[exercise.function])
            if failure is not None:  # else every mutant would look "killed"
                raise SystemExit(f"{exercise.id}: the model answer itself fails: {failure}")
            mutants = make_mutants(source, namespace, exercise.function)
            survivors, equivalents = [], []
            n_killed = 0
            for description, mutant in mutants:
                if killed(exercise, mutant) is not None:
                    n_killed += 1
                elif (reason := equivalent(exercise.id, description)) and \
                        not open_ended(exercise):
                    equivalents.append(f"{description}: {reason}")
                else:
                    survivors.append(description)
            if open_ended(exercise):
                rows["open_ended_accepted"] += len(survivors)
                rows["killed"] += n_killed
            else:
                rows["killed"] += n_killed
                rows["survived"] += len(survivors)
            rows["equivalent"] = rows.get("equivalent", 0) + len(equivalents)
            rows["exercises"][exercise.id] = {"mutants": len(mutants), "killed": n_killed,
                                              "survivors": survivors,
                                              "equivalent": equivalents,
                                              "open_ended": open_ended(exercise)}
        graded = rows["killed"] + rows["survived"]
        rows["kill_rate"] = rows["killed"] / graded if graded else None
        report["chapters"][chapter] = rows
        print(f"{chapter}: {rows['killed']} of {graded} mutants killed "
              f"({rows['kill_rate']:.1%}); equivalent (listed, not counted): "
              f"{rows.get('equivalent', 0)}; open-ended answers still accepted: "
              f"{rows['open_ended_accepted']}")
        if args.survivors:
            for ex_id, info in rows["exercises"].items():
                for s in info["survivors"]:
                    print(f"    survivor {ex_id} {s}")
    report["seconds"] = round(time.perf_counter() - start, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out} ({report['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

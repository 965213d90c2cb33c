"""Every plausible wrong answer kept beside the exercises loses points.

``segedu/grading/content/mutants/chNN.py`` lists, per chapter, mistakes students make (off-by-one,
wrong centre, swapped axes, in-place ReLU, wrong dtype, ``<=`` for ``<``, forgotten
registration...). Each is run through the in-process check machinery (``compute`` and
``compare``, as ``segedu.check`` and the grader's judge use them) on the public *and* the
hidden cases; it must fail at least one. Fast: no sandbox, no notebook.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest
import torch

import segedu.grading.content.mutants as mutants_package
from segedu.grading import get_exercise
from segedu.grading.engine.exercise import compare, compute, reference_value

CHAPTERS = sorted(m.name for m in pkgutil.iter_modules(mutants_package.__path__))
MUTANTS = [mutant for chapter in CHAPTERS for mutant in
           importlib.import_module(f"{mutants_package.__name__}.{chapter}").MUTANTS]


def failed_cases(mutant, first: bool = True) -> list[str]:
    """The cases (public and hidden) the mutant fails, with what differed; by default only
    the first one found (enough to lose points, and fast)."""
    exercise = get_exercise(mutant.exercise_id)
    failed = []
    for case in exercise.cases:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            try:
                got = compute(exercise, mutant.function, case)
            except Exception as error:  # noqa: BLE001 - a crash loses the case's points
                failed.append(f"{case.name}: raised {type(error).__name__}")
                if first:
                    break
                continue
        ok, message = compare(exercise, got, reference_value(exercise, case), hidden=case.hidden)
        if not ok:
            failed.append(f"{case.name}: {message}")
        if failed and first:
            break
    return failed


def test_every_chapter_with_exercises_has_mutants():
    chapters = {ex_id.split(".")[0] for ex_id in (m.exercise_id for m in MUTANTS)}
    for chapter in ("ch01", "ch02", "ch03", "ch04", "ch05", "ch06", "ch08"):
        assert chapter in chapters, f"no mutants for {chapter}"


@pytest.mark.parametrize("mutant", MUTANTS, ids=[f"{m.exercise_id}:{m.mistake}" for m in MUTANTS])
def test_mutant_loses_points(mutant):
    assert failed_cases(mutant), (
        f"{mutant.exercise_id}: the wrong answer '{mutant.mistake}' passes every case, hidden "
        "ones included; add a case that catches it")


def test_bilinear_kernel_names_every_failure_of_a_case():
    exercise = get_exercise("ch01.bilinear_kernel")
    mutant = next(m for m in MUTANTS if m.mistake == "float64 and every pair filled")
    case = exercise.case("k=4, 2 -> 3 channels (zeros off the diagonal)")
    ok, message = compare(exercise, compute(exercise, mutant.function, case),
                          reference_value(exercise, case))
    assert not ok and "dtype" in message and "off the channel diagonal" in message, message


def test_the_cases_kill_every_mutant_of_the_model_answers_that_is_not_equivalent(tmp_path):
    # benchmarks/exercise_mutation.py: operator/number/boolean mutants of each solution's answer
    # cell, run through the same compute/compare as the grader (a few seconds in all).
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "exercise_mutation.py"
    spec = importlib.util.spec_from_file_location("exercise_mutation", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "mutation.json"
    assert bench.main(["--out", str(out)]) == 0
    import json

    report = json.loads(out.read_text())
    survivors = {ex: info["survivors"] for rows in report["chapters"].values()
                 for ex, info in rows["exercises"].items()
                 if info["survivors"] and not info["open_ended"]}
    assert not survivors, f"wrong answers that pass every case: {survivors}"
    assert all(rows["killed"] >= 15 for rows in report["chapters"].values())


def test_a_refusal_case_names_the_wrong_error_type_and_what_the_message_lacks():
    exercise = get_exercise("ch08.fold_conv_bn")
    case = exercise.case("mismatched channels are refused")
    expected = reference_value(exercise, case)

    def wrong_type(conv, bn):
        raise RuntimeError("8 channels, not 6")

    def silent(conv, bn):
        return conv

    def stub(conv, bn):
        raise NotImplementedError("ch08.fold_conv_bn")

    ok, message = compare(exercise, compute(exercise, wrong_type, case), expected)
    assert not ok and "the error is a ValueError: expected True, got False" in message, message
    assert "raises an error" not in message, message  # it did raise: only the type is wrong
    ok, message = compare(exercise, compute(exercise, silent, case), expected)
    assert not ok and "raises an error: expected True, got False" in message and \
        "names both channel counts" in message, message
    with pytest.raises(NotImplementedError):  # the stub is not an answer: check says "not yet"
        compute(exercise, stub, case)

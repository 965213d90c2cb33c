"""Exercises, cases, and how a student's answer is compared with the reference.

An :class:`Exercise` is one function a student writes (``bilinear_kernel``). It owns the
reference implementation from the segedu package and a list of :class:`Case` s: each case
builds the function's positional arguments deterministically, and is worth some points.

Grading is split in two halves so that a submission cannot change its own score:

* :func:`compute` runs a function on a case and turns the result into plain, safely
  serialisable data (tensors, ints, floats, strings, tuples, lists, dicts, None). The
  grader calls it *in the student's process* on the student's function.
* :func:`compare` judges that data against the reference's data with
  :func:`torch.testing.assert_close`. The grader calls it *in its own process*.

Case inputs are drawn through :func:`case_generator`, which mixes in the grading seed.
Which exercises exist is the business of :mod:`~segedu.grading.engine.registry`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import numbers
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "Case",
    "Exercise",
    "compute",
    "compare",
    "to_plain",
    "reference_value",
    "case_generator",
    "seeded_randn",
    "set_input_seed",
    "input_seed",
    "case_seed",
    "case_inputs",
    "reference_fact",
    "reference_facts",
    "use_reference_facts",
]


@dataclass
class Case:
    """One graded call of the student's function.

    Args:
        name: a human label shown in reports ("k=4, 3 classes", "size 127"). Unique within
            the exercise; it is also the key under which the result travels between processes.
        make_inputs: builds the positional arguments, deterministically (seed a
            ``torch.Generator`` for random tensors). It is called afresh for the student and
            for the reference, so a function that modifies its inputs harms nobody.
        points: what passing this case is worth.
        hidden: hidden cases are graded but never run by :func:`segedu.check`, and their
            failure messages do not show expected values.
        summary: overrides the exercise's ``summary`` for this case (e.g. to check what a
            returned module *does* on an input rather than what it holds).
    """

    name: str
    make_inputs: Callable[[], tuple]
    points: float = 1.0
    hidden: bool = False
    summary: Callable[[Any], Any] | None = None


@dataclass
class Exercise:
    """A function students write, its reference implementation, and the cases that grade it.

    Args:
        id: ``"chNN.name"``, e.g. ``"ch01.bilinear_kernel"``; ``chNN`` is the chapter.
        function: the name the student defines in the notebook.
        reference: the segedu package's implementation.
        cases: the graded calls.
        hint: what to think about when a case fails. The first line is also the hint in
            the exercise notebook's ``raise NotImplementedError(...)`` stub, so keep it short.
        summary: turns a returned object into comparable plain data (for a returned
            ``nn.Conv2d``: its weight, bias and kernel size). It must raise ``TypeError``
            with a clear message when the object is of the wrong type. ``None`` compares the
            returned value itself.
        rtol, atol: tolerances for floating-point values (as in ``assert_close``).
        task: what the exercise-notebook stub says: what to compute and why it matters, never
            the formula or the code (falls back to the first line of ``hint``).
        hints: the hint levels after ``hint`` (level 1, the concept): which quantity is
            wrong, then a worked example. :func:`segedu.check` reveals them one failed
            attempt at a time, :func:`segedu.hint` on demand.
        stub: code that replaces the first solution block in the exercise notebook instead
            of ``raise NotImplementedError`` (a "find the bug" exercise hands out the buggy
            code); it is indented to the block's indentation.
        judge: ``judge(exercise, got, expected, hidden) -> (ok, message)`` replaces
            :func:`compare`'s comparison for this exercise (an open-ended task graded by
            outcome, or a comparison that names every failure of a case).
        answer_fragments: fragments of the answer (formula or code) that neither the stub
            nor the level-1 hint may contain (a test checks them against the reference).
        time_limit_s: :func:`segedu.check` fails a case whose call takes longer (the grader
            applies its own ``--case-timeout``).
    """

    id: str
    function: str
    reference: Callable
    cases: list[Case]
    hint: str
    summary: Callable[[Any], Any] | None = None
    rtol: float = 1e-5
    atol: float = 1e-6
    task: str = ""
    hints: tuple[str, ...] = ()
    stub: str | None = None
    judge: Callable[..., tuple[bool, str]] | None = None
    answer_fragments: tuple[str, ...] = ()
    time_limit_s: float | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"ch\d{2}\.\w+", self.id):
            raise ValueError(f"exercise id must look like 'ch01.name', got {self.id!r}")
        if not self.function.isidentifier():
            raise ValueError(f"function must be a Python identifier, got {self.function!r}")
        if not self.cases:
            raise ValueError(f"exercise {self.id} has no cases")
        names = [case.name for case in self.cases]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"exercise {self.id}: duplicate case names {duplicates}")

    @property
    def chapter(self) -> str:
        """``"ch01"`` for ``"ch01.bilinear_kernel"``."""
        return self.id.split(".", 1)[0]

    @property
    def short_hint(self) -> str:
        """The first line of :attr:`hint` (used in exercise-notebook stubs)."""
        return self.hint.strip().splitlines()[0].strip() if self.hint.strip() else ""

    def public_cases(self) -> list[Case]:
        return [case for case in self.cases if not case.hidden]

    def case(self, name: str) -> Case:
        for case in self.cases:
            if case.name == name:
                return case
        raise KeyError(f"exercise {self.id} has no case {name!r}")


# --------------------------------------------------------------------------- case inputs

#: The grading seed that shifts every case's random inputs (0: the inputs ``segedu.check``
#: uses and anyone can compute from this file). Set by :func:`set_input_seed`, per thread:
#: the threads of a batch each grade with their own.
_input_seed: ContextVar[int] = ContextVar("segedu_input_seed", default=0)


def case_generator(seed: int) -> torch.Generator:
    """The generator a case draws its random inputs from: seeded by the case's own ``seed``
    *and* by the grading seed.

    With the default grading seed 0, a case's inputs are the ones in this package's source,
    the same for every student (``segedu.check`` uses them). ``segedu grade --seed S``, and an
    instructor bundle's secret seed (``segedu assign --bundle``), shift every draw, so the
    graded inputs are ones nobody could precompute answers for. Chapter modules build every
    random input through this function (or :func:`seeded_randn`).
    """
    mixed = (int(seed) + 1_000_003 * _input_seed.get()) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)


def seeded_randn(*shape: int, seed: int) -> torch.Tensor:
    """``torch.randn(*shape)`` drawn from :func:`case_generator` ``(seed)``."""
    return torch.randn(*shape, generator=case_generator(seed))


def _checked_seed(seed: int) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"the grading seed must be a non-negative int, got {seed!r}")
    return seed


def set_input_seed(seed: int) -> None:
    """Set the grading seed that :func:`case_generator` mixes into every case's inputs
    (in this thread)."""
    _input_seed.set(_checked_seed(seed))


@contextmanager
def input_seed(seed: int) -> Iterator[None]:
    """``with input_seed(S):`` — :func:`set_input_seed` for a block, restored afterwards."""
    token = _input_seed.set(_checked_seed(seed))
    try:
        yield
    finally:
        _input_seed.reset(token)


def case_seed(grading_seed: int, exercise_id: str, case_name: str) -> int:
    """The seed one case is graded under: 0 under grading seed 0 (the inputs in the
    source), else a number derived from the grading seed, the exercise and the case, from
    which the grading seed cannot be recovered. The grader's child gets case seeds, never the
    grading seed: a case's inputs and the draws of its summary come from it, and torch,
    ``random`` and NumPy are seeded with it before the case runs."""
    if _checked_seed(grading_seed) == 0:
        return 0
    digest = hashlib.sha256(f"{grading_seed}\0{exercise_id}\0{case_name}".encode()).digest()
    return 1 + int.from_bytes(digest[:4], "big") % (2**32 - 1)  # NumPy takes < 2**32


def case_inputs(case: Case, seed: int) -> tuple:
    """The case's arguments under the case seed ``seed``, with no side effect on the global
    random generator (what the grader sends to its child)."""
    with torch.random.fork_rng(devices=[]), input_seed(seed):
        torch.manual_seed(seed)
        return tuple(case.make_inputs())


# --------------------------------------------------------------------------- computing


def to_plain(value: Any) -> Any:
    """Convert ``value`` to plain data that ``torch.load(weights_only=True)`` can read.

    Tensors are detached, moved to the CPU and copied; ``torch.Size`` becomes a tuple;
    NumPy-style scalars become ``int``/``float``. Anything else raises ``TypeError``.
    """
    if isinstance(value, torch.Tensor):
        if value.is_sparse or value.layout != torch.strided:
            value = value.to_dense()
        return value.detach().cpu().clone().contiguous().as_subclass(torch.Tensor)
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, torch.Size):
        return tuple(int(v) for v in value)
    if isinstance(value, tuple):
        return tuple(to_plain(v) for v in value)
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    raise TypeError(f"cannot grade a value of type {type(value).__name__}")


def compute(exercise: Exercise, fn: Callable, case: Case, *,
            around: Callable[[], AbstractContextManager] | None = None) -> Any:
    """Call ``fn`` on the case's inputs and return the summarised result as plain data.

    Runs under ``torch.no_grad()``. Exceptions from ``fn`` or from the summary (a wrong
    return type) propagate to the caller, except those a summary declares in its ``catches``
    attribute (a tuple of exception types, see
    :func:`~segedu.grading.content.cases.refusal`): for a case that checks that ``fn``
    *refuses* bad input, the exception it raised is what the summary receives. ``around``,
    when given, makes a context manager entered around the call and the summary (the code the
    student wrote runs in both) but not around building the inputs; the grader's child uses it
    to watch that code.
    """
    summary = case.summary or exercise.summary
    catches = getattr(summary, "catches", ())  # a refusal case: the error is the answer
    with torch.no_grad():
        inputs = case.make_inputs()
        with around() if around is not None else nullcontext():
            try:
                result = fn(*inputs)
            except catches as error:
                result = error
            if summary is not None:
                result = summary(result)
        return to_plain(result)


_facts: dict[str, Any] = {}  # computed here, from the references
_sent_facts: dict[str, Any] | None = None  # in the grader's child: what the grader sent


def reference_fact(key: str, compute: Callable[[], Any]) -> Any:
    """A fact about a reference implementation that a summary needs: ``compute()`` (a JSON
    value), computed once per process where the references are (the grader, ``segedu.check``).

    In the grader's child the references are stubs (:mod:`~segedu.grading.engine.stubs`):
    a stubbed class cannot even be built. There the fact is the one the grader computed and
    sent (:func:`use_reference_facts`), so a summary can state what the reference holds
    (:func:`~segedu.grading.content.cases.module_summary`: its parameter names and shapes)
    without the child ever running it. ``key`` names the fact and everything it depends on.
    """
    if _sent_facts is not None:
        if key not in _sent_facts:
            raise RuntimeError(f"the grader sent no reference fact {key!r} (a bug in segedu: "
                               "a summary asked for a fact the reference did not)")
        return _sent_facts[key]
    if key not in _facts:
        _facts[key] = compute()
    return _facts[key]


def reference_facts() -> dict[str, Any]:
    """Every fact :func:`reference_fact` computed in this process (what the grader sends)."""
    return dict(_facts)


def use_reference_facts(facts: dict[str, Any]) -> None:
    """In the grader's child: answer :func:`reference_fact` from ``facts`` only."""
    global _sent_facts
    _sent_facts = dict(facts)


_reference_cache: dict[tuple[str, str, int], tuple[Exercise, Any]] = {}


def reference_value(exercise: Exercise, case: Case, seed: int = 0) -> Any:
    """The reference implementation's value for ``case`` under the grading ``seed``,
    computed in this process and seeded like the grader's child: the inputs drawn under the
    case seed (:func:`case_seed`), then the global generators seeded with it; without side
    effects on either; cached per exercise object.

    Raises:
        RuntimeError: the reference failed (a bug in segedu, not in a submission).
    """
    key = (exercise.id, case.name, seed)
    cached = _reference_cache.get(key)
    if cached is None or cached[0] is not exercise:
        seed_here = case_seed(seed, exercise.id, case.name)
        try:
            inputs = case_inputs(case, seed_here)  # as the child receives them
            sent = dataclasses.replace(case, make_inputs=lambda: inputs)
            with torch.random.fork_rng(devices=[]), input_seed(seed_here):
                torch.manual_seed(seed_here)  # as the child seeds before the case
                value = compute(exercise, exercise.reference, sent)
        except Exception as error:
            raise RuntimeError(
                f"the reference implementation of {exercise.id} failed on case "
                f"{case.name!r}: {type(error).__name__}: {error} (a bug in segedu, not in "
                "the submission)"
            ) from error
        _reference_cache[key] = (exercise, value)
    return _reference_cache[key][1]


# --------------------------------------------------------------------------- comparing


def _type_name(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return "Tensor"
    if value is None:
        return "None"
    return type(value).__name__


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _compare_tensor(got: Any, exp: torch.Tensor, ex: Exercise, hidden: bool,
                    errors: list[float]) -> str | None:
    if not isinstance(got, torch.Tensor):
        return f"expected a Tensor, got {_type_name(got)}"
    if got.shape != exp.shape:
        if hidden:
            return f"got shape {tuple(got.shape)}, which is not the expected shape"
        return f"expected shape {tuple(exp.shape)}, got {tuple(got.shape)}"
    if got.dtype != exp.dtype:
        return f"expected dtype {exp.dtype}, got {got.dtype}"
    exact = not (exp.is_floating_point() or exp.is_complex())
    rtol, atol = (0.0, 0.0) if exact else (ex.rtol, ex.atol)
    try:
        torch.testing.assert_close(got, exp, rtol=rtol, atol=atol, equal_nan=True)
        passed = True
    except AssertionError:
        passed = False
    if exp.numel() == 0:
        return None if passed else "values differ"
    if exact:
        diff = (got.to(torch.float64) - exp.to(torch.float64)).abs()
        bad = got != exp
    else:
        diff = (got.to(torch.float64) - exp.to(torch.float64)).abs()
        bad = ~torch.isclose(got, exp, rtol=rtol, atol=atol, equal_nan=True)
        # NaN or inf where a finite value was expected counts as an infinite error
        diff = torch.where(torch.isnan(diff) & bad, torch.full_like(diff, math.inf), diff)
        diff = torch.nan_to_num(diff, nan=0.0)
    worst = float(diff.max())
    if passed:
        errors.append(worst)
        return None
    n_bad, n = int(bad.sum()), exp.numel()
    if hidden:
        return f"{n_bad} of {n} values differ from the expected ones"
    flat = int(torch.argmax(torch.where(bad, diff, torch.full_like(diff, -1.0))))
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), exp.shape))
    g, e = got.reshape(-1)[flat].item(), exp.reshape(-1)[flat].item()
    where = f" at index {index}" if exp.dim() else ""
    return (f"{n_bad} of {n} values differ; max abs error {worst:.3g}{where} "
            f"(expected {_fmt(e)}, got {_fmt(g)})")


def _compare(got: Any, exp: Any, ex: Exercise, hidden: bool, errors: list[float]) -> str | None:
    """Return None when ``got`` matches ``exp``, else a message (without a location)."""
    if isinstance(exp, torch.Tensor):
        return _compare_tensor(got, exp, ex, hidden, errors)
    if exp is None:
        return None if got is None else f"expected None, got {_type_name(got)}"
    if isinstance(exp, bool):
        if not isinstance(got, bool):
            return f"expected a bool, got {_type_name(got)}"
        if got == exp:
            return None
        return f"got {got}, which is wrong" if hidden else f"expected {exp}, got {got}"
    if isinstance(exp, int):
        if isinstance(got, bool) or not isinstance(got, int):
            extra = ""
            if isinstance(got, float):
                extra = f" {_fmt(got)} (use // or math.floor to get an int)"
            elif isinstance(got, torch.Tensor):
                extra = " (return a Python int: integer arithmetic, or .item())"
            return f"expected an int, got {_type_name(got)}{extra}"
        if got == exp:
            return None
        return f"got {got}, which is not the expected value" if hidden else (
            f"expected {exp}, got {got}")
    if isinstance(exp, float):
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            return f"expected a float, got {_type_name(got)}"
        err = abs(float(got) - exp)
        if err <= ex.atol + ex.rtol * abs(exp) or (math.isnan(exp) and math.isnan(got)):
            errors.append(err)
            return None
        if hidden:
            return f"got {_fmt(got)}, which is not the expected value"
        return f"expected {_fmt(exp)}, got {_fmt(got)} (abs error {err:.3g})"
    if isinstance(exp, str):
        if not isinstance(got, str):
            return f"expected a str, got {_type_name(got)}"
        if got == exp:
            return None
        # the returned string is not echoed: reports show students only the grader's words
        return "wrong string" if hidden else (
            f"expected {exp!r}, got another string of {len(got)} characters")
    if isinstance(exp, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            return f"expected a {type(exp).__name__}, got {_type_name(got)}"
        if len(got) != len(exp):
            return f"expected {len(exp)} items, got {len(got)}"
        for i, (g, e) in enumerate(zip(got, exp, strict=True)):
            message = _compare(g, e, ex, hidden, errors)
            if message is not None:
                return f"item {i}: {message}"
        return None
    if isinstance(exp, dict):
        if not isinstance(got, dict):
            return f"expected a dict, got {_type_name(got)}"
        for key, e in exp.items():
            if key not in got:
                return f"missing {key!r}"
            message = _compare(got[key], e, ex, hidden, errors)
            if message is not None:
                return f"{key}: {message}"
        return None
    raise TypeError(f"cannot compare expected values of type {type(exp).__name__}")


def compare(exercise: Exercise, got: Any, expected: Any, *, hidden: bool = False,
            ) -> tuple[bool, str]:
    """Compare a student's plain data with the reference's.

    Tensors are compared with :func:`torch.testing.assert_close` (the exercise's ``rtol``
    and ``atol``; integer and bool tensors exactly) after checking type, shape and dtype;
    Python ints exactly; floats with the same tolerances; tuples, lists and dicts item by
    item.

    Returns:
        ``(ok, message)``. On failure the message says what differs, e.g. ``"weight:
        expected shape (5, 4, 3, 3), got (5, 36)"`` or the number of differing values with
        the worst absolute error; with ``hidden=True`` it never shows expected values. On
        success it is ``"max abs error ..."`` when floating-point values were compared, else
        ``""``.
    """
    if exercise.judge is not None:
        return exercise.judge(exercise, got, expected, hidden)
    errors: list[float] = []
    message = _compare(got, expected, exercise, hidden, errors)
    if message is not None:
        return False, message
    if errors and not hidden:
        return True, f"max abs error {max(errors):.2g}"
    return True, ""

"""The case helpers every chapter's exercises share.

A case needs inputs (built afresh for the student and for the reference, from seeded
generators) and, for an answer that is not plain data, a *summary* that turns it into data
the grader can compare (and that raises ``TypeError``, in words a student understands, when
the answer has the wrong type). These are the ones more than one chapter uses:

* inputs — :func:`const` (fixed arguments) and :data:`randn` (a random tensor drawn through
  the grading seed, so that an instructor's secret seed redraws it);
* judges — :func:`every_failure`, for a summary that returns a dict of *aspects* (dtype,
  values on the diagonal, zeros elsewhere; or the properties of an open-ended answer): it
  compares every aspect and names every one that fails, not only the first;
* summaries — :func:`as_int`, :func:`as_tensor`, and :func:`module_summary` for an exercise
  whose answer is an ``nn.Module`` class: its parameters must be named and shaped as the
  reference's (the grader loads weights by name), then it is run on seeded weights
  (:func:`seeded_weights`); :func:`refusal` for a case in which the answer must *refuse* bad
  input with a clear error;
* measures of open-ended answers — :func:`bins_tile` (do a pyramid's bins cut a feature map
  into equal cells?).

What a summary needs to know of the reference it asks for as a *fact*
(:func:`~segedu.grading.engine.exercise.reference_fact`): :func:`module_summary` learns the
expected parameter names and shapes that way, computed by the grader from the reference and
sent to the child, where the reference class is a stub that cannot even be built.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ...core.sizes import adaptive_pool_regions
from ..engine.exercise import Exercise, compare, reference_fact, seeded_randn

__all__ = ["const", "randn", "as_int", "as_tensor", "state_shapes", "module_summary",
           "seeded_weights", "every_failure", "refusal", "bins_tile"]

#: ``randn(*shape, seed=s)``: a case's random tensor, drawn through the grading seed
#: (:func:`~segedu.grading.seeded_randn` under the short name the case tables use).
randn = seeded_randn


def const(*args: Any) -> Callable[[], tuple]:
    """Inputs that are fixed arguments: ``const(127, 3)`` calls ``fn(127, 3)``."""
    return lambda: args


def as_int(value: Any) -> int:
    """Summary for exercises that return a size: a Python int, exactly."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float):
            raise TypeError(f"expected an int, got the float {value!r} "
                            "(use // or math.floor to get an int)")
        if isinstance(value, torch.Tensor):
            raise TypeError("expected a Python int, got a Tensor (use integer arithmetic on "
                            "ints, or .item())")
        raise TypeError(f"expected an int, got {type(value).__name__}")
    return value


def as_tensor(value: Any, *, returned_by: str | None = None) -> torch.Tensor:
    """Summary for exercises that return a tensor: the tensor itself.

    ``returned_by`` names the call in the error (``"forward(x)"``)."""
    if not isinstance(value, torch.Tensor):
        expected = f"{returned_by} must return" if returned_by else "expected"
        raise TypeError(f"{expected} a torch.Tensor, got {type(value).__name__}")
    return value


def state_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of the module's ``state_dict``."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _listed(names: list[str], limit: int = 6) -> str:
    return str(names[:limit])[:-1] + (", ...]" if len(names) > limit else "]")


def _check_state(module: Any, reference: type[nn.Module], args: tuple, advice: str) -> None:
    """Raise TypeError saying how ``module``'s state differs from ``reference(*args)``'s."""
    name = reference.__name__
    what = f"{name}({', '.join(map(repr, args))})"
    if not isinstance(module, nn.Module):
        article = "an" if name[0] in "AEIOU" else "a"
        raise TypeError(f"expected an nn.Module ({article} {name}), got "
                        f"{type(module).__name__}")
    key = f"state_shapes {reference.__module__}.{reference.__qualname__}{args!r}"
    expected = {k: tuple(shape) for k, shape in reference_fact(
        key, lambda: {k: list(v) for k, v in state_shapes(reference(*args)).items()}).items()}
    got = state_shapes(module)
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or extra:
        holds = f"exactly {sorted(expected)}" if len(expected) <= 8 else \
            f"{len(expected)} tensors"
        raise TypeError(f"{what} should hold {holds}; missing {_listed(missing)}, "
                        f"unexpected {_listed(extra)} ({advice})")
    for key, shape in expected.items():
        if got[key] != shape:
            raise TypeError(f"{key} has shape {got[key]}, expected {shape} for {what}")


def module_summary(reference: type[nn.Module], args: tuple, advice: str,
                   run: Callable[[nn.Module], Any] | None = None) -> Callable[[Any], Any]:
    """Summary for an exercise whose answer is a module class, built with ``args``.

    It checks that the student's module holds the ``state_dict`` entries of
    ``reference(*args)``, named and shaped the same (else a ``TypeError`` that ends with
    ``advice``: how to name the parts). Then it returns :func:`state_shapes`, or, with
    ``run``, what ``run(module)`` returns (typically: load :func:`seeded_weights`, call it
    on seeded inputs).
    """
    def summary(module: Any) -> Any:
        _check_state(module, reference, args, advice)
        return run(module) if run is not None else state_shapes(module)
    return summary


def seeded_weights(shapes: Mapping[str, tuple[int, ...]], seed: int, *,
                   bias_fan_in: int) -> dict[str, torch.Tensor]:
    """Seeded values for a ``state_dict`` of these shapes.

    Entry ``i`` in sorted name order is drawn with seed ``seed + i`` and divided by
    ``sqrt(fan_in)`` (the product of its dimensions but the first), so that activations stay
    of order 1; a 1-D entry (a bias) is divided as if its fan-in were ``bias_fan_in``.
    """
    state = {}
    for i, (key, shape) in enumerate(sorted(shapes.items())):
        fan_in = max(1, int(torch.Size(shape[1:]).numel())) if len(shape) > 1 else bias_fan_in
        state[key] = randn(*shape, seed=seed + i) / fan_in ** 0.5
    return state


def every_failure(exercise: Exercise, got: Any, expected: Any, hidden: bool) -> tuple[bool, str]:
    """Judge for a summary that returns ``{aspect: value}``: compare every aspect (as
    :func:`~segedu.grading.compare` would) and name each one that differs, joined by "; ".

    Anything that is not such a dict is compared as usual."""
    plain = dataclasses.replace(exercise, judge=None)
    if not isinstance(expected, dict) or not isinstance(got, dict):
        return compare(plain, got, expected, hidden=hidden)
    failures, notes = [], []
    for key, value in expected.items():
        if key not in got:
            failures.append(f"{key}: missing")
            continue
        ok, message = compare(plain, got[key], value, hidden=hidden)
        if not ok:
            failures.append(f"{key}: {message}")
        elif message:
            notes.append(message)
    if failures:
        return False, "; ".join(failures)
    return True, notes[0] if len(notes) == 1 else ""


def refusal(kind: type[Exception], mentions: Mapping[str, Iterable[str]]
            ) -> Callable[[Any], dict[str, Any]]:
    """Summary for a case in which the answer must refuse its input: raise ``kind`` (or a
    subclass) with a message that says what was wrong.

    The summary *catches* every ``Exception`` the call raises (:func:`~segedu.grading.compute`
    hands it over instead of the return value), so that a wrong error type is reported as
    such (but the stub's ``NotImplementedError`` is raised again: not an answer yet). It
    returns booleans only (what students read is the grader's words, never text the submission
    produced): ``{"raises an error": ..., "the error is a <kind>": ..., aspect: ...}`` with one
    aspect per ``mentions`` entry: ``{"the message names both channel counts": ("8", "6")}``
    is true when the error is a ``kind`` and every word appears in its message as a whole word
    (case does not matter). Judge it with :func:`every_failure`.
    """
    def summary(value: Any) -> dict[str, bool]:
        if isinstance(value, NotImplementedError):  # the stub: not an answer yet
            raise value
        message = str(value) if isinstance(value, kind) else ""
        found = {aspect: bool(message) and all(
                     re.search(rf"\b{re.escape(word)}\b", message, re.IGNORECASE)
                     for word in words)
                 for aspect, words in mentions.items()}
        return {"raises an error": isinstance(value, BaseException),
                f"the error is a {kind.__name__}": isinstance(value, kind), **found}
    summary.catches = (Exception,)
    return summary


def bins_tile(side: int, bins: Iterable[int]) -> bool:
    """True when every bin in ``bins`` cuts a feature map of ``side`` pixels into cells of one
    length that tile it without overlap (the cells adaptive pooling averages,
    :func:`~segedu.core.sizes.adaptive_pool_regions`): PSPNet's pyramid as the paper draws it."""
    for b in bins:
        cells = adaptive_pool_regions(side, b)
        if len({end - start for start, end in cells}) != 1 or cells[0][0] != 0 or \
                cells[-1][1] != side or \
                any(end != nxt for (_, end), (nxt, _) in zip(cells, cells[1:], strict=False)):
            return False
    return True

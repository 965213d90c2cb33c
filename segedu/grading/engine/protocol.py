"""What crosses the boundary between the grader (the parent) and the process that runs a
submission (the child): read this module to know all of it.

The child runs in a sandbox (:mod:`~segedu.grading.engine.isolation`) whose only writable
folder, its working directory, starts with three files the parent puts there, and nothing
else of the parent's file system:

======================  ==================================================================
``request.json``        the :class:`ChildRequest`: the exercises to compute, by id, with the
                        function's name, where its reference lives (to watch for calls of
                        its stub), and per case its name, its summary (by reference into the
                        package) and its *case seed*; the limits; the facts about the
                        references that the summaries need (their parameter shapes)
``inputs.pt``           every case's arguments, drawn by the parent with the grading seed
                        (:func:`encode_inputs`: tensors, numbers, strings, tuples, lists, dicts
                        and ``torch.nn`` modules as plain data; the child loads it with
                        ``weights_only=True``)
``submission.ipynb``    the notebook's bytes (the child never learns its path)
======================  ==================================================================

The child never receives the grading seed, the instructor's test files or the parent's
environment. A case seed is derived from the grading seed, the exercise and the case
(:func:`~segedu.grading.engine.exercise.case_seed`), and seeds what the student's code and the
case's summary draw; the reference is computed in the parent with the same seed.

What the child leaves in its folder (:class:`ChildFiles` writes, :class:`ChildOutput` reads
back from the files :func:`~segedu.grading.engine.isolation.run_isolated` collected without
following links, size-capped):

======================  ==================================================================
``result.pt``           the :class:`ChildResult`, saved after every exercise (written to
                        ``result.pt.tmp``, then renamed over it)
``result.pt.current``   ``[exercise_id, case_name]`` of the case being run (JSON)
``result.pt.refused``   a line per operation the confinement refused, appended at once
======================  ==================================================================

Anything else in the folder was written by the submission (:meth:`ChildOutput.strays`).
Its stdout and stderr come back as the tails :func:`run_isolated` keeps.

The child computes, the parent judges: nothing in these files can award points. A
submission that takes the child over can forge all of them, so the parent validates each
against the schema below (:meth:`ChildResult.from_data`: the type and size of every field)
and uses it to explain a score, never to raise one.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .vocabulary import REASONS

__all__ = ["CHILD_MODULE", "ChildRequest", "ChildFiles", "ChildOutput", "ChildResult",
           "encode_inputs", "decode_inputs", "REQUEST", "INPUTS", "NOTEBOOK"]

#: The module the parent runs with ``python -m``.
CHILD_MODULE = "segedu.grading.engine.child"
#: The version of the files' layout.
FORMAT = 2
REQUEST, INPUTS, NOTEBOOK = "request.json", "inputs.pt", "submission.ipynb"
RESULT = "result.pt"
MAX_TEXT = 300        # characters of one error or flag kept from the child
MAX_FLAGS = 30
MAX_NODES = 20_000    # plain-data nodes one case's value may hold (shared ones counted again)
MAX_DEPTH = 32

_save = torch.save  # bound now: a submission that replaces torch.save harms only itself
_load = torch.load


@dataclass(frozen=True)
class ChildRequest:
    """What the parent asks the child to do (``request.json``).

    Args:
        exercises: per exercise ``{"id", "function", "reference": "module:qualname" | None,
            "cases": [{"name", "summary": ref | None, "seed": int}]}``; a summary ref is
            ``["exercise", id]`` or ``["case", id, name]`` (that summary of the package's
            exercise) or ``["function", module, qualname]``.
        public_only: only public cases are listed (``segedu check``); reported back.
        case_timeout: seconds one case may run (None: no limit).
        memory_mb: address space the submission may allocate beyond what the child uses
            once it has imported torch, in MiB (None: no limit).
        protect: paths the confinement refuses to open (a second layer for the isolation
            levels that show the child the host's file system).
        confine: False only to debug the grader.
        facts: what the summaries need to know of the references, computed by the parent
            (:func:`~segedu.grading.engine.exercise.reference_fact`; JSON values): the
            child's references are stubs.
    """

    exercises: tuple[dict[str, Any], ...] = ()
    public_only: bool = False
    case_timeout: float | None = None
    memory_mb: int | None = None
    protect: tuple[str, ...] = ()
    confine: bool = True
    facts: Mapping[str, Any] = field(default_factory=dict)

    @staticmethod
    def command() -> list[str]:
        """``python -m segedu.grading.engine.child`` (run in the child's folder)."""
        return [sys.executable, "-m", CHILD_MODULE]

    def to_bytes(self) -> bytes:
        return json.dumps({"format": FORMAT, "exercises": list(self.exercises),
                           "public_only": self.public_only, "case_timeout": self.case_timeout,
                           "memory_mb": self.memory_mb, "protect": list(self.protect),
                           "confine": self.confine, "facts": dict(self.facts)}).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> ChildRequest:
        raw = json.loads(data.decode("utf-8"))
        if raw.get("format") != FORMAT:
            raise ValueError(f"request format {raw.get('format')!r}, expected {FORMAT}")
        return cls(tuple(raw["exercises"]), bool(raw["public_only"]), raw["case_timeout"],
                   raw["memory_mb"], tuple(raw["protect"]), bool(raw["confine"]),
                   dict(raw["facts"]))


# --------------------------------------------------------------------------- case inputs

_MODULE = "__segedu_nn_module__"


def _encode(value: Any) -> Any:
    if isinstance(value, nn.Module):
        cls = type(value)
        if getattr(nn, cls.__name__, None) is not cls:
            raise TypeError(f"a case input of type {cls.__module__}.{cls.__qualname__} cannot "
                            "be sent to the child: only torch.nn's own modules can")
        base = vars(nn.Module())
        attrs = {k: v for k, v in vars(value).items()
                 if k not in base and k not in ("_parameters", "_buffers", "_modules")}
        return {_MODULE: cls.__name__, "training": value.training, "attrs": _encode(attrs),
                "parameters": {k: None if p is None else [p.detach().clone(), p.requires_grad]
                               for k, p in value._parameters.items()},
                "buffers": {k: None if b is None else b.detach().clone()
                            for k, b in value._buffers.items()},
                "non_persistent": sorted(value._non_persistent_buffers_set),
                "modules": {k: None if m is None else _encode(m)
                            for k, m in value._modules.items()}}
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return tuple(_encode(v) for v in value)
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        if _MODULE in value or not all(isinstance(k, str) for k in value):
            raise TypeError("a case input dict must have str keys")
        return {k: _encode(v) for k, v in value.items()}
    raise TypeError(f"a case input of type {type(value).__name__} cannot be sent to the child")


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and _MODULE in value:
        cls = getattr(nn, value[_MODULE])
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"not a torch.nn module: {value[_MODULE]!r}")
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        module.__dict__.update(_decode(value["attrs"]))
        module.training = value["training"]
        for key, entry in value["parameters"].items():
            module._parameters[key] = None if entry is None else nn.Parameter(
                entry[0], requires_grad=entry[1])
        module._buffers.update(value["buffers"])
        module._non_persistent_buffers_set.update(value["non_persistent"])
        for key, entry in value["modules"].items():
            module._modules[key] = None if entry is None else _decode(entry)
        return module
    if isinstance(value, tuple):
        return tuple(_decode(v) for v in value)
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    return value


def encode_inputs(inputs: Mapping[str, Mapping[str, tuple]]) -> bytes:
    """``inputs.pt``: ``{exercise_id: {case_name: arguments}}`` as plain data.

    Raises:
        TypeError: an argument is of a type the child could not load safely."""
    buffer = io.BytesIO()
    _save({ex: {case: _encode(tuple(args)) for case, args in cases.items()}
           for ex, cases in inputs.items()}, buffer)
    return buffer.getvalue()


def decode_inputs(data: bytes) -> dict[str, dict[str, tuple]]:
    """What :func:`encode_inputs` wrote, loaded with ``weights_only=True``, modules rebuilt."""
    raw = _load(io.BytesIO(data), weights_only=True)
    return {ex: {case: _decode(args) for case, args in cases.items()}
            for ex, cases in raw.items()}


@dataclass
class ChildResult:
    """The child's account of a run, saved as the result file.

    Attributes:
        complete: every expected exercise was computed (the child's last save).
        notebook_error: why the notebook could not be read, else None.
        cell_errors: a dict per setup or answer cell that raised:
            ``{"cell": int, "kind": "setup" | "answer", "exercise": str, "error": str,
            "exception": str | None}`` (``error``: the text, for the instructor;
            ``exception``: the type's name).
        flags: what the submission tried that the child refused or noticed.
        results: ``{exercise_id: {case_name: {"ok_run": bool, "value": data | None,
            "error": str | None, "reason": str | None, "exception": str | None}}}``: a failed
            case's ``reason`` is a code of :data:`~segedu.grading.engine.vocabulary.REASONS`
            (students read the message the parent words from it), ``error`` the child's text
            (for the instructor only).
    """

    complete: bool = False
    notebook_error: str | None = None
    cell_errors: list[dict[str, Any]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        return {"format": FORMAT, "complete": self.complete,
                "notebook_error": self.notebook_error, "cell_errors": self.cell_errors,
                "flags": self.flags, "results": self.results}

    @classmethod
    def from_data(cls, data: Any) -> ChildResult:
        """Read back what :meth:`to_data` wrote, keeping only entries of the right types and
        sizes (the file may be forged: nothing here may raise but ``TypeError`` for a
        result that is not a dict, and nothing may grow when turned into a string)."""
        if not isinstance(data, dict):
            raise TypeError(f"a result is a dict, not a {type(data).__name__}")
        results, cell_errors, flags = (data.get(key) for key in
                                       ("results", "cell_errors", "flags"))
        return cls(
            complete=data.get("complete") is True,
            notebook_error=_text(data.get("notebook_error")),
            cell_errors=[e for e in map(_cell_error, _items(cell_errors, 50)) if e],
            flags=[f for f in map(_text, _items(flags, MAX_FLAGS)) if f],
            results={ex: {case: _record(r) for case, r in cases.items()
                          if isinstance(case, str)}
                     for ex, cases in (results.items() if isinstance(results, dict) else ())
                     if isinstance(ex, str) and isinstance(cases, dict)},
        )

    def record(self, exercise_id: str, case_name: str) -> dict[str, Any] | None:
        """The record of one case (None when there is none), validated."""
        cases = self.results.get(exercise_id)
        return cases.get(case_name) if isinstance(cases, dict) else None

    def covers(self, exercise_ids: Iterable[str]) -> bool:
        """Whether it holds the cases of every one of ``exercise_ids``."""
        return all(isinstance(self.results.get(i), dict) for i in exercise_ids)


def _text(value: Any) -> str | None:
    """A str from the child, cut to :data:`MAX_TEXT` characters; None for anything else."""
    return value[:MAX_TEXT] if isinstance(value, str) and value else None


def _items(value: Any, limit: int) -> list:
    return value[:limit] if isinstance(value, list) else []


def _cell_error(entry: Any) -> dict[str, Any] | None:
    if not isinstance(entry, dict):
        return None
    cell, kind = entry.get("cell"), entry.get("kind")
    return {"cell": cell if isinstance(cell, int) and not isinstance(cell, bool) else -1,
            "kind": kind if kind in ("setup", "answer") else "?",
            "exercise": _text(entry.get("exercise")) or "",
            "error": _text(entry.get("error")) or "failed",
            "exception": _name(entry.get("exception"))}


def _name(value: Any) -> str | None:
    """An exception's type name from the child: an identifier of 100 characters at most."""
    return value if isinstance(value, str) and value.isidentifier() and len(value) <= 100 \
        else None


def _bounded(value: Any) -> bool:
    """Whether ``value`` is plain data of at most :data:`MAX_NODES` nodes and
    :data:`MAX_DEPTH` levels (a shared sub-list counts each time it appears)."""
    budget = [MAX_NODES]

    def walk(v: Any, depth: int) -> bool:
        budget[0] -= 1
        if budget[0] < 0 or depth > MAX_DEPTH:
            return False
        if isinstance(v, (list, tuple)):
            return all(walk(x, depth + 1) for x in v)
        if isinstance(v, dict):
            return all(isinstance(k, str) and walk(x, depth + 1) for k, x in v.items())
        if isinstance(v, str):
            return len(v) <= 100_000
        return v is None or isinstance(v, (bool, int, float, torch.Tensor))

    return walk(value, 0)


def _failed(reason: str, error: str | None, exception: str | None = None) -> dict[str, Any]:
    return {"ok_run": False, "value": None, "error": error, "reason": reason,
            "exception": exception}


def _record(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        return _failed("malformed", "malformed record")
    if record.get("ok_run") is not True:
        reason = record.get("reason")
        return _failed(reason if isinstance(reason, str) and reason in REASONS else "failed",
                       _text(record.get("error")) or "failed", _name(record.get("exception")))
    if not _bounded(record.get("value")):
        return _failed("too_large", REASONS["too_large"])
    return {"ok_run": True, "value": record.get("value"), "error": None, "reason": None,
            "exception": None}


class ChildFiles:
    """The child's side: the result file and the side files named after it, in its working
    directory (see the module docstring)."""

    def __init__(self, workdir: str | os.PathLike = ".") -> None:
        self.workdir = Path(workdir)
        self.result = self.workdir / RESULT

    def _beside(self, suffix: str) -> Path:
        return self.result.with_name(self.result.name + suffix)

    @property
    def partial(self) -> Path:
        """Where :meth:`save` writes before renaming over the result."""
        return self._beside(".tmp")

    @property
    def current(self) -> Path:
        return self._beside(".current")

    @property
    def refused(self) -> Path:
        return self._beside(".refused")

    def read_request(self) -> tuple[ChildRequest, dict[str, dict[str, tuple]], Path]:
        """The request, the decoded case inputs and the notebook's path."""
        request = ChildRequest.from_bytes((self.workdir / REQUEST).read_bytes())
        inputs = decode_inputs((self.workdir / INPUTS).read_bytes())
        return request, inputs, self.workdir / NOTEBOOK

    def save(self, result: ChildResult) -> None:
        """Save ``result`` so that the parent never reads a half-written file."""
        with open(self.partial, "wb") as f:
            _save(result.to_data(), f)
        os.replace(self.partial, self.result)

    def mark_current(self, exercise_id: str, case_name: str) -> None:
        """Note which case is running, so the parent can say which one crashed or hung."""
        self.current.write_text(json.dumps([exercise_id, case_name]), encoding="utf-8")


@dataclass
class ChildOutput:
    """The parent's side: what the child left, as :func:`run_isolated` read it back
    (regular files only, no link followed, size-capped) and what it refused to read."""

    files: Mapping[str, bytes]
    rejected: Mapping[str, str] = field(default_factory=dict)

    def result(self) -> ChildResult | None:
        """The result the child saved last; None when there is none.

        Raises:
            ValueError: the file holds no result, or is not a regular file.
        """
        if RESULT in self.rejected:
            raise ValueError(f"unreadable result file: {self.rejected[RESULT]}")
        data = self.files.get(RESULT)
        if data is None:
            return None
        try:
            return ChildResult.from_data(_load(io.BytesIO(data), weights_only=True))
        except Exception as error:
            raise ValueError(f"unreadable result file: {type(error).__name__}") from None

    def running(self) -> Any:
        """``[exercise_id, case_name]`` of the last case started (None if unknown)."""
        try:
            found = json.loads(self.files.get(RESULT + ".current", b"")[:10_000])
        except (ValueError, UnicodeDecodeError):
            return None
        if isinstance(found, list) and len(found) == 2 and all(isinstance(x, str)
                                                               for x in found):
            return found
        return None

    def refusals(self, limit: int = 20) -> list[str]:
        """What the confinement refused, one line each (at most ``limit``)."""
        text = self.files.get(RESULT + ".refused", b"")[:20_000].decode("utf-8", "replace")
        return [line for line in text.splitlines()[:limit] if line.strip()]

    def strays(self, limit: int = 20) -> list[str]:
        """What the submission left in the folder that the protocol does not know
        (files, and entries that were not read: links, FIFOs, ...)."""
        ours = {REQUEST, INPUTS, NOTEBOOK, RESULT, RESULT + ".tmp", RESULT + ".current",
                RESULT + ".refused"}
        names = sorted({*self.files, *self.rejected} - ours)
        return names[:limit] + ([f"... {len(names) - limit} more"] if len(names) > limit
                                else [])

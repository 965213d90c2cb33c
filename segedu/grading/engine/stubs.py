"""The segedu a graded submission imports: a copy of the package in which the reference
implementations of the chapter being graded are stubs (the other chapters' stay: a chapter-4
answer may use what chapter 1 taught).

The grader binds this copy read-only into the sandbox in place of the real package, so the
reference is not in the child's process at all: no thread, tracer trick, renamed code object
or ``gc`` walk can call it, and its source is not there to read. Everything else stays, so a
submission may use what the course teaches (``DoubleConv``, ``ASPPConv``, ...), and the
exercises' summaries run as in the parent.

What a stub replaces (an AST rewrite of the module that defines the reference):

* a **function** — its body becomes a call of the *submission's own* function of that name
  (:func:`own_answer`), or ``raise NotImplementedError(...)`` when it has none: the
  package's other code that uses it (``ASPPPooling`` calls ``image_pooling``) then runs on
  the student's answer, and calling "the reference" gains nothing;
* a **class** — every method's body, ``__init__``'s included: the class cannot be built, so
  a submission that subclasses it and adds nothing has no working code at all (whatever it
  does to the call monitor). What the summaries of class exercises need to know of the
  reference (its parameter names and shapes, which their failure messages state anyway)
  the grader computes from the real class and sends to the child as facts
  (:func:`~segedu.grading.engine.exercise.reference_fact`).

A reference that is not defined in the segedu package (an instructor's lambda in a private
test file) needs no stub: the child never receives the private test files.
"""

from __future__ import annotations

import ast
import atexit
import compileall
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["PACKAGE_DIR", "reference_target", "stubbed_package", "own_answer", "answers"]

#: The namespace of the notebook being graded (the child sets it; empty elsewhere).
answers: dict[str, Any] = {}

PACKAGE_DIR = Path(__file__).resolve().parents[2]  # .../segedu

_lock = threading.Lock()
_built: dict[frozenset, Path] = {}


def reference_target(reference: Any) -> tuple[str, str] | None:
    """``(module, qualname)`` of a reference defined in the segedu package, else None."""
    target = getattr(reference, "func", reference)  # functools.partial
    module = getattr(target, "__module__", None) or ""
    qualname = getattr(target, "__qualname__", None) or ""
    if module.split(".")[0] != PACKAGE_DIR.name or "<" in qualname:
        return None
    return module, qualname


def own_answer(name: str, qualified: str) -> Any:
    """The submission's own function ``name`` (what a stubbed reference calls instead)."""
    found = answers.get(name)
    module = qualified.rsplit(".", 1)[0]
    if callable(found) and getattr(found, "__module__", None) != module:  # not the stub
        return found
    raise NotImplementedError(f"{qualified} is not available while grading: the grader runs "
                              "the submission's own code")


def _message(name: str) -> str:
    return f"{name} is not available while grading: the grader runs the submission's own code"


def _stub_body(node: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> None:
    node.body = [ast.Raise(exc=ast.Call(func=ast.Name("NotImplementedError", ast.Load()),
                                        args=[ast.Constant(_message(name))], keywords=[]),
                           cause=None)]


def _delegating_body(node: ast.FunctionDef, module: str) -> None:
    """``return own_answer(name, ...)(<the same arguments>)``."""
    a = node.args
    positional = [ast.Name(x.arg, ast.Load()) for x in [*a.posonlyargs, *a.args]]
    if a.vararg:
        positional.append(ast.Starred(ast.Name(a.vararg.arg, ast.Load()), ast.Load()))
    keywords = [ast.keyword(x.arg, ast.Name(x.arg, ast.Load())) for x in a.kwonlyargs]
    if a.kwarg:
        keywords.append(ast.keyword(None, ast.Name(a.kwarg.arg, ast.Load())))
    own = ast.parse(f"__import__('segedu.grading.engine.stubs', fromlist=['own_answer'])"
                    f".own_answer({node.name!r}, {module + '.' + node.name!r})",
                    mode="eval").body
    node.body = [ast.Return(ast.Call(own, positional, keywords))]


def _stub_class(node: ast.ClassDef, qualified: str) -> None:
    """Every method raises, ``__init__`` included (one is added if the class has none): the
    class cannot be built, so a subclass that adds nothing inherits nothing that works."""
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    if not any(isinstance(item, functions) and item.name == "__init__" for item in node.body):
        node.body.append(ast.parse("def __init__(self, *args, **kwargs): pass").body[0])
    for item in node.body:
        if isinstance(item, functions):
            _stub_body(item, f"{qualified}.{item.name}")


def _stub_module(source: str, module: str, qualnames: set[str]) -> str:
    tree = ast.parse(source)
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in qualnames:
            _delegating_body(node, module)
        elif isinstance(node, functions) and node.name in qualnames:
            _stub_body(node, f"{module}.{node.name}")
        elif isinstance(node, ast.ClassDef) and node.name in qualnames:
            _stub_class(node, f"{module}.{node.name}")
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def _copy_elsewhere(copy: Path, ignore: Any) -> None:
    """Copy in the imported subpackages that live outside :data:`PACKAGE_DIR` (an editable
    install may map one elsewhere)."""
    prefix = PACKAGE_DIR.name + "."
    for name, module in sorted(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        if not name.startswith(prefix) or origin is None or not hasattr(module, "__path__"):
            continue
        source = Path(origin).resolve().parent
        target = copy.joinpath(*name.split(".")[1:])
        if not target.exists() and PACKAGE_DIR not in source.parents:
            shutil.copytree(source, target, ignore=ignore)


def stubbed_package(references: Iterable[Any]) -> Path:
    """The folder ``segedu/`` of a copy of the package with ``references`` stubbed (built
    once per set of references and process, compiled, readable by every user, removed at
    exit)."""
    targets: dict[str, set[str]] = {}
    for reference in references:
        found = reference_target(reference)
        if found is not None:
            targets.setdefault(found[0], set()).add(found[1].split(".")[0])
    key = frozenset((m, q) for m, qs in targets.items() for q in qs)
    with _lock:
        if key in _built and _built[key].is_dir():
            return _built[key]
        root = Path(tempfile.mkdtemp(prefix="segedu-stubbed-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        os.chmod(root, 0o755)
        copy = root / PACKAGE_DIR.name
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")
        shutil.copytree(PACKAGE_DIR, copy, ignore=ignore)
        _copy_elsewhere(copy, ignore)
        for module, qualnames in targets.items():
            relative = Path(*module.split(".")[1:])
            path = copy / relative.with_suffix(".py")
            if not path.is_file():
                path = copy / relative / "__init__.py"
            path.write_text(_stub_module(path.read_text(encoding="utf-8"), module, qualnames),
                            encoding="utf-8")
        compileall.compile_dir(str(copy), quiet=1, workers=1)
        for folder, dirs, files in os.walk(root):
            for name in dirs:
                os.chmod(os.path.join(folder, name), 0o755)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o644)
        _built[key] = copy
        return copy

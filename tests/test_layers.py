"""The package's layering is a contract (import-linter, configured in pyproject.toml), and it bites.

Layers, lowest first: core → backbones | data → chapters 1..8 in order → zoo → tools → grading →
cli. A module imports only from layers below its own; a chapter only from earlier chapters.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
         "sys.exit(lint_imports_command())", "--no-cache"],
        cwd=cwd, env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120,
    )


def test_the_package_keeps_its_import_layers():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 kept, 0 broken" in result.stdout


def test_a_wrong_way_import_breaks_the_contract_and_is_named(tmp_path):
    shutil.copytree(ROOT / "segedu", tmp_path / "segedu",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    planted = tmp_path / "segedu" / "core" / "metrics.py"   # core reaching up into a chapter
    planted.write_text(planted.read_text() + "\nfrom ..unet import weight_map  # noqa: E402\n")
    result = _lint(tmp_path)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    assert "BROKEN" in result.stdout
    assert "segedu.core.metrics -> segedu.unet" in result.stdout


def test_the_grading_engine_never_imports_the_chapters_exercises(tmp_path):
    shutil.copytree(ROOT / "segedu", tmp_path / "segedu",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    planted = tmp_path / "segedu" / "grading" / "engine" / "judge.py"
    planted.write_text(planted.read_text() + "\nfrom ..content import ch01  # noqa: E402\n")
    result = _lint(tmp_path)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    assert "segedu.grading.engine.judge -> segedu.grading.content" in result.stdout


def test_importing_the_package_and_building_the_cli_does_not_import_torchvision():
    # torchvision's import costs about as much as torch's (it pulls in torch._dynamo); every
    # graded submission imports segedu, and only the data sets, the weight downloads, the
    # receptive-field tool and the experiment harness need torchvision: they import it.
    # segedu.cli.build_parser(): every command (segedu grade, check, ...) builds all of the
    # parsers, so no parser may import a data set (the experiment harness imports it to run).
    code = ("import sys, segedu, segedu.cli, segedu.zoo, segedu.deploy,"
            " segedu.grading.engine.child; segedu.cli.build_parser();"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchvision'))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={"PYTHONPATH": str(ROOT),
                                                         "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", result.stdout

"""The README's quickstart is what CI runs, and its layout section is the package's tree."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text):
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_readme_quickstart_is_exactly_two_lines_install_demo_and_install_test():
    quickstart = ROOT.joinpath("README.md").read_text().split("## Quickstart", 1)[1]
    quickstart = quickstart.split("\n## ", 1)[0]
    lines = [b.strip() for b in _bash_blocks(quickstart)]
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert "pip install" in lines[0] and lines[0].endswith("segedu demo")
    assert "pip install" in lines[1] and "pytest" in lines[1]


def test_ci_runs_the_readmes_test_line():
    quickstart = ROOT.joinpath("README.md").read_text().split("## Quickstart", 1)[1]
    test_line = [b.strip() for b in _bash_blocks(quickstart)][1]
    ci = ROOT.joinpath(".ci", "run").read_text()
    assert test_line in ci.splitlines()


def _layout_block() -> str:
    section = ROOT.joinpath("README.md").read_text().split("## How the pieces fit", 1)[1]
    return re.search(r"```\n(segedu/\n.*?)```", section, flags=re.S).group(1)


def test_readme_layout_names_every_module_and_only_modules_that_exist():
    """Every module and folder of the package is named in the layout (the grading engine's and
    content's many files are described by role instead), and every file it names exists."""
    block = _layout_block()
    named = set(re.findall(r"\b([a-z_0-9]+\.py)\b", block))            # files, anywhere
    named |= set(re.findall(r"^ *([a-z_0-9]+/)", block, flags=re.M))   # folders, first on a line
    package = ROOT / "segedu"
    on_disk = {p.name for p in package.rglob("*.py")} | {
        p.name + "/" for p in package.rglob("*") if p.is_dir() and p.name != "__pycache__"}
    unknown = named - on_disk - {"segedu/", "notebooks/", "solutions/", "exercises/", "tests/",
                                 "benchmarks/"}
    assert unknown == set(), f"README's layout section names what is not in segedu/: {unknown}"
    described_by_role = {package / "grading" / "engine", package / "grading" / "content",
                         package / "grading" / "content" / "mutants",
                         package / "grading" / "engine" / "isolation"}
    missing = sorted(
        str(p.relative_to(ROOT)) for p in package.rglob("*")
        if p.name not in ("__init__.py", "__main__.py", "__pycache__")
        and "__pycache__" not in p.parts and p.parent not in described_by_role
        and (p.suffix == ".py" or p.is_dir())
        and (p.name + "/" if p.is_dir() else p.name) not in named)
    assert missing == [], f"README's layout section does not name: {missing}"

"""The README's quickstart is what CI runs."""

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

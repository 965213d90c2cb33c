"""Mutation score of the core modules: do their tests notice when the code is wrong? (issue 19)

A mutant is the module with one small change (``<`` for ``<=``, ``+ 1`` for ``- 1``, a dropped
argument, ...). A test suite *kills* it when at least one test fails; a *surviving* mutant is a
behaviour no test states. For each core module this script runs mutmut over that module only,
with only the test files that target it, and prints killed / survived / timeout and the score,
with and without the mutants that only change the text of an error message (a string literal
inside ``raise ...(...)``: the tests check the message's key words with ``match=``, not every
character). Survivors are listed; the ones judged equivalent (no input can tell them apart from
the original) are listed in ``EQUIVALENT`` below with a reason, and reported apart.

Outside the 10-minute test suite. A maintainer runs, from the repository root::

    nice -n 15 python benchmarks/mutation.py                 # every module (receptive: ~1 hour)
    nice -n 15 python benchmarks/mutation.py validation sizes
    nice -n 15 python benchmarks/mutation.py receptive --sample 300   # a deterministic sample
    nice -n 15 python benchmarks/mutation.py metrics --survivors   # after new tests: rerun them
    python benchmarks/mutation.py --report                      # print the stored results

mutmut (>= 3) works on a copy: it writes a ``mutants/`` folder next to the configuration it
reads. We give it a temporary folder holding the package, the targeted test files, and a copy
of ``pyproject.toml`` with a ``[tool.mutmut]`` section appended, so nothing is written into the
repository except ``benchmarks/results/mutation.json`` (one entry per module, merged).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "mutation.json"

#: module -> (the file mutated, the test files that target it). Smallest first.
MODULES: dict[str, tuple[str, list[str]]] = {
    "validation": ("segedu/core/validation.py", ["tests/test_validation.py"]),
    "sizes": ("segedu/core/sizes.py", ["tests/test_sizes.py"]),
    "metrics": ("segedu/core/metrics.py", ["tests/test_metrics.py"]),
    "losses": ("segedu/losses.py", ["tests/test_losses.py"]),
    "receptive": ("segedu/tools/receptive/*", ["tests/test_receptive.py"]),
}

#: Surviving mutants that behave exactly like the original: mutant name -> why.
EQUIVALENT: dict[str, str] = {
    "segedu.core.validation.x_check_image_batch__mutmut_43":
        "x.shape[+2:] for x.shape[-2:]: x has exactly 4 dimensions there (checked above).",
    "segedu.core.validation.x_check_logits_and_target__mutmut_13":
        "pred.shape[+2:] for pred.shape[-2:]: inside `if pred.dim() == 4`, the same slice.",
    "segedu.core.sizes.x_effective_kernel_size__mutmut_11":
        "the stride passed to the argument check is a constant: 1 and 2 both pass it.",
    "segedu.core.sizes.x_adaptive_pool_regions__mutmut_11":
        "the dilation passed to the argument check is a constant: 1 and 2 both pass it.",
    "segedu.core.sizes.x_stack_output_size__mutmut_37":
        "nn.MaxPool2d/AvgPool2d set stride = kernel_size when given None: never None here.",
    "segedu.core.sizes.x_atrous_taps_inside__mutmut_10":
        "the stride passed to the argument check is a constant: 1 and 2 both pass it.",
    "segedu.core.sizes.x_resnet_feature_size__mutmut_34":
        "log2(output_stride / 4) for // 4: output_stride is 4, 8, 16 or 32 (checked above), "
        "so the quotient is a power of two either way.",
    # receptive (sample of 150, 2026-12-02)
    **{f"segedu.tools.receptive.theoretical.x__main_paths__mutmut_{n}": (
        "a BatchNorm or Dropout name in the path table: the walk yields them only to skip "
        "them (no geometry, no row), and a name given as upto= is matched only on rows")
       for n in (5, 42, 43, 56)},
    "segedu.tools.receptive.theoretical.x__walk__mutmut_15":
        "getattr without a default: every class in the path table has every listed attribute "
        "(a None attribute is still skipped by the `is not None` below)",
    "segedu.tools.receptive.theoretical.x_receptive_field__mutmut_30":
        "matches(name, None) for matches(name, name): upto is a str, so `upto in (name, None)` "
        "is `upto == name`",
    "segedu.tools.receptive.effective.x\u01c1EffectiveRF\u01c1mass_extent__mutmut_19":
        "arange without dtype: int64 positions promote to the gradient's float dtype",
    "segedu.tools.receptive.effective.x\u01c1EffectiveRF\u01c1support__mutmut_18":
        "g.max() < 0 for <= 0: an all-zero gradient has no row above 0 x max, caught by "
        "rows.numel() == 0 first",
    # metrics (sample of 150, 2026-12-02)
    "segedu.core.metrics.x__boundaries__mutmut_3":
        "int64 0/1 edges for bool ones: |=, & and the dilation give the same public results",
    "segedu.core.metrics.x_boundary_f1__mutmut_52":
        "precision 1.0 for 0.0 when nothing is predicted as boundary: recall is then 0 too "
        "(no predicted edge is near a true one), so F1 = 2PR/(P+R) = 0 either way",
    **{f"segedu.core.metrics.x\u01c1ConfusionMatrix\u01c1{name}__mutmut_{n}": (
        "moving the matrix to the counts' device: observable only with two devices (CUDA); "
        "on a CPU-only machine every tensor is on the CPU")
       for name, n in (("merge", 5), ("update", 64), ("update", 65), ("update", 66))},
}

# --------------------------------------------------------------------------------------------
# Running mutmut in a temporary copy
# --------------------------------------------------------------------------------------------


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def _prepare(workdir: Path, target: str, tests: list[str]) -> None:
    """Copy what mutmut needs into ``workdir`` and configure it for one module."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "segedu", workdir / "segedu", ignore=ignore)
    (workdir / "tests").mkdir()
    for name in ["tests/conftest.py", *tests]:
        shutil.copy2(ROOT / name, workdir / name)
    config = f"""

[tool.mutmut]
source_paths = ["segedu"]
only_mutate = [{json.dumps(target)}]
pytest_add_cli_args = ["-p", "no:randomly", "-p", "no:cacheprovider", "-q", "-x"]
pytest_add_cli_args_test_selection = {_toml_list(tests)}
process_isolation = "forkserver"
use_git_change_detection = false
# a mutant that hangs is caught by a timeout of 15x the tests' time plus this many seconds;
# generous, so that a slow, shared machine does not turn survivors into "timeouts"
timeout_constant = 60.0
"""
    text = (ROOT / "pyproject.toml").read_text()
    (workdir / "pyproject.toml").write_text(text + config)


_COLLECT = r"""
import json, sys
from mutmut.__main__ import walk_mutatable_files
from mutmut.mutation.data import SourceFileMutationData
import libcst as cst
from mutmut.mutation.diff_apply import (get_diff_for_mutant, read_functions_from_index,
    read_mutant_function, read_mutants_module, read_original_function)
from mutmut.stats import status_by_exit_code
out = []
for path in walk_mutatable_files():
    m = SourceFileMutationData(path=path)
    m.load()
    for name, code in sorted(m.exit_code_by_key.items()):
        functions = read_functions_from_index(name, path)
        if functions is None:
            module = read_mutants_module(path)
            functions = (read_original_function(module, name), read_mutant_function(module, name))
        orig, mutant = (cst.Module([f]).code.strip() for f in functions)
        out.append({"name": name, "status": status_by_exit_code[code], "orig": orig,
                    "mutant": mutant, "diff": get_diff_for_mutant(name, path=path)})
json.dump(out, sys.stdout)
"""


def _mutmut(workdir: Path, args: list[str], log) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MUTANT_UNDER_TEST")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=workdir, env=env,
                          stdout=log, stderr=subprocess.STDOUT, text=True)


def _list_mutants(workdir: Path) -> list[str]:
    """Names of every mutant of the module (``mutmut results --all`` before any run)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", _COLLECT], cwd=workdir, env=env,
                          capture_output=True, text=True, check=True)
    return [m["name"] for m in json.loads(done.stdout)]


def run_module(name: str, max_children: int, sample: int | None, keep: bool,
               tests: list[str] | None = None, only: list[str] | None = None) -> dict:
    target, default_tests = MODULES[name]
    tests = tests or default_tests
    workdir = Path(tempfile.mkdtemp(prefix=f"segedu-mutation-{name}-"))
    start = time.monotonic()
    try:
        _prepare(workdir, target, tests)
        with open(workdir / "mutmut.log", "w") as log:
            selected: list[str] = []
            if only:
                _mutmut(workdir, ["run", "--max-children", str(max_children), "nothing.x"], log)
                selected = sorted(only)
            elif sample is not None:
                # generate the mutants without running them ("no such mutant" runs nothing),
                # then run a deterministic sample of them
                _mutmut(workdir, ["run", "--max-children", str(max_children), "nothing.x"], log)
                every = _list_mutants(workdir)
                selected = sorted(random.Random(19).sample(every, min(sample, len(every))))
            done = _mutmut(workdir, ["run", "--max-children", str(max_children), *selected], log)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        collected = subprocess.run([sys.executable, "-c", _COLLECT], cwd=workdir, env=env,
                                   capture_output=True, text=True)
        if collected.returncode != 0 or done.returncode not in (0, 1):
            log_text = (workdir / "mutmut.log").read_text()[-3000:]
            raise RuntimeError(f"mutmut failed for {name} (rc {done.returncode}):\n{log_text}"
                               f"\n{collected.stderr[-2000:]}")
        mutants = json.loads(collected.stdout)
    finally:
        if keep:
            print(f"  (kept {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if selected:
        chosen = set(selected)
        mutants = [m for m in mutants if m["name"] in chosen]
    for m in mutants:
        m["message_only"] = is_message_only(m.pop("orig"), m.pop("mutant"))
    return summarise(name, target, tests, mutants, time.monotonic() - start, sample)


# --------------------------------------------------------------------------------------------
# Message-only mutants and the summary
# --------------------------------------------------------------------------------------------


class _BlankMessages(ast.NodeTransformer):
    """Drop the arguments of the exception in every ``raise SomeError(...)``: its message."""

    def visit_Raise(self, node: ast.Raise) -> ast.Raise:
        if isinstance(node.exc, ast.Call):
            node.exc.args, node.exc.keywords = [], []
        return node


def is_message_only(original: str, mutant: str) -> bool:
    """True when the mutant changes nothing but the message of a ``raise SomeError(message)``
    (a string literal, an f-string's pieces, or the whole message replaced by ``None``)."""
    trees = [ast.parse(textwrap.dedent(code)) for code in (original, mutant)]
    dumps = [ast.dump(_BlankMessages().visit(tree)) for tree in trees]
    return dumps[0] == dumps[1]


def _score(counts: dict[str, int]) -> float:
    decided = counts["killed"] + counts["survived"] + counts["timeout"] + counts["no tests"]
    return round(100 * (counts["killed"] + counts["timeout"]) / decided, 1) if decided else 0.0


def summarise(name, target, tests, mutants, seconds, sample) -> dict:
    def count(ms):
        c = {"killed": 0, "survived": 0, "timeout": 0, "no tests": 0, "other": 0}
        for m in ms:
            key = m["status"] if m["status"] in c else "other"
            c[key] += 1
        c["total"] = len(ms)
        return c

    without_messages = [m for m in mutants if not m["message_only"]]
    without_equivalent = [m for m in without_messages if m["name"] not in EQUIVALENT]
    all_counts, msg_counts = count(mutants), count(without_messages)
    eq_counts = count(without_equivalent)
    # a mutant no test even runs survives too
    survivors = [m for m in mutants if m["status"] in ("survived", "no tests")]
    return {
        "module": target,
        "tests": tests,
        "sample": sample,
        "seconds": round(seconds),
        "all": {**all_counts, "score": _score(all_counts)},
        "without_message_only": {**msg_counts, "score": _score(msg_counts)},
        "without_message_only_and_equivalent": {**eq_counts, "score": _score(eq_counts)},
        "equivalent": {m["name"]: EQUIVALENT[m["name"]] for m in survivors
                       if m["name"] in EQUIVALENT},
        "survivors": [{"name": m["name"], "status": m["status"], "message_only": m["message_only"],
                       "diff": "\n".join(line for line in m["diff"].splitlines()[2:]
                                         if line[:1] in "+-@")}
                      for m in survivors],  # reapply_equivalent sets the equivalent apart
        "other": {m["name"]: m["status"] for m in mutants
                  if m["status"] not in ("killed", "survived", "timeout", "no tests")},
    }


def reapply_equivalent(r: dict) -> dict:
    """Recount a stored result with the current ``EQUIVALENT`` list (after reviewing survivors,
    without running the mutants again)."""
    survivors = r["survivors"] + [s for s in r.get("equivalent_survivors", [])]
    equivalent = [s for s in survivors if s["name"] in EQUIVALENT and not s["message_only"]]
    counts = dict(r["without_message_only"])
    for s in equivalent:
        counts[s.get("status", "survived")] -= 1
        counts["total"] -= 1
    counts["score"] = _score(counts)
    return {**r, "without_message_only_and_equivalent": counts,
            "equivalent": {s["name"]: EQUIVALENT[s["name"]] for s in equivalent},
            "equivalent_survivors": equivalent,
            "survivors": [s for s in survivors if s not in equivalent]}


def update_survivors(stored: dict, rerun: dict) -> dict:
    """Fold a rerun of the stored survivors (after new tests) into the stored counts."""
    new_status = {s["name"]: s["status"] for s in rerun["survivors"]}
    r = json.loads(json.dumps(stored))
    still = []
    for s in r["survivors"] + r.pop("equivalent_survivors", []):
        old, now = s.get("status", "survived"), new_status.get(s["name"], "killed")
        if now in ("survived", "no tests"):
            still.append({**s, "status": now})
            continue
        for key in ("all", "without_message_only"):
            if key == "all" or not s["message_only"]:
                r[key][old] -= 1
                r[key][now if now in r[key] else "other"] += 1
                r[key]["score"] = _score(r[key])
    r["survivors"] = still
    r["survivors_rerun_seconds"] = rerun["seconds"]
    return r


def print_summary(r: dict, show_survivors: bool) -> None:
    print(f"{r['module']}  ({', '.join(r['tests'])}; {r['seconds']} s"
          + (f"; sample of {r['sample']}" if r["sample"] else "") + ")")
    for title, key in (("all mutants", "all"), ("without message-only", "without_message_only"),
                       ("and without equivalent", "without_message_only_and_equivalent")):
        c = r[key]
        print(f"  {title:<23}{c['killed']:4d} killed {c['survived']:4d} survived "
              f"{c['no tests']:3d} untested {c['timeout']:3d} timeout {c['other']:3d} other  "
              f"score {c['score']:5.1f}% of {c['total']}")
    if show_survivors:
        for s in r["survivors"]:
            if not s["message_only"]:
                print(f"  survived: {s['name']}")
                print("    " + s["diff"].replace("\n", "\n    "))
        for n, why in r["equivalent"].items():
            print(f"  equivalent: {n}: {why}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", default=list(MODULES), metavar="MODULE",
                        help=f"any of {', '.join(MODULES)} (default: all, in that order)")
    parser.add_argument("--sample", type=int, help="run only this many mutants (seeded)")
    parser.add_argument("--max-children", type=int, default=1,
                        help="parallel mutant runs (default 1: a shared machine)")
    parser.add_argument("--tests", nargs="+",
                        help="test files to use instead of the module's own (e.g. a baseline)")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help=f"JSON file to merge the results into (default {RESULTS.name})")
    parser.add_argument("--keep", action="store_true", help="keep mutmut's temporary folder")
    parser.add_argument("--report", action="store_true",
                        help="run nothing: print the stored results, recounted with EQUIVALENT")
    parser.add_argument("--survivors", action="store_true",
                        help="rerun only the stored survivors (after adding tests) and update")
    parser.add_argument("--quiet", action="store_true", help="do not list the survivors")
    args = parser.parse_args(argv)

    path = args.results.resolve()
    results = json.loads(path.read_text()) if path.exists() else {}
    for name in args.modules:
        if not args.report:
            print(f"{MODULES[name][0]} ...", flush=True)
        if args.report or args.survivors:
            if name not in results:
                continue
            r = results[name]
            if args.survivors:
                names = [s["name"] for s in r["survivors"] + r.get("equivalent_survivors", [])]
                rerun = run_module(name, args.max_children, None, args.keep, r["tests"], names)
                r = update_survivors(r, rerun)
            r = reapply_equivalent(r)
        else:
            r = reapply_equivalent(
                run_module(name, args.max_children, args.sample, args.keep, args.tests))
        print_summary(r, not args.quiet)
        results[name] = r
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

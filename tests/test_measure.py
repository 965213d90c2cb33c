"""segedu.deploy.measure: every timed call of a CUDA computation waits for the GPU.

(The CPU behaviour, median and spread, is in test_deploy.py; this file needs no GPU: it
records the calls instead of making them.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from segedu.deploy import compare_latency, measure_latency


@pytest.fixture
def events(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append("wait"))
    return calls


def test_on_a_cuda_device_each_timed_call_is_fenced_by_waits_for_the_gpu(events):
    latency = measure_latency(lambda: events.append("fn"), warmup=1, repeats=3, device="cuda")
    assert latency.repeats == 3
    assert events == ["fn"] + ["wait", "fn", "wait"] * 3  # the warm-up is not timed


def test_interleaved_runners_are_fenced_one_by_one(events):
    compare_latency({"a": lambda: events.append("a"), "b": lambda: events.append("b")},
                    warmup=0, repeats=2, device=torch.device("cuda", 0))
    assert events == ["wait", "a", "wait", "wait", "b", "wait"] * 2


def test_on_the_cpu_nothing_waits(events):
    measure_latency(lambda: events.append("fn"), warmup=0, repeats=2, device="cpu")
    compare_latency({"a": lambda: events.append("a")}, warmup=0, repeats=1)
    assert events == ["fn", "fn", "a"]


def test_compare_latency_rejects_no_repeats_like_measure_latency():
    with pytest.raises(ValueError, match="repeats >= 1"):
        compare_latency({"a": lambda: None}, repeats=0)


def test_compare_latency_keeps_each_round_so_ratios_can_be_paired(monkeypatch):
    # A fake clock: runner "a" takes 2 ms and "b" 1 ms in round 1, then 4 and 2 ms (the machine
    # slowed down for both): each runner keeps its calls in round order, so rounds pair up.
    ticks = iter([0.0, 0.002, 0.002, 0.003, 0.003, 0.007, 0.007, 0.009])
    monkeypatch.setattr("segedu.deploy.measure.time.perf_counter", lambda: next(ticks))
    times = compare_latency({"a": lambda: None, "b": lambda: None}, warmup=0, repeats=2)
    assert times["a"].times_ms == pytest.approx((2.0, 4.0))
    assert times["b"].times_ms == pytest.approx((1.0, 2.0))
    pairs = zip(times["a"].times_ms, times["b"].times_ms, strict=True)
    assert [x / y for x, y in pairs] == pytest.approx([2.0, 2.0])


def test_the_parity_benchmark_pairs_identical_networks_and_stores_paired_ratios(tmp_path,
                                                                               monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import parity_speed

    parity_speed.main(["--device", "cpu", "--models", "mobilenet_v3_large", "--batches", "1",
                       "--sizes", "64", "--repeats", "2", "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "parity_speed_cpu.json").read_text())["rows"]
    # A training step runs at batch 2 at least (torchvision's DeepLabV3 cannot train on one).
    assert [(r["mode"], r["batch"], r["size"]) for r in rows] == [("forward", 1, 64),
                                                                 ("train", 2, 64)]
    for r in rows:
        ratios = [a / b for a, b in zip(r["ours"]["times_ms"], r["theirs"]["times_ms"],
                                        strict=True)]
        assert len(ratios) == 2 and r["ratio_q1"] <= r["ratio"] <= r["ratio_q3"]
        assert min(ratios) <= r["ratio"] <= max(ratios)
    with pytest.raises(SystemExit):
        parity_speed.main(["--models", "no_such_pair", "--out", str(tmp_path)])


def test_the_course_runtime_script_times_each_notebook_in_a_fresh_kernel(tmp_path, monkeypatch):
    import nbformat

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import course_runtime

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import os, time\nprofile = os.environ['SEGEDU_PROFILE']"),
        nbformat.v4.new_code_cell("time.sleep(0.3)\nassert profile == 'ci', profile")])
    path = tmp_path / "99_probe.ipynb"
    nbformat.write(nb, path)
    before = path.read_text()
    monkeypatch.setenv("SEGEDU_PROFILE", "cpu")  # the script sets it for the kernel
    course_runtime.main(["--profile", "ci", "--notebooks", str(path), "--out", str(tmp_path)])
    (row,) = json.loads((tmp_path / "course_runtime_ci.json").read_text())["notebooks"]
    assert row["notebook"] == "99_probe.ipynb" and row["code_cells"] == 2
    assert row["slowest_cells"][0]["cell"] == 1 and row["slowest_cells"][0]["seconds"] >= 0.3
    assert row["wall_seconds"] >= row["kernel_start_seconds"] + 0.3
    assert path.read_text() == before  # the stored notebook is not written

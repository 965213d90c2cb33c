"""segedu.deploy.measure: every timed call of a CUDA computation waits for the GPU.

(The CPU behaviour, median and spread, is in test_deploy.py; this file needs no GPU: it
records the calls instead of making them.)"""

from __future__ import annotations

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

"""Specification of the per-pixel baselines and of the experiment harness."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
import torch.nn.functional as F

from segedu.cli import main
from segedu.tools import experiment as harness
from segedu.train.experiment import (
    PixelClassifier,
    WindowedPixelClassifier,
    box_mean,
    window_features,
)


def _box_mean_by_hand(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over the window cut at the border, one pixel at a time."""
    n, c, h, w = x.shape
    out = torch.empty_like(x)
    r = k // 2
    for i in range(h):
        for j in range(w):
            out[:, :, i, j] = x[:, :, max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1].mean((2, 3))
    return out


def test_box_mean_averages_the_window_cut_at_the_border():
    x = torch.randn(2, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(box_mean(x, 5), _box_mean_by_hand(x, 5))


def test_window_features_are_colour_then_mean_and_spread_per_window():
    x = torch.rand(1, 3, 11, 11, generator=torch.Generator().manual_seed(1))
    feats = window_features(x, (3, 5))
    assert feats.shape == (1, 3 * 5, 11, 11)
    torch.testing.assert_close(feats[:, :3], x)
    torch.testing.assert_close(feats[:, 3:6], _box_mean_by_hand(x, 3))
    var = _box_mean_by_hand(x**2, 5) - _box_mean_by_hand(x, 5) ** 2
    torch.testing.assert_close(feats[:, 12:15], var.clamp_min(0).sqrt(), atol=1e-3, rtol=1e-3)


def test_even_or_negative_windows_raise_naming_the_size():
    with pytest.raises(ValueError, match="odd and positive.*got 4"):
        WindowedPixelClassifier(5, windows=(3, 4))


def test_the_colour_only_baseline_labels_a_pixel_from_its_own_colour_alone():
    model = PixelClassifier(5, hidden=32).eval()
    x = torch.rand(1, 3, 16, 16)
    y = x.clone()
    y[..., 0, 0] = torch.rand(3)  # change one pixel: only that pixel's output may change
    changed = (model(x)["out"] - model(y)["out"]).abs().sum(1)[0] > 0
    assert changed[0, 0] and changed.sum() == 1


def test_the_windowed_baseline_sees_its_window_and_nothing_beyond():
    model = WindowedPixelClassifier(5, windows=(5,)).eval()
    x = torch.rand(1, 3, 16, 16)
    y = x.clone()
    y[..., 8, 8] = torch.rand(3)
    changed = (model(x)["out"] - model(y)["out"]).abs().sum(1)[0] > 1e-6
    assert changed[6:11, 6:11].all() and changed.sum() == 25


def test_the_baselines_follow_the_model_contract():
    for name in harness.BASELINES:
        model = harness.build(name, 5)
        out = model(torch.rand(2, 3, 17, 23))["out"]
        assert out.shape == (2, 5, 17, 23)
        F.cross_entropy(out, torch.zeros(2, 17, 23, dtype=torch.long)).backward()


def test_build_uses_the_cpu_profile_width_and_rejects_unknown_names():
    small, full = harness.build("fcn8s", 5), harness.build("fcn8s", 5, width=0.25)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in full.parameters())
    assert harness.build("unet", 5)(torch.rand(1, 3, 32, 32))["out"].shape == (1, 5, 32, 32)
    with pytest.raises(ValueError, match="unknown model 'fcn9s'.*colour-only.*fcn8s"):
        harness.build("fcn9s", 5)


def test_a_plus_shapes_name_builds_the_model_on_the_shipped_pretrained_backbone():
    from segedu.backbones.pretrained import read_shapes_weights

    shipped = read_shapes_weights("vgg16_bn")["backbone"]
    first = next(k for k in shipped if k.endswith("weight"))
    pretrained, fresh = harness.build("fcn8s+shapes", 5), harness.build("fcn8s", 5)
    assert torch.equal(pretrained.backbone.state_dict()[first], shipped[first])
    assert not torch.equal(fresh.backbone.state_dict()[first], shipped[first])
    with pytest.raises(ValueError, match="unet has no pretrained backbone"):
        harness.build("unet+shapes", 5)
    with pytest.raises(ValueError, match="only weights.*'\\+shapes'"):
        harness.build("fcn8s+imagenet", 5)


def test_model_cost_counts_two_flops_per_multiply_add():
    cost = harness.model_cost(PixelClassifier(5), size=8)
    assert cost["parameters"] == 3 * 5 + 5
    assert cost["flops"] == 2 * 3 * 5 * 8 * 8


def test_the_budget_is_whole_epochs_closest_to_the_iterations():
    budget = harness.Budget(iterations=100, batch_size=8)
    assert budget.epochs(512) == 2  # 64 iterations per epoch: 2 epochs = 128 is closest to 100
    assert budget.epochs(32) == 25
    with pytest.raises(ValueError, match="no full batch"):
        budget.epochs(4)
    with pytest.raises(ValueError, match="iterations >= 1.*got iterations=0"):
        harness.Budget(iterations=0)


def test_summarize_gives_mean_and_sd_over_seeds():
    runs = [{"model": "m", "seed": s, "miou": v, "boundary_f1": 0.5, "trimap_miou": math.nan,
             "train_seconds": 1.0, "parameters": 3, "flops": 7, "threads": 1,
             "loadavg_before": (0.5, 0, 0), "loadavg_after": (1.5, 0, 0)}
            for s, v in enumerate((0.2, 0.4))]
    (row,) = harness.summarize(runs)
    assert row["miou"] == pytest.approx(0.3) and row["miou_sd"] == pytest.approx(0.1414, abs=1e-4)
    assert math.isnan(row["trimap_miou"]) and row["seeds"] == 2 and row["max_loadavg"] == 1.5


def test_the_cli_trains_both_baselines_and_the_models_and_stores_json_and_csv(tmp_path, capsys):
    assert main(["experiment", "--task", "shapes", "--models", "fcn32s", "--quick",
                 "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "smoke run" in printed
    payload = json.loads((tmp_path / "shapes.json").read_text())
    assert [r["model"] for r in payload["runs"]] == ["colour-only", "windowed", "fcn32s"]
    assert payload["command"].startswith("segedu experiment --task shapes --models fcn32s")
    assert "--quick" in payload["command"] and payload["quick"] is True
    assert {r["images_seen"] for r in payload["runs"]} == {16}  # equal budgets
    for run in payload["runs"]:
        assert 0 <= run["miou"] <= 1 and run["flops"] > 0 and run["threads"] >= 1
        assert len(run["loadavg_before"]) == 3
    with open(tmp_path / "shapes.csv") as f:
        assert f.readline() == f"# {payload['command']}\n"
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["colour-only", "windowed", "fcn32s"]


def test_the_cli_names_the_tasks_when_given_an_unknown_one(tmp_path, capsys):
    assert main(["experiment", "--task", "no-such-task", "--quick", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'no-such-task'" in err and "shapes" in err and "touching" in err
    assert not list(tmp_path.iterdir())


def test_the_cli_rejects_an_unknown_model_before_training(tmp_path, capsys):
    assert main(["experiment", "--models", "fcn9s", "--quick", "--out", str(tmp_path)]) == 2
    assert "unknown model 'fcn9s'" in capsys.readouterr().err
    assert not (tmp_path / "shapes.json").exists()


def test_run_comparison_reports_each_run_as_it_finishes_under_equal_budgets():
    seen = []
    runs = harness.run_comparison("resolution", [], seeds=(0,),
                                  budget=harness.Budget(iterations=2, batch_size=4),
                                  train_length=8, val_length=4, log=None,
                                  on_run=lambda r: seen.append(len(r)))
    assert seen == [1, 2] and [r["model"] for r in runs] == ["colour-only", "windowed"]
    assert all(r["iterations"] == 2 and r["images_seen"] == 8 for r in runs)


def test_run_one_initialises_the_built_model_before_training_under_the_same_budget():
    task = harness.get_task("shapes")
    train, val = task.train_set(length=8), task.val_set(length=4)
    budget = harness.Budget(iterations=2, batch_size=4)
    seen = []

    def initialise(model):  # what a pretrained backbone would do: set weights before training
        seen.append(type(model).__name__)
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()

    zeroed = harness.run_one(task, "colour-only", 0, budget, train_set=train, val_set=val,
                             initialise=initialise)
    plain = harness.run_one(task, "colour-only", 0, budget, train_set=train, val_set=val)
    assert seen == ["PixelClassifier"]
    assert zeroed["iterations"] == plain["iterations"] == 2
    assert zeroed["final_loss"] != plain["final_loss"]  # it trained from the weights it was given

"""The command line: `segedu demo` (the main job), `segedu models`, and clear errors."""

import json
import math
import runpy
import subprocess
import sys

import pytest
import torch

from segedu.cli import main


def test_demo_help_explains_what_it_does(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "FCN-32s and FCN-8s" in out and "demo.png" in out and "--epochs" in out


def test_models_lists_the_zoo(capsys):
    assert main(["models"]) == 0
    assert capsys.readouterr().out.split() == [
        "deeplabv1", "deeplabv2", "deeplabv3", "deeplabv3_mobilenet_v3_large",
        "deeplabv3_resnet50", "deeplabv3plus", "fcn16s", "fcn32s", "fcn8s", "fcn_resnet50",
        "lraspp_mobilenet_v3_large", "lw_refinenet", "pspnet", "refinenet", "segnet", "unet"]


@pytest.mark.slow
def test_demo_trains_reports_miou_and_writes_the_figure(tmp_path):
    # A short run (1 epoch) of the real command in a subprocess, as a user runs it.
    result = subprocess.run(
        [sys.executable, "-m", "segedu.cli", "demo", "--epochs", "1", "--train-images", "256",
         "--quiet", "--out", str(tmp_path / "demo.png"), "--json", str(tmp_path / "demo.json")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fcn8s: mIoU" in result.stdout and "fcn32s: mIoU" in result.stdout
    assert "circle" in result.stdout  # the per-class table
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    metrics = json.loads((tmp_path / "demo.json").read_text())
    assert set(metrics) == {"fcn32s", "fcn8s"}
    baseline = _all_background_miou()
    for name, m in metrics.items():
        assert len(m["iou"]) == 5
        assert m["miou"] == pytest.approx(sum(m["iou"]) / 5)  # every class occurs in val
        assert f"{name}: mIoU {m['miou']:.3f}" in result.stdout  # the JSON is what was printed
        # One short epoch is a smoke test: both models may still predict background everywhere
        # (they do: mIoU == the baseline), but never do worse than that, and the training loss
        # has fallen from ln 5, the loss of FCN's zero-initialised scores (uniform over 5 classes).
        assert m["miou"] >= baseline - 1e-9, (name, m["miou"], baseline)
        assert m["final_loss"] < math.log(5) - 0.2, (name, m["final_loss"])


def _all_background_miou() -> float:
    """mIoU of predicting background everywhere on the demo's validation set: the background
    IoU is the background share of the pixels, every other class scores 0."""
    from segedu.core.metrics import ConfusionMatrix
    from segedu.core.profiles import get_profile
    from segedu.data import make_loaders

    profile = get_profile("cpu", device="cpu")
    _, val_loader, classes = make_loaders(
        "synthetic", size=profile.image_size, batch_size=profile.batch_size, train_length=1,
        val_length=profile.val_length, seed=0, augment=False)
    cm = ConfusionMatrix(len(classes))
    for _, targets in val_loader:
        cm.update(torch.zeros_like(targets), targets)
    return cm.compute()["miou"]


def test_unknown_model_is_a_clear_error_not_a_traceback(capsys):
    assert main(["demo", "--models", "fcn4s", "--epochs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'fcn4s'" in err and "fcn8s" in err


@pytest.mark.slow
def test_check_and_grade_commands_report_scores_and_exit_codes(capsys, tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert main(["check", str(root / "exercises" / "01_fcn.ipynb")]) == 1
    out = capsys.readouterr().out
    assert "✗" in out and "NotImplementedError" in out
    assert main(["check", str(root / "solutions" / "01_fcn.ipynb")]) == 0
    results, summary = tmp_path / "results.json", tmp_path / "report.md"
    assert main(["grade", str(root / "solutions" / "01_fcn.ipynb"),
                 "--gradescope", str(results), "--markdown", str(summary)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("score: ") and last.split()[1] == last.split()[3]
    gradescope = json.loads(results.read_text())
    assert gradescope["score"] == sum(t["max_score"] for t in gradescope["tests"]) > 0
    assert "ch01.bilinear_kernel" in summary.read_text()


@pytest.mark.parametrize("module", ["segedu", "segedu.cli"])
def test_python_dash_m_runs_the_segedu_command(module, monkeypatch, capsys):
    # what `python -m segedu models` (and torchrun's `-m segedu.cli`) runs, in this process
    monkeypatch.setattr(sys, "argv", [module, "models"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    assert exit_info.value.code == 0
    assert "fcn8s" in capsys.readouterr().out.split()


def _activation_types(int8_path) -> set[str]:
    """The element types of the activations' zero points (QuantizeLinear's third input)."""
    import onnx

    graph = onnx.load(str(int8_path)).graph
    zero_points = {t.name: t.data_type for t in graph.initializer}
    found = {zero_points[node.input[2]] for node in graph.node
             if node.op_type == "QuantizeLinear" and len(node.input) > 2}
    return {onnx.TensorProto.DataType.Name(t) for t in found}


def test_export_int8_with_uint8_activations_writes_a_u8s8_graph(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "--model", "fcn32s", "--num-classes", "3", "--width", "0.125",
                 "--size", "48", "--int8", "--activations", "uint8", "--calibrate", "2",
                 "--out", str(out)]) == 0
    assert "uint8 activations" in capsys.readouterr().out
    assert _activation_types(tmp_path / "m_int8.onnx") == {"UINT8"}


def test_export_activations_rejects_a_bad_value_and_a_missing_int8(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--model", "fcn32s", "--int8", "--activations", "u8"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'u8'" in err and "'int8', 'uint8'" in err
    assert main(["export", "--model", "fcn32s", "--activations", "uint8",
                 "--out", str(tmp_path / "m.onnx")]) == 2
    assert "add --int8" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()

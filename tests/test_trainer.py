"""The chapter 7 trainer: poly LR (closed form and PolynomialLR), exact resume, checkpoints,
history files, sliding-window and multi-scale inference, head learning rates."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from torch import nn

import segedu
from segedu.data import SyntheticShapes, train_transforms
from segedu.train import (
    Trainer,
    multiscale_probs,
    param_groups,
    poly_factor,
    poly_lr,
    poly_schedule,
    sliding_window_probs,
)

# --- poly LR -------------------------------------------------------------------------------


def _lrs(scheduler, optimizer, steps):
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out + [optimizer.param_groups[0]["lr"]]


def _sgd(lr=0.01):
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


def test_poly_lr_decays_every_step_to_zero_at_the_last_iteration():
    total = 50
    opt = _sgd()
    lrs = _lrs(poly_lr(opt, total), opt, total)
    expected = [0.01 * (1 - it / total) ** 0.9 for it in range(total + 1)]
    assert lrs == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert all(a > b for a, b in zip(lrs[:-1], lrs[1:], strict=True))  # still decaying at the end
    assert lrs[-2] > 0 and lrs[-1] == 0


def test_polynomial_lr_defaults_stop_the_decay_after_five_steps():
    # The trap poly_lr avoids: PolynomialLR(opt) = total_iters=5, power=1.0.
    opt = _sgd()
    lrs = _lrs(torch.optim.lr_scheduler.PolynomialLR(opt), opt, 20)
    assert lrs[5:] == [0.0] * 16


def test_poly_schedule_closed_form_with_warmup_and_floor():
    total, warm, floor = 40, 5, 1e-4
    opt = _sgd()
    lrs = _lrs(poly_schedule(opt, total, 0.9, warmup_iters=warm, min_lr=floor), opt, total)
    for it in range(warm):
        assert lrs[it] == pytest.approx(0.01 * (it + 1) / warm)
    for it in range(warm, total + 1):
        expected = (0.01 - floor) * (1 - (it - warm) / (total - warm)) ** 0.9 + floor
        assert lrs[it] == pytest.approx(expected)
    assert lrs[-1] == pytest.approx(floor)
    assert poly_factor(10 * total, total) == 0.0  # clamped after the end


def test_heads_get_ten_times_the_backbone_lr_and_norms_no_weight_decay():
    model = segedu.build_model("deeplabv3", 3, width=0.125)
    groups = param_groups(model, lr=0.01, head_lr_mult=10, weight_decay=1e-4)
    by_name = {g["name"]: g for g in groups}
    assert by_name["backbone"]["lr"] == 0.01 and by_name["head"]["lr"] == pytest.approx(0.1)
    assert by_name["head_no_decay"]["weight_decay"] == 0.0
    n_backbone = sum(p.numel() for p in model.backbone.parameters())
    assert sum(p.numel() for g in groups if g["name"].startswith("backbone")
               for p in g["params"]) == n_backbone
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(
        p.numel() for p in model.parameters())
    opt = torch.optim.SGD(groups, lr=0.01)
    sched = poly_schedule(opt, 10, min_lr=1e-3)
    for _ in range(10):
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx(
        [1e-3 * g["lr_mult"] for g in opt.param_groups])


# --- exact resume --------------------------------------------------------------------------


class TinyNet(nn.Module):
    """Conv-BN-ReLU-Dropout and two 1x1 heads ("out", "aux"): every kind of state a resume must
    restore (BatchNorm running stats, dropout's RNG draws, an aux loss), at test speed."""

    def __init__(self, num_classes=5):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8),
                                      nn.ReLU(), nn.Dropout2d(0.3))
        self.classifier = nn.Conv2d(8, num_classes, 1)
        self.aux_classifier = nn.Conv2d(8, num_classes, 1)

    def forward(self, x):
        f = self.backbone(x)
        return {"out": self.classifier(f), "aux": self.aux_classifier(f)}


def _trainer(tmp_path, **kw):
    torch.manual_seed(0)
    model = TinyNet()
    train = SyntheticShapes("train", size=32, length=12,
                            transforms=train_transforms(32, scale=(0.5, 2.0), normalize=False))
    val = SyntheticShapes("val", size=32, length=4)
    return Trainer(model, train, val, num_classes=5, epochs=2, batch_size=4, lr=0.02,
                   loss="ce+dice", head_lr_mult=10, out_dir=tmp_path, progress=False, **kw)


@pytest.mark.parametrize("stop_after", [2, 3])  # mid-epoch and at the epoch boundary
def test_resume_after_any_iteration_equals_the_uninterrupted_run_bit_for_bit(tmp_path, stop_after):
    full = _trainer(tmp_path / "full")
    full.fit()
    first = _trainer(tmp_path / "cut")
    first.fit(stop_after=stop_after)
    assert len(first.history.iterations) == stop_after
    torch.manual_seed(1234)  # whatever happened in between: the checkpoint restores the RNGs
    resumed = _trainer(tmp_path / "cut").resume(tmp_path / "cut" / "last.pt")
    resumed.fit()
    assert resumed.history.iterations == full.history.iterations  # exact floats
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert resumed.history.epochs[-1]["miou"] == full.history.epochs[-1]["miou"]


def test_checkpoints_history_csv_and_plot_are_written(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.fit()
    assert {p.name for p in tmp_path.iterdir()} == {"last.pt", "best.pt", "history.csv",
                                                    "history.png"}
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"loss", "lr", "miou", "pixel_acc", "iou_0", "iou_4"} <= set(rows[0])
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    assert state["step"] == 6 and state["epoch"] == 2
    with pytest.raises(ValueError, match="resume with the same"):
        Trainer(TinyNet(),
                trainer.train_samples.dataset, num_classes=5, epochs=3, batch_size=4,
                progress=False).resume(tmp_path / "last.pt")


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path)
    trainer.save("last.pt")
    before = (tmp_path / "last.pt").read_bytes()

    def crash(obj, f, *a, **k):
        open(f, "wb").write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        trainer.save("last.pt")
    assert (tmp_path / "last.pt").read_bytes() == before


# --- inference -----------------------------------------------------------------------------


class _PixelNet(nn.Module):
    """A 1x1 conv: its prediction at a pixel depends on that pixel only."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return {"out": self.conv(x)}


def test_sliding_window_equals_a_full_forward_for_a_per_pixel_network():
    net, x = _PixelNet(), torch.randn(2, 3, 37, 53)
    full = net(x)["out"].softmax(1)
    torch.testing.assert_close(sliding_window_probs(net, x, window=16, stride=11), full)
    torch.testing.assert_close(sliding_window_probs(net, x, window=64), full)  # padded


def test_multiscale_with_one_scale_and_no_flip_is_the_plain_softmax_and_flip_is_symmetric():
    net, x = _PixelNet(), torch.randn(1, 3, 24, 24)
    full = net(x)["out"].softmax(1)
    torch.testing.assert_close(multiscale_probs(net, x, scales=(1.0,), flip=False), full)
    # A per-pixel network commutes with flipping: flip averaging changes nothing.
    torch.testing.assert_close(multiscale_probs(net, x, scales=(1.0,), flip=True), full)
    probs = multiscale_probs(net, x, scales=(0.5, 1.5), flip=True)
    assert probs.shape == full.shape
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 24, 24))


def test_trainer_evaluates_with_multiscale_and_windows(tmp_path):
    trainer = _trainer(None)
    plain = trainer.evaluate()
    assert not math.isnan(plain["miou"])
    assert set(trainer.evaluate(multiscale=True, scales=(0.75, 1.0))) == set(plain)
    assert set(trainer.evaluate(window=24)) == set(plain)


# --- command line --------------------------------------------------------------------------


def test_cli_train_then_eval_at_a_tiny_size(tmp_path, capsys):
    from segedu.cli import main

    out = tmp_path / "run"
    assert main(["train", "--model", "unet", "--dataset", "small_objects", "--size", "32",
                 "--train-images", "8", "--val-images", "4", "--batch-size", "4", "--epochs",
                 "1", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    assert (out / "last.pt").exists() and (out / "history.csv").exists()
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--multiscale",
                 "--val-images", "2"]) == 0
    assert "multi-scale + flip" in capsys.readouterr().out


def test_cli_train_on_a_missing_data_set_says_where_to_get_it(tmp_path, capsys):
    from segedu.cli import main

    assert main(["train", "--model", "unet", "--dataset", "cityscapes", "--data-root",
                 str(tmp_path), "--device", "cpu", "--quiet"]) == 2
    assert "cityscapes-dataset.com" in capsys.readouterr().err


# --- the experiment harness ----------------------------------------------------------------


def test_every_experiment_gives_its_arms_equal_budgets_and_a_colour_only_baseline():
    from segedu.train.experiment import EXPERIMENTS, PixelClassifier, make_experiments

    experiments = make_experiments(size=32, scale=0.05)
    assert tuple(experiments) == EXPERIMENTS
    for experiment in experiments.values():
        assert experiment.arms[0].model is PixelClassifier, experiment.name
        lengths = {len(arm.train_set()) for arm in experiment.arms}
        assert len(lengths) == 1, f"{experiment.name}: arms see different numbers of images"
        assert all(set(arm.options) <= {"loss", "power", "aux_weight"}
                   for arm in experiment.arms), "an arm changes more than the trick"


def test_summaries_are_mean_and_sd_over_seeds_per_class():
    from segedu.train.experiment import format_table, summarize

    runs = [{"arm": "a", "seed": s, "miou": m, "iou": [m, 2 * m]}
            for s, m in enumerate([0.1, 0.2, 0.3])]
    summary = summarize(runs)["a"]
    assert summary["miou"] == pytest.approx((0.2, 0.1))
    assert summary["iou"][1] == pytest.approx((0.4, 0.2))
    table = format_table(runs, ["x", "y"])
    assert "20.0 ±10.0" in table and "40.0 ±20.0" in table and "3 seeds" in table

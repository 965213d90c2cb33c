"""segedu.deploy: exported graphs compute what the model computes (at every batch size, and at
every size where the architecture allows it), folding changes nothing, INT8 stays close, the
measurements say what they measured, and misuse says why. The per-model ONNX check of every zoo
model is in test_zoo.py's shared routine."""

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import segedu
from segedu.cli import main
from segedu.core.sizes import resnet_feature_size
from segedu.deploy import (
    OutputOnly,
    calibration_images,
    conv_cost,
    count_batchnorms,
    count_flops,
    export_onnx,
    fold_batchnorm,
    fold_conv_bn,
    input_shape,
    int8_report,
    measure_latency,
    network_cost,
    onnx_session,
    pspnet_export_size,
    quantize_onnx,
    run_onnx,
    size_bound_modules,
    tensorrt_status,
)

pytest.importorskip("onnxruntime")


def small(name: str) -> nn.Module:
    return segedu.build_model(name, 3, width=0.125).eval()


def _randomise_batchnorm(model: nn.Module) -> nn.Module:
    """Running statistics and affine parameters that are not the identity."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = small("fcn32s")
    x = torch.randn(1, 3, 40, 56)
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "fcn32s.onnx", x,
                       dynamic_batch=False)
    return model, x, path


def test_output_only_returns_the_out_logits():
    model = small("fcn32s")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(OutputOnly(model)(x), model(x)["out"])


def test_exported_model_agrees_with_pytorch_and_accepts_numpy(exported):
    model, x, path = exported
    with torch.no_grad():
        expected = model(x)["out"].numpy()
    np.testing.assert_allclose(run_onnx(path, x), expected, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(run_onnx(path, x.numpy()), expected, rtol=1e-3, atol=1e-5)


def test_running_a_fixed_size_export_at_another_size_is_a_clear_error(exported):
    _, _, path = exported
    assert input_shape(path) == [1, 3, 40, 56]
    with pytest.raises(ValueError, match=r"exported for inputs of shape \[1, 3, 40, 56\]"):
        run_onnx(path, torch.randn(1, 3, 64, 64))


def test_export_checks_the_example_like_a_forward_pass(tmp_path):
    model = segedu.build_model("fcn32s", 3, width=0.125)
    with pytest.raises(ValueError, match="3 channels"):
        export_onnx(model, tmp_path / "m.onnx", torch.randn(1, 1, 32, 32))
    assert not (tmp_path / "m.onnx").exists()


def test_a_dynamic_size_export_runs_at_other_sizes_and_batches(tmp_path):
    torch.manual_seed(0)
    model = small("fcn32s")
    path = export_onnx(model, tmp_path / "m.onnx", torch.randn(2, 3, 64, 48), dynamic_size=True)
    assert input_shape(path) == ["batch", 3, "height", "width"]
    session = onnx_session(path)
    for shape in [(1, 3, 67, 45), (3, 3, 40, 100)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = model(x)["out"].numpy()
        np.testing.assert_allclose(run_onnx(session, x), expected, rtol=1e-3, atol=1e-5)


def test_pspnet_refuses_a_dynamic_size_before_tracing_because_its_bins_are_baked_in(
        tmp_path, monkeypatch):
    # pooling to 2, 3 and 6 bins becomes index lists computed for the example's size
    def no_trace(*args, **kwargs):
        raise AssertionError("refused only after tracing")

    monkeypatch.setattr(torch.onnx, "export", no_trace)
    with pytest.raises(ValueError, match=r"pyramid pooling 'classifier\.ppm' "
                                         r"\(bins \(1, 2, 3, 6\)\).*dynamic_size=False"
                                         r".*pspnet_export_size"):
        export_onnx(small("pspnet"), tmp_path / "m.onnx", torch.randn(2, 3, 64, 64),
                    dynamic_size=True)
    assert not (tmp_path / "m.onnx").exists()


def test_size_bound_modules_lists_pools_to_more_than_one_cell():
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.AdaptiveMaxPool2d((None, 1)),
                          nn.AdaptiveAvgPool2d((1, 4)), nn.AdaptiveMaxPool2d(2))
    assert [name for name, _ in size_bound_modules(model)] == ["2", "3"]
    assert [name for name, _ in size_bound_modules(small("pspnet"))] == ["classifier.ppm"]
    assert size_bound_modules(small("deeplabv3_mobilenet_v3_large")) == []  # ASPP pools to 1x1


class _FunctionalPool(nn.Module):
    """Pools to 3x3 cells with ``F.adaptive_avg_pool2d``: no module says so before tracing."""

    in_channels = 3

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        y = F.adaptive_avg_pool2d(self.conv(x), 3)
        return {"out": F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)}


def test_a_graph_wrong_at_another_size_is_refused_after_the_export(tmp_path):
    # symbolic H and W in the file, but index lists computed for 64x48: wrong at any other size
    with pytest.raises(ValueError, match=r"exported at \[64, 48\] computes something else at "
                                         r"\[75, 53\].*dynamic_size=False"):
        export_onnx(_FunctionalPool(), tmp_path / "m.onnx", torch.randn(2, 3, 64, 48),
                    dynamic_size=True)
    assert not (tmp_path / "m.onnx").exists()


def test_fold_conv_bn_equals_the_pair_in_eval_mode_with_and_without_bias():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 11)
    for bias, groups in [(False, 1), (True, 2)]:
        conv = nn.Conv2d(4, 6, 3, padding=1, bias=bias, groups=groups)
        bn = _randomise_batchnorm(nn.BatchNorm2d(6))
        folded = fold_conv_bn(conv, bn)
        with torch.no_grad():
            torch.testing.assert_close(folded(x), bn(conv(x)), rtol=1e-5, atol=1e-5)
        assert folded.bias is not None and conv.bias is (None if not bias else conv.bias)


def test_fold_conv_bn_rejects_layers_that_do_not_fit():
    with pytest.raises(ValueError, match="6 output channels but the BatchNorm normalises 5"):
        fold_conv_bn(nn.Conv2d(3, 6, 1), nn.BatchNorm2d(5))
    with pytest.raises(ValueError, match="nn.Conv2d and an nn.BatchNorm2d"):
        fold_conv_bn(nn.Linear(3, 6), nn.BatchNorm2d(6))


def test_fold_conv_bn_refuses_a_batchnorm_in_training_mode():
    # in training mode bn(conv(x)) uses the batch's statistics: no fixed conv computes it
    with pytest.raises(ValueError, match=r"training mode.*bn\.eval\(\)"):
        fold_conv_bn(nn.Conv2d(3, 6, 1), nn.BatchNorm2d(6))
    assert fold_conv_bn(nn.Conv2d(3, 6, 1), nn.BatchNorm2d(6).eval()).bias is not None


def test_fold_conv_bn_folds_depthwise_and_dilated_convs_with_any_eps():
    torch.manual_seed(1)
    x = torch.randn(1, 6, 13, 10)
    for conv, eps in [(nn.Conv2d(6, 6, 3, padding=2, dilation=2, groups=6, bias=False), 1e-3),
                      (nn.Conv2d(6, 4, (1, 3), stride=2, bias=True), 0.5)]:
        bn = _randomise_batchnorm(nn.BatchNorm2d(conv.out_channels, eps=eps))
        with torch.no_grad():
            torch.testing.assert_close(fold_conv_bn(conv, bn)(x), bn(conv(x)),
                                       rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["deeplabv3_mobilenet_v3_large", "fcn_resnet50", "segnet",
                                  "lraspp_mobilenet_v3_large"])
def test_folding_a_whole_model_removes_every_batchnorm_and_keeps_its_outputs(name):
    torch.manual_seed(0)
    model = _randomise_batchnorm(small(name))
    folded = fold_batchnorm(model)
    assert count_batchnorms(model) > 0 and count_batchnorms(folded) == 0
    x = torch.randn(2, 3, 67, 45)
    with torch.no_grad():
        expected = model(x)["out"]
        torch.testing.assert_close(folded(x)["out"], expected, rtol=1e-4,
                                   atol=1e-5 * float(expected.abs().max()))


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    torch.manual_seed(0)
    model = _randomise_batchnorm(small("lraspp_mobilenet_v3_large"))
    tmp = tmp_path_factory.mktemp("int8")
    fp32 = export_onnx(model, tmp / "fp32.onnx", torch.randn(2, 3, 64, 64))
    int8 = quantize_onnx(fp32, tmp / "int8.onnx", calibration_images(4, 64))
    return model, fp32, int8


def test_int8_graph_keeps_the_dynamic_batch_and_stays_close_to_fp32(quantized):
    model, _, int8 = quantized
    x = torch.cat(calibration_images(3, 64, seed=7))
    with torch.no_grad():
        expected = model(x)["out"]
    got = torch.from_numpy(run_onnx(int8, x))
    assert got.shape == expected.shape
    # INT8 rounds every activation: close to the logits' range, not bit-exact
    assert float((got - expected).abs().max()) < 0.1 * float(expected.abs().max())


def test_int8_report_names_the_ops_that_stayed_float_and_their_share(quantized):
    _, _, int8 = quantized
    report = int8_report(int8, torch.randn(1, 3, 64, 64), runs=1)
    assert report.nodes["int8"].get("QLinearConv", 0) > 0
    assert "HardSigmoid" in report.float_ops()  # h-swish has no integer kernel
    assert abs(sum(report.share.values()) - 1) < 1e-6
    assert json.dumps(report.to_json())


def test_latency_reports_median_spread_and_threads():
    latency = measure_latency(lambda: sum(range(1000)), warmup=1, repeats=5, threads=1)
    assert latency.repeats == 5 and latency.threads == 1
    assert latency.min <= latency.q1 <= latency.median <= latency.q3 <= latency.max
    assert "1 threads" in str(latency)
    with pytest.raises(ValueError, match="repeats >= 1"):
        measure_latency(lambda: None, repeats=0)


class _ConvOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.conv(x)}


def test_flops_of_a_conv_are_two_per_multiply_add():
    assert count_flops(_ConvOnly(), torch.randn(1, 3, 10, 10)) == 2 * (3 * 3 * 3) * 8 * 10 * 10


@pytest.mark.parametrize("layers, size", [
    ([nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
      nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8),
      nn.Conv2d(8, 16, (1, 3), padding="same"), nn.BatchNorm2d(16, affine=False),
      nn.Conv2d(16, 5, 1)], (37, 50)),
    ([nn.Conv2d(4, 6, (3, 5), stride=(2, 1), padding=(0, 2), groups=2), nn.ReLU6(),
      nn.AvgPool2d(2), nn.Conv2d(6, 6, 3, padding="valid", groups=6), nn.Hardswish()], (31, 19)),
])
def test_counting_by_hand_agrees_with_pytorch_parameters_and_flop_counter(layers, size):
    # the convention: one MAC per multiply-add, bias and BatchNorm free; FlopCounterMode
    # counts 2 FLOPs per MAC and nothing else
    net = nn.Sequential(*layers)
    params, macs = network_cost(net, *size)
    assert params == sum(p.numel() for p in net.parameters())
    assert 2 * macs == count_flops(net, torch.randn(1, layers[0].in_channels, *size))


def test_conv_cost_of_a_vgg_layer_and_a_depthwise_one_and_its_errors():
    assert conv_cost(64, 128, 3, 56, 56) == (73856, 231211008)
    assert conv_cost(32, 32, 3, 10, 10, groups=32, bias=False) == (288, 28800)
    with pytest.raises(ValueError, match="groups=3 must divide both in_channels=4"):
        conv_cost(4, 6, 3, 5, 5, groups=3)
    with pytest.raises(ValueError, match="layer 1 is a Linear"):
        network_cost(nn.Sequential(nn.ReLU(), nn.Linear(3, 3)), 8, 8)


@pytest.mark.parametrize("height, width, stride, bins", [
    (480, 640, 8, (1, 2, 3, 6)), (500, 375, 16, (1, 2, 3, 6)), (33, 40, 8, (1, 2, 3, 6)),
    (1000, 999, 32, (1, 2, 4))])
def test_pspnet_export_size_is_the_nearest_size_every_bin_divides(height, width, stride, bins):
    def fits(n):
        return n >= 32 and all(resnet_feature_size(n, stride) % b == 0 for b in bins)

    for asked, got in zip((height, width), pspnet_export_size(height, width, stride, bins),
                          strict=True):
        assert fits(got)
        assert not any(fits(n) for n in range(asked - abs(got - asked) + 1,
                                              asked + abs(got - asked)))


def test_pspnet_export_size_gives_a_plain_average_pool_in_the_exported_graph(tmp_path,
                                                                            shallow_resnets):
    # at a size every bin divides, pyramid pooling exports without index arithmetic
    import onnx

    model = small("pspnet")
    fit = pspnet_export_size(64, 64)[0]     # 48: a 6x6 map
    ops = {}
    for size in (64, fit):                  # 64: an 8x8 map, which 3 and 6 do not divide
        path = export_onnx(model, tmp_path / f"p{size}.onnx", torch.randn(1, 3, size, size),
                           dynamic_batch=False)
        ops[size] = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert "Gather" in ops[64] and "GatherND" in ops[64]
    assert not {"Gather", "GatherND", "Where"} & set(ops[fit])
    assert ops[fit].count("AveragePool") == 3   # bins 2, 3, 6 (the 1-bin is a ReduceMean)


def test_tensorrt_is_either_available_or_skipped_with_a_reason():
    available, reason = tensorrt_status()
    assert isinstance(available, bool) and reason
    if not torch.cuda.is_available():
        assert not available and "CUDA" in reason


def test_cli_export_writes_fp32_and_int8_graphs(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "--model", "fcn32s", "--num-classes", "3", "--width", "0.125",
                 "--size", "48", "--format", "onnx", "--int8", "--calibrate", "2",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "INT8" in printed
    assert input_shape(out)[0] == "batch" and (tmp_path / "m_int8.onnx").exists()
    x = torch.randn(2, 3, 48, 48)
    assert run_onnx(tmp_path / "m_int8.onnx", x).shape == (2, 3, 48, 48)


def test_cli_export_loads_the_checkpoint_and_refuses_bad_options(tmp_path, capsys):
    torch.manual_seed(0)
    model = small("fcn32s")
    with torch.no_grad():  # weights no fresh model has: the graph must carry the checkpoint's
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    torch.save({"model": model.state_dict()}, tmp_path / "w.pt")
    assert main(["export", "--model", "fcn32s", "--num-classes", "3", "--width", "0.125",
                 "--size", "48", "--checkpoint", str(tmp_path / "w.pt"),
                 "--out", str(tmp_path / "m.onnx")]) == 0
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        expected = model(x)["out"].numpy()
    got = run_onnx(tmp_path / "m.onnx", x)  # onnxruntime sums in another order: relative to scale
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * float(np.abs(expected).max()))
    capsys.readouterr()
    # --dynamic reaches the exporter: FCN exported at a square size cannot keep H and W apart
    assert main(["export", "--model", "fcn32s", "--num-classes", "3", "--width", "0.125",
                 "--size", "64", "--dynamic", "--out", str(tmp_path / "d.onnx")]) == 2
    assert "cannot be exported with a dynamic height and width" in capsys.readouterr().err
    assert main(["export", "--model", "fcn32s", "--format", "tflite"]) == 2
    assert "--format 'tflite' is not supported" in capsys.readouterr().err


def test_cli_bench_prints_a_table_with_the_load_and_threads(capsys):
    assert main(["bench", "--model", "lraspp_mobilenet_v3_large", "--num-classes", "3",
                 "--width", "0.125", "--size", "64", "--repeats", "2", "--calibrate", "2"]) == 0
    out = capsys.readouterr().out
    assert "GFLOPs" in out and "load average" in out and "1 threads" in out
    for runtime in ("PyTorch eager FP32", "onnxruntime FP32", "onnxruntime INT8"):
        assert runtime in out

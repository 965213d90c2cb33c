"""segedu.deploy: the exported graph computes what the model computes, and misuse says why."""

import numpy as np
import pytest
import torch

import segedu
from segedu.deploy import OutputOnly, export_onnx, run_onnx

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = segedu.build_model("fcn32s", 3, width=0.125).eval()
    x = torch.randn(1, 3, 40, 56)
    return model, x, export_onnx(model, tmp_path_factory.mktemp("onnx") / "fcn32s.onnx", x)


def test_output_only_returns_the_out_logits():
    model = segedu.build_model("fcn32s", 3, width=0.125).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(OutputOnly(model)(x), model(x)["out"])


def test_exported_model_agrees_with_pytorch_and_accepts_numpy(exported):
    model, x, path = exported
    with torch.no_grad():
        expected = model(x)["out"].numpy()
    np.testing.assert_allclose(run_onnx(path, x), expected, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(run_onnx(path, x.numpy()), expected, rtol=1e-3, atol=1e-5)


def test_running_an_export_at_another_size_is_a_clear_error(exported):
    _, _, path = exported
    with pytest.raises(ValueError, match=r"exported for inputs of shape \[1, 3, 40, 56\]"):
        run_onnx(path, torch.randn(1, 3, 64, 64))


def test_export_checks_the_example_like_a_forward_pass(tmp_path):
    model = segedu.build_model("fcn32s", 3, width=0.125)
    with pytest.raises(ValueError, match="3 channels"):
        export_onnx(model, tmp_path / "m.onnx", torch.randn(1, 1, 32, 32))
    assert not (tmp_path / "m.onnx").exists()

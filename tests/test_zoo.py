"""One routine every model in the zoo passes (in the style of segmentation_models_pytorch's
shared model tests): the output contract at odd sizes and batch sizes 1 and 2, a training step
with batch size 1, deterministic evaluation, a strict state_dict round trip, clear errors for
bad input, ONNX export with a dynamic batch checked in onnxruntime at batch 1 and 3, and
``torch.compile`` capturing forward and backward as one graph. A new chapter's model is covered
as soon as it is registered in the zoo.

Models are built at width 1/8 (the CPU profile's networks: same layers, fewer channels), so
every zoo factory must accept ``width``. The ONNX and compile checks trace every layer, so their
cost grows with depth: they build the ResNet-101 models on ResNet-50 (:data:`TRACE_OPTIONS`),
and every ResNet-50 with 1-1-2-3 bottlenecks instead of 3-4-6-3 (the ``shallow_resnets``
fixture of conftest.py): the same kinds of layers, strides and dilations, traced in about a
half of the time.

``torch.compile`` runs with the ``aot_eager`` backend and ``fullgraph=True``: TorchDynamo must
capture the whole forward without a graph break and AOTAutograd must trace the backward, which
is what breaks when a model does something compile cannot follow. Inductor's code generation
(the default backend) takes close to a minute per model on a CPU, so its speed is measured in
``benchmarks/deploy_speed.py`` rather than here.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from conftest import SHALLOW_RESNET_LAYERS
from contract import assert_logits_at_input_size, assert_rejects_bad_images

import segedu
from segedu.deploy import export_onnx, onnx_session, run_onnx
from segedu.train import segmentation_loss
from segedu.zoo import get_factory

NAMES = segedu.list_models()
NUM_CLASSES = 3


#: Options for the checks that trace every layer (ONNX export, torch.compile): the smallest
#: network that has the same operators as the zoo's default.
TRACE_OPTIONS = {name: {"backbone": "resnet50"}
                 for name in ("deeplabv2", "deeplabv3", "deeplabv3plus")}


def small(name: str, **options) -> torch.nn.Module:
    return segedu.build_model(name, NUM_CLASSES, width=0.125, **options)


def test_trace_options_only_shrink_models_whose_default_is_deeper():
    for name, options in TRACE_OPTIONS.items():
        default = get_factory(name).__kwdefaults__["backbone"]
        assert default == "resnet101" and options == {"backbone": "resnet50"}, name
        assert (sum(p.numel() for p in small(name, **options).parameters())
                < sum(p.numel() for p in small(name).parameters()))


def _layer_kinds(model: torch.nn.Module) -> set[tuple]:
    """Every kind of layer in a model: its type, and a conv's kernel, stride, dilation and
    padding, a norm's channels aside."""
    kinds = set()
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            kinds.add(("Conv2d", m.kernel_size, m.stride, m.dilation, m.padding, m.groups))
        elif not list(m.children()):
            kinds.add((type(m).__name__,))
    return kinds


def test_the_shallow_resnet_of_the_trace_checks_has_every_kind_of_layer_of_resnet50(
        shallow_resnets):
    from conftest import shallow_resnet50

    from segedu.backbones.resnet import ResNet

    for dilate in ([False, False, False], [False, True, True], [False, False, True]):
        full = ResNet([3, 4, 6, 3], replace_stride_with_dilation=dilate, width=0.125)
        shallow = shallow_resnet50(replace_stride_with_dilation=dilate, width=0.125)
        assert _layer_kinds(shallow) == _layer_kinds(full), dilate
    x = torch.randn(1, 3, 64, 64)
    for name in ("pspnet", "fcn_resnet50", "deeplabv3_resnet50"):  # each picks it up
        blocks = sum(1 for m in small(name).modules() if type(m).__name__ == "Bottleneck")
        assert blocks == sum(SHALLOW_RESNET_LAYERS), name
        assert small(name).eval()(x)["out"].shape == (1, NUM_CLASSES, 64, 64)


def _perturbed(name: str, **options) -> torch.nn.Module:
    """A small model in eval mode whose every weight matters (FCN's scorers start at zero)."""
    model = small(name, **options).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_the_zoo_has_every_written_chapter():
    assert {"fcn32s", "fcn16s", "fcn8s", "fcn_resnet50", "segnet", "unet", "pspnet",
            "deeplabv1", "deeplabv2", "deeplabv3", "deeplabv3plus", "deeplabv3_resnet50",
            "deeplabv3_mobilenet_v3_large", "refinenet", "lw_refinenet"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_zoo_factory_takes_num_classes_and_width_and_documents_itself(name):
    factory = get_factory(name)
    params = inspect.signature(factory).parameters
    assert "num_classes" in params, f"{name}: the factory's first argument is num_classes"
    assert "width" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()), (
        f"{name}: the CPU profile builds every model with width=...")
    assert (factory.__doc__ or "").strip(), f"{name}: the factory needs a docstring"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch, size", [(1, (64, 64)), (2, (67, 45)), (1, (33, 100))])
def test_every_zoo_model_returns_logits_at_the_input_size(name, batch, size):
    assert_logits_at_input_size(small(name).eval(), size, NUM_CLASSES, batch=batch, keys=None)


@pytest.mark.parametrize("name", NAMES)
def test_every_zoo_model_trains_a_step_with_batch_size_one(name):
    model = small(name).train()
    x = torch.randn(1, 3, 67, 45)
    target = torch.randint(0, NUM_CLASSES, (1, 67, 45))
    target[0, :3] = 255  # ignored pixels are allowed
    loss = segmentation_loss(model(x), target)
    loss.backward()
    assert torch.isfinite(loss)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in trainable if p.grad is None]
    assert not missing, f"{name}: parameters that get no gradient: {missing[:5]}"
    assert any(float(p.grad.abs().sum()) > 0 for _, p in trainable)


@pytest.mark.parametrize("name", NAMES)
def test_every_zoo_model_is_deterministic_in_eval_and_round_trips_its_state_dict(name):
    model, other = _perturbed(name), small(name).eval()
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        first, second = model(x)["out"], model(x)["out"]
        assert torch.equal(first, second)
        assert not torch.equal(other(x)["out"], first)
        other.load_state_dict(model.state_dict(), strict=True)
        assert torch.equal(other(x)["out"], first)


@pytest.mark.parametrize("name", NAMES)
def test_every_zoo_model_rejects_bad_input_with_a_value_error(name):
    assert_rejects_bad_images(small(name).eval())
    with pytest.raises(ValueError, match="does not take that option"):
        segedu.build_model(name, NUM_CLASSES, no_such_option=1)


@pytest.mark.parametrize("name", NAMES)
def test_every_zoo_model_exports_to_onnx_with_a_dynamic_batch_and_onnxruntime_agrees(
        name, tmp_path, shallow_resnets):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = _perturbed(name, **TRACE_OPTIONS.get(name, {}))
    x = torch.randn(3, 3, 67, 45)  # odd: pooled maps that bins and strides do not divide
    path = export_onnx(model, tmp_path / f"{name}.onnx", x[:2], dynamic_batch=True)
    session = onnx_session(path)
    with torch.no_grad():
        expected = model(x)["out"].numpy()
    for batch in (1, 3):  # exported at batch 2: one file serves every batch size
        got = run_onnx(session, x[:batch])
        assert got.shape == expected[:batch].shape
        # onnxruntime sums in another order than PyTorch: compare relative to the logits' scale.
        scale = float(abs(expected).max())
        torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(expected[:batch]),
                                   rtol=1e-3, atol=1e-4 * max(1.0, scale))


@pytest.mark.parametrize("name", NAMES)
def test_every_zoo_model_compiles_as_one_graph_with_the_same_outputs_and_gradients(
        name, shallow_resnets):
    torch.manual_seed(0)
    model = _perturbed(name, **TRACE_OPTIONS.get(name, {}))
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 3, 67, 45)
    expected = model(x)["out"]
    got = compiled(x)["out"]
    scale = float(expected.detach().abs().max())  # compiled graphs may sum in another order
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-5 * max(1.0, scale))
    first = next(p for p in model.parameters() if p.requires_grad)  # the first conv's weight
    (grad_expected,) = torch.autograd.grad(expected.square().mean(), [first])
    (grad_got,) = torch.autograd.grad(got.square().mean(), [first])
    torch.testing.assert_close(grad_got, grad_expected, rtol=1e-3,
                               atol=1e-4 * float(grad_expected.abs().max()))
    torch._dynamo.reset()

"""MobileNetV3-Large is torchvision's network (keys, shapes, outputs, and the backbone of
``deeplabv3_mobilenet_v3_large``); the aligned Xception-65 of DeepLab v3+ has the paper's layout,
strides and atrous rates."""

import math

import pytest
import torch
import torchvision

from segedu import backbones as B
from segedu.core.weights import WeightsUnavailableError, load_imagenet_weights


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


def _assert_maps_at_their_strides(model, size):
    feats = model.forward_features(torch.randn(1, 3, *size))
    assert list(feats) == list(model.feature_strides) == list(model.feature_channels)
    for name, f in feats.items():
        s = model.feature_strides[name]
        # Every stride-2 conv pads, so a map is ceil(H / stride) x ceil(W / stride).
        assert f.shape == (1, model.feature_channels[name], math.ceil(size[0] / s),
                           math.ceil(size[1] / s)), name
    return feats


# --------------------------------------------------------------------------------------------
# MobileNetV3-Large
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dilated", [False, True], ids=["plain", "dilated"])
def test_mobilenet_v3_large_loads_torchvision_state_dict_strictly_and_gives_equal_outputs(dilated):
    theirs = torchvision.models.mobilenet_v3_large(weights=None, dilated=dilated).eval()
    ours = B.mobilenet_v3_large(dilated=dilated)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in theirs.state_dict().items()
    ]
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.eval()
    with torch.no_grad():
        for size in [(224, 224), (67, 45)]:
            x = torch.randn(2, 3, *size)
            torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


def test_mobilenet_v3_large_has_torchvisions_5_483_032_parameters():
    ours = B.mobilenet_v3_large()
    assert _n_params(ours) == _n_params(torchvision.models.mobilenet_v3_large()) == 5_483_032
    # include_top=False drops exactly the classifier (two Linear layers: 960*1280 + 1280*1000).
    headless = B.mobilenet_v3_large(include_top=False)
    assert _n_params(ours) - _n_params(headless) == 960 * 1280 + 1280 + 1280 * 1000 + 1000
    assert not any(k.startswith("classifier.") for k in headless.state_dict())


def test_mobilenet_features_are_the_backbone_of_torchvisions_deeplabv3_mobilenet_v3_large():
    tv = torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, aux_loss=True).eval()
    backbone_state = {k[len("backbone."):]: v for k, v in tv.state_dict().items()
                      if k.startswith("backbone.")}
    features = B.mobilenet_v3_large(dilated=True, include_top=False).features
    assert {k: v.shape for k, v in features.state_dict().items()} == {
        k: v.shape for k, v in backbone_state.items()}
    features.load_state_dict(backbone_state, strict=True)
    features.eval()
    x = torch.randn(1, 3, 67, 45)
    with torch.no_grad():
        theirs, ours = tv.backbone(x), features.forward_features(x)
    # torchvision's "out" is our C5 (960 channels, stride 16), its "aux" our C2 (40, stride 8).
    torch.testing.assert_close(ours["C5"], theirs["out"], rtol=0, atol=0)
    torch.testing.assert_close(ours["C2"], theirs["aux"], rtol=0, atol=0)
    assert features.feature_channels["C5"] == 960 and features.feature_strides["C5"] == 16
    assert features.feature_channels["C2"] == 40 and features.feature_strides["C2"] == 8


def test_mobilenet_feature_maps_have_their_strides_and_channels_for_odd_sizes():
    plain = B.mobilenet_v3_large(width=0.125, include_top=False)
    assert plain.feature_strides == {"C0": 2, "C1": 4, "C2": 8, "C3": 16, "C4": 32, "C5": 32}
    _assert_maps_at_their_strides(plain, (67, 45))
    dilated = B.mobilenet_v3_large(width=0.125, dilated=True, include_top=False)
    assert dilated.feature_strides == {"C0": 2, "C1": 4, "C2": 8, "C3": 16, "C4": 16, "C5": 16}
    _assert_maps_at_their_strides(dilated, (67, 45))
    # The dilated stage: three blocks whose depthwise convs have dilation 2 and stride 1.
    depthwise = [b.block[1][0] for b in dilated.features[13:16]]
    assert [(c.stride, c.dilation) for c in depthwise] == [((1, 1), (2, 2))] * 3


def test_mobilenet_width_keeps_channels_multiples_of_8_and_width_1_is_the_paper():
    assert B.mobilenet_v3_large(include_top=False).feature_channels == {
        "C0": 16, "C1": 24, "C2": 40, "C3": 80, "C4": 160, "C5": 960}
    narrow = B.mobilenet_v3_large(width=0.125, include_top=False)
    convs = [m for m in narrow.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.out_channels % 8 == 0 for c in convs)
    assert narrow.feature_channels == {"C0": 8, "C1": 8, "C2": 8, "C3": 16, "C4": 24,
                                       "C5": 144}


def test_mobilenet_load_imagenet_weights_goes_through_torchvision(monkeypatch):
    import torchvision.models as tvm

    reference = torchvision.models.mobilenet_v3_large()
    monkeypatch.setattr(tvm.WeightsEnum, "get_state_dict",
                        lambda self, progress=True, check_hash=False: reference.state_dict())
    model = load_imagenet_weights(
        B.mobilenet_v3_large(dilated=True, include_top=False), "mobilenet_v3_large")
    torch.testing.assert_close(model.features[0][0].weight, reference.features[0][0].weight)

    def no_network(self, progress=True, check_hash=False):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvm.WeightsEnum, "get_state_dict", no_network)
    with pytest.raises(WeightsUnavailableError, match="internet"):
        load_imagenet_weights(B.mobilenet_v3_large(), "mobilenet_v3_large")


# --------------------------------------------------------------------------------------------
# Aligned Xception-65
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_xception65_output_stride_sets_the_size_of_every_map(output_stride):
    model = B.xception65(output_stride=output_stride, width=0.125, include_top=False).eval()
    assert model.feature_strides == {
        "entry_block1": 4, "low_level": 4, "entry_block2": 8,
        "entry_block3": min(16, output_stride), "middle_flow": min(16, output_stride),
        "out": output_stride,
    }
    with torch.no_grad():
        feats = _assert_maps_at_their_strides(model, (67, 45))
    assert feats["out"].shape[-2:] == (math.ceil(67 / output_stride), math.ceil(45 / output_stride))


@pytest.mark.parametrize(
    "output_stride, entry3, middle, exit1, exit2",
    [(32, (2, 1), 1, (2, 1), 1), (16, (2, 1), 1, (1, 1), 2), (8, (1, 1), 2, (1, 2), 4)],
)
def test_xception65_trades_strides_for_atrous_rates_like_deeplab(
    output_stride, entry3, middle, exit1, exit2
):
    # (stride, dilation) of the last block that strides and of the blocks after it, as in
    # DeepLab's stack_blocks_dense: a block whose stride is removed keeps the previous rate.
    model = B.xception65(output_stride=output_stride, width=0.125, include_top=False)
    e3, x1, x2 = model.entry_flow[2], model.exit_flow[0], model.exit_flow[1]
    assert (e3.stride, e3.dilation) == entry3
    assert {b.dilation for b in model.middle_flow} == {middle}
    assert (x1.stride, x1.dilation) == exit1
    assert (x2.stride, x2.dilation) == (1, exit2)
    for block in (*model.middle_flow, x1, x2):  # every depthwise conv of the block is atrous
        for conv in (block.sepconv1, block.sepconv2, block.sepconv3):
            assert conv.depthwise.dilation == (block.dilation,) * 2
            assert conv.depthwise.padding == (block.dilation,) * 2


def test_xception65_has_65_layers_and_no_max_pool():
    model = B.xception65(width=0.125)
    separable = [m for m in model.modules() if isinstance(m, B.SeparableConv2d)]
    blocks = [m for m in model.modules() if isinstance(m, B.XceptionBlock)]
    assert len(blocks) == 3 + 16 + 2                  # entry, middle, exit flow
    assert 2 + len(separable) == 65                   # two plain convs + 63 separable convs
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    assert all(s.depthwise.groups == s.depthwise.in_channels and s.depthwise.kernel_size == (3, 3)
               for s in separable)
    assert [b.skip for b in blocks] == ["conv"] * 3 + ["sum"] * 16 + ["conv", "none"]


def test_xception65_full_width_parameter_count():
    with torch.device("meta"):
        headless = B.xception65(include_top=False)
        full = B.xception65()
    assert headless.feature_channels == {"entry_block1": 128, "low_level": 256,
                                         "entry_block2": 256, "entry_block3": 728,
                                         "middle_flow": 728, "out": 2048}
    assert _n_params(headless) == 37_867_312
    assert _n_params(full) == 37_867_312 + 2048 * 1000 + 1000   # 39.9M, as timm's xception65


def test_separable_conv_has_bn_and_relu_after_the_depthwise_conv():
    # DeepLab v3+ Sec. 3.2, modification (3): the pointwise conv only ever sees ReLU outputs.
    conv = B.SeparableConv2d(4, 6, stride=2, dilation=1)
    seen = []
    conv.pointwise.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    out = conv(torch.randn(2, 4, 9, 7))
    assert out.shape == (2, 6, 5, 4)
    assert seen[0].min() >= 0 and out.min() < 0   # no ReLU after the pointwise BN by default


@pytest.mark.parametrize("build", [
    lambda: B.mobilenet_v3_large(width=0.125, in_channels=1, include_top=False),
    lambda: B.xception65(width=0.125, in_channels=1, output_stride=8, include_top=False),
], ids=["mobilenet", "xception"])
def test_backbones_take_any_input_size_and_channel_count(build):
    model = build().eval()
    for size in [(5, 3), (1, 1), (33, 64)]:
        with torch.no_grad():
            model_maps = model.forward_features(torch.randn(1, 1, *size))
        for name, f in model_maps.items():
            s = model.feature_strides[name]
            assert f.shape[-2:] == (math.ceil(size[0] / s), math.ceil(size[1] / s))


def test_xception_blocks_keep_the_input_intact_for_the_shortcut():
    block = B.XceptionBlock(8, (8, 8, 8), skip="sum").eval()
    x = torch.randn(1, 8, 9, 7)
    before = x.clone()
    out, hidden = block.forward_with_hidden(x)
    assert torch.equal(x, before)   # the pre-activation ReLU is not in place
    assert out.shape == hidden.shape == x.shape


# --------------------------------------------------------------------------------------------
# Errors and export
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [
    lambda: B.mobilenet_v3_large(width=0.125, include_top=False),
    lambda: B.xception65(width=0.125, include_top=False),
], ids=["mobilenet", "xception"])
def test_backbones_reject_bad_input_with_a_clear_message(build):
    model = build()
    with pytest.raises(ValueError, match="3 channels"):
        model.forward_features(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="4 dimensions"):
        model.forward_features(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="floating-point"):
        model.forward_features(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="include_top=False"):
        model(torch.randn(1, 3, 32, 32))


def test_bad_options_and_missing_xception_weights_say_what_to_do():
    with pytest.raises(ValueError, match="output_stride must be 8, 16 or 32"):
        B.xception65(output_stride=4)
    with pytest.raises(ValueError, match="width must be positive"):
        B.mobilenet_v3_large(width=0)
    with pytest.raises(ValueError, match="no ImageNet weights for 'xception65'"):
        load_imagenet_weights(B.xception65(width=0.125), "xception65")
    with pytest.raises(ValueError, match="No ImageNet weights for Xception-65.*from scratch"):
        B.xception65(pretrained=True)


# The dilated MobileNetV3's export is checked through the zoo's DeepLabV3 and LR-ASPP
# (tests/test_zoo.py); Xception is no zoo model's default backbone, so it is checked here.
@pytest.mark.parametrize("build, name", [
    # One middle-flow block instead of 16 identical ones: the same operators, a third of the
    # export time.
    (lambda: B.Xception(width=0.125, output_stride=16, include_top=False, middle_blocks=1),
     "out"),
], ids=["xception"])
def test_final_feature_map_exports_to_onnx_and_matches_onnxruntime(tmp_path, build, name):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")

    class FinalMap(torch.nn.Module):
        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone

        def forward(self, x):
            return self.backbone.forward_features(x)[name]

    wrapper = FinalMap(build()).eval()
    x = torch.randn(1, 3, 67, 45)
    path = tmp_path / "backbone.onnx"
    torch.onnx.export(wrapper, (x,), str(path), input_names=["image"], output_names=["out"],
                      dynamo=True)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        expected = wrapper(x)
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-4)

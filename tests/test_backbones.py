"""Our from-scratch backbones are torchvision's networks: same keys, shapes and outputs."""

import pytest
import torch
import torchvision

from segedu import backbones as B
from segedu.core.weights import WeightsUnavailableError, load_imagenet_weights


def _assert_same_network(ours, theirs, size=(64, 80)):
    theirs_state = theirs.state_dict()
    ours_state = ours.state_dict()
    assert list(ours_state) == list(theirs_state)
    assert all(ours_state[k].shape == v.shape for k, v in theirs_state.items())
    ours.load_state_dict(theirs_state, strict=True)
    ours.eval()
    theirs.eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (B.vgg16, torchvision.models.vgg16),
        (B.vgg16_bn, torchvision.models.vgg16_bn),
        (B.resnet50, torchvision.models.resnet50),
    ],
    ids=["vgg16", "vgg16_bn", "resnet50"],
)
def test_backbone_loads_torchvision_state_dict_strictly_and_gives_equal_outputs(ours, theirs):
    _assert_same_network(ours(), theirs())


def test_resnet101_has_torchvision_keys_and_shapes():
    ours, theirs = B.resnet101(), torchvision.models.resnet101()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }


def test_dilated_resnet50_matches_torchvision_and_keeps_stride_8():
    dilation = [False, True, True]
    ours = B.resnet50(replace_stride_with_dilation=dilation)
    _assert_same_network(ours, torchvision.models.resnet50(replace_stride_with_dilation=dilation))
    # torchvision's dilation pattern: layer3 block 0 dilation 1, rest 2; layer4 2, rest 4.
    assert [b.conv2.dilation[0] for b in ours.layer3] == [1] + [2] * 5
    assert [b.conv2.dilation[0] for b in ours.layer4] == [2, 4, 4]
    feats = B.resnet50(replace_stride_with_dilation=dilation, include_top=False).forward_features(
        torch.randn(1, 3, 520, 520)
    )
    assert feats["layer4"].shape == (1, 2048, 65, 65)  # 520 / 8 = 65


def test_vgg16_forward_features_gives_the_five_pools_at_their_strides():
    feats = B.vgg16(include_top=False).forward_features(torch.randn(1, 3, 96, 128))
    assert list(feats) == ["pool1", "pool2", "pool3", "pool4", "pool5"]
    for i, f in enumerate(feats.values(), start=1):
        assert f.shape[-2:] == (96 // 2**i, 128 // 2**i)


def test_include_top_false_drops_exactly_the_classifier():
    full = set(torchvision.models.vgg16().state_dict())
    features_only = set(B.vgg16(include_top=False).state_dict())
    assert full - features_only == {k for k in full if k.startswith("classifier.")}
    r_full = set(torchvision.models.resnet50().state_dict())
    r_feat = set(B.resnet50(include_top=False).state_dict())
    assert r_full - r_feat == {"fc.weight", "fc.bias"}


def test_width_multiplier_scales_every_channel_count():
    vgg = B.vgg16(width=0.125, include_top=False)
    assert vgg.feature_channels == {"pool1": 8, "pool2": 16, "pool3": 32, "pool4": 64,
                                    "pool5": 64}
    res = B.resnet50(width=0.25, include_top=False)
    assert res.feature_channels["layer4"] == 512
    assert res.forward_features(torch.randn(1, 3, 64, 64))["layer4"].shape == (1, 512, 2, 2)


def test_backbones_reject_bad_input_with_a_clear_message():
    with pytest.raises(ValueError, match="3 channels"):
        B.resnet50(include_top=False).forward_features(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="4 dimensions"):
        B.vgg16(include_top=False).forward_features(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="floating-point"):
        B.vgg16(include_top=False).forward_features(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="at least 32x32"):
        B.vgg16(include_top=False).forward_features(torch.randn(1, 3, 16, 40))


def test_load_imagenet_weights_offline_says_what_to_do(monkeypatch):
    import torchvision.models as tvm

    def no_network(self, progress=True, check_hash=False):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvm.WeightsEnum, "get_state_dict", no_network)
    with pytest.raises(WeightsUnavailableError, match="internet"):
        load_imagenet_weights(B.vgg16(include_top=False), "vgg16")


def test_load_imagenet_weights_into_a_headless_backbone(monkeypatch):
    import torchvision.models as tvm

    reference = torchvision.models.resnet50()
    monkeypatch.setattr(tvm.WeightsEnum, "get_state_dict",
                        lambda self, progress=True, check_hash=False: reference.state_dict())
    model = load_imagenet_weights(B.resnet50(include_top=False), "resnet50")
    torch.testing.assert_close(model.conv1.weight, reference.conv1.weight)
    with pytest.raises(ValueError, match="width=1"):
        load_imagenet_weights(B.resnet50(width=0.5), "resnet50")

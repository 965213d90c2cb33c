"""Chapter 1: FCN-32s/16s/8s on VGG16 and torchvision's fcn_resnet50."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from contract import assert_logits_at_input_size, assert_rejects_bad_images
from torch import nn

from segedu import fcn
from segedu.core.utils import count_parameters

SMALL = {"width": 0.125, "batch_norm": True}


def test_fcn8s_has_the_papers_134m_parameters():
    # FCN-8s (Long et al.), 21 classes, learnable upsampling: 134.49M; fc6 alone 102.8M.
    model = fcn.fcn8s(21)
    assert count_parameters(model) == 134_489_759
    assert count_parameters(model.fc6) == 512 * 7 * 7 * 4096 + 4096  # 102,764,544


def test_fcn_variants_have_the_reference_layer_names():
    names = {v: {n for n, _ in fcn.FCN(21, v, **SMALL).named_children()}
             for v in ("32s", "16s", "8s")}
    assert {"fc6", "fc7", "score_fr", "upscore"} <= names["32s"]
    assert {"score_pool4", "upscore2", "upscore16"} <= names["16s"]
    assert {"score_pool4", "score_pool3", "upscore2", "upscore_pool4", "upscore8"} <= names["8s"]
    assert "score_pool3" not in names["16s"] and "score_pool4" not in names["32s"]


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
@pytest.mark.parametrize("size", [(64, 64), (127, 127), (100, 151), (1, 1), (33, 200)])
def test_fcn_output_matches_input_size_for_odd_sizes(variant, size):
    assert_logits_at_input_size(fcn.FCN(5, variant, **SMALL).eval(), size, 5)


def test_full_width_fcn8s_runs_on_an_odd_size():
    assert_logits_at_input_size(fcn.fcn8s(21).eval(), (45, 70), 21, batch=1)


def test_bilinear_kernel_matches_the_papers_formula_and_is_diagonal():
    w = fcn.bilinear_kernel(3, 3, 4)
    assert w.shape == (3, 3, 4, 4)
    one_d = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(w[1, 1], torch.outer(one_d, one_d))
    assert w[0, 1].abs().sum() == 0 and w[2, 0].abs().sum() == 0
    odd = fcn.bilinear_kernel(1, 1, 3)[0, 0]  # f = 2, c = 1: [0.5, 1, 0.5]
    torch.testing.assert_close(odd, torch.outer(*(torch.tensor([0.5, 1.0, 0.5]),) * 2))


@pytest.mark.parametrize("factor", [2, 8, 32])
def test_bilinear_transposed_conv_equals_bilinear_interpolation_away_from_borders(factor):
    # This is why no crop offsets are needed: the upsampled grid is centred like
    # F.interpolate(align_corners=False). Borders differ (zero padding vs. edge clamping).
    up = fcn._bilinear_upsampler(3, factor, learnable=False)
    x = torch.randn(2, 3, 6, 7)
    ours = up(x)
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert ours.shape == ref.shape
    inner = (slice(None), slice(None), slice(factor, -factor), slice(factor, -factor))
    torch.testing.assert_close(ours[inner], ref[inner], rtol=1e-5, atol=1e-5)


def test_linear_to_conv_is_the_same_function_and_slides_over_larger_inputs():
    linear = nn.Linear(8 * 3 * 3, 5)
    conv = fcn.linear_to_conv(linear, 8, 3)
    window = torch.randn(4, 8, 3, 3)
    torch.testing.assert_close(conv(window).flatten(1), linear(window.flatten(1)))
    big = torch.randn(1, 8, 9, 9)  # a map of scores: one per 3x3 window
    dense = conv(big)
    assert dense.shape == (1, 5, 7, 7)
    torch.testing.assert_close(dense[0, :, 4, 2], linear(big[:, :, 4:7, 2:5].flatten(1))[0])
    with pytest.raises(ValueError, match="8\\*3\\*3 = 72"):
        fcn.linear_to_conv(nn.Linear(70, 5), 8, 3)


def test_vgg16_classifier_becomes_fc6_fc7_of_the_fcn():
    # On a 224x224 image pool5 is 7x7, so fc6 (7x7, padding 3) at the centre sees exactly the
    # window VGG16's first Linear sees: the converted FCN reproduces VGG16's fc7 activations.
    vgg = torchvision.models.vgg16().eval()
    model = fcn.fcn32s(21).eval()
    missing, unexpected = model.load_state_dict(fcn.vgg16_state_to_fcn(vgg.state_dict()),
                                                strict=False)
    assert not unexpected
    assert all(k.startswith(("score_", "upscore")) for k in missing)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        pool5 = model.backbone.forward_features(x)["pool5"]
        fc7 = model.relu7(model.fc7(model.relu6(model.fc6(pool5))))[0, :, 3, 3]
        expected = vgg.classifier[:5](torch.flatten(vgg.avgpool(vgg.features(x)), 1))[0]
    torch.testing.assert_close(fc7, expected, rtol=1e-4, atol=1e-4)


def test_pad_to_multiple_pads_bottom_right_and_keeps_multiples():
    x = torch.randn(1, 2, 33, 64)
    padded = fcn.pad_to_multiple(x, 32)
    assert padded.shape == (1, 2, 64, 64)
    torch.testing.assert_close(padded[..., :33, :], x)
    assert padded[..., 33:, :].abs().sum() == 0
    wide = fcn.pad_to_multiple(x[..., :32, :33], 32)  # only the width needs padding
    assert wide.shape == (1, 2, 32, 64)
    torch.testing.assert_close(wide[..., :33], x[..., :32, :33])
    assert wide[..., 33:].abs().sum() == 0
    same = torch.randn(1, 1, 32, 64)
    assert fcn.pad_to_multiple(same, 32) is same


def test_skips_change_the_fcn8s_output_and_are_zero_initialised():
    model = fcn.FCN(3, "8s", **SMALL).eval()
    for name in ("score_fr", "score_pool4", "score_pool3"):
        assert getattr(model, name).weight.abs().sum() == 0
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model.score_pool3.weight.normal_()
        with_skip = model(x)["out"]
        model.score_pool3.weight.zero_()
        without = model(x)["out"]
    assert (with_skip - without).abs().max() > 1e-3


def test_upsampling_is_fixed_unless_asked():
    assert not fcn.fcn8s(3, **SMALL).upscore8.weight.requires_grad
    assert fcn.fcn8s(3, learn_upsampling=True, **SMALL).upscore8.weight.requires_grad


def test_fcn_trains_with_batch_size_one_from_zero_initialised_scores_to_the_backbone():
    # The score layers start at zero (the paper's init), so the first step moves only them and
    # the backbone's gradient is exactly zero; from the second step on it is not.
    model = fcn.fcn8s(3, **SMALL).train()
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, y = torch.randn(1, 3, 40, 56), torch.randint(0, 3, (1, 40, 56))
    first_conv = model.backbone.features[0].weight
    for step in range(2):
        optimiser.zero_grad()
        F.cross_entropy(model(x)["out"], y).backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        assert all(torch.isfinite(g).all() for g in grads.values()), step
        assert grads["score_fr.weight"].abs().sum() > 0, step
        assert (first_conv.grad.abs().sum() > 0) == (step == 1), step
        optimiser.step()


def test_fcn_rejects_bad_input_clearly():
    assert_rejects_bad_images(fcn.fcn8s(3, **SMALL))
    with pytest.raises(ValueError, match="variant"):
        fcn.FCN(3, "4s")


def test_load_torchvision_weights_drops_aux_for_a_model_without_it(monkeypatch):
    import torchvision.models as tvm

    trained = torchvision.models.segmentation.fcn_resnet50(
        weights=None, weights_backbone=None, aux_loss=True).state_dict()
    monkeypatch.setattr(tvm.WeightsEnum, "get_state_dict",
                        lambda self, progress=True, check_hash=False: trained)
    model = fcn.fcn_resnet50(21, pretrained=True)
    torch.testing.assert_close(model.classifier[4].weight, trained["classifier.4.weight"])
    with pytest.raises(ValueError, match="21 classes"):
        fcn.load_torchvision_weights(fcn.fcn_resnet50(5), "fcn_resnet50")

"""Chapter 6: RefineNet and Light-Weight RefineNet, checked against the papers and by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import segedu
from segedu import refinenet
from segedu.core import weights
from segedu.core.model import resize_to
from segedu.refinenet import (
    ChainedResidualPooling,
    MultiResolutionFusion,
    RefineNetBlock,
    ResidualConvUnit,
    chained_residual_pooling,
    multi_resolution_fusion,
    upsample_aligned,
)


def _ones_1x1(channels: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels, 1, bias=False)
    nn.init.ones_(conv.weight)
    return conv


# --------------------------------------------------------------------------- building blocks


def test_residual_conv_unit_is_relu_conv_relu_conv_plus_identity_without_batchnorm():
    rcu = ResidualConvUnit(4)
    x = torch.randn(2, 4, 7, 5)
    before = x.clone()
    expected = x + rcu.conv2(F.relu(rcu.conv1(F.relu(x))))
    out = rcu(x)
    torch.testing.assert_close(out, expected)
    assert torch.equal(x, before), "the first ReLU must not overwrite the identity branch"
    assert not any(isinstance(m, nn.BatchNorm2d) for m in rcu.modules())
    assert rcu.conv1.bias is not None and rcu.conv2.bias is None  # as in the released model
    assert rcu.conv1.padding == (1, 1)


def test_chained_residual_pooling_adds_every_stage_to_a_running_sum_of_the_relu_input():
    x = torch.randn(1, 1, 9, 7)
    convs = [_ones_1x1(), _ones_1x1(), _ones_1x1()]
    r = F.relu(x)
    p1 = F.max_pool2d(r, 5, 1, 2)
    p2 = F.max_pool2d(p1, 5, 1, 2)      # stage 2 pools stage 1's output, not the input
    p3 = F.max_pool2d(p2, 5, 1, 2)
    torch.testing.assert_close(chained_residual_pooling(x, convs), r + p1 + p2 + p3)
    torch.testing.assert_close(chained_residual_pooling(x, []), r)


def test_chained_residual_pooling_keeps_odd_sizes_and_pads_the_pool_with_minus_infinity():
    x = torch.rand(1, 1, 5, 3) + 1.0
    crp = ChainedResidualPooling(1, stages=2, kernel_size=1)
    with torch.no_grad():
        crp.convs[0].weight.fill_(-1.0)         # stage 1 is all negative: a zero-padded
        crp.convs[1].weight.fill_(1.0)          # pool would return 0 at the border
        y = crp(x)
    assert y.shape == x.shape
    stage1 = -F.max_pool2d(x, 5, 1, 2)
    stage2 = F.max_pool2d(stage1, 5, 1, 2)      # PyTorch pads max-pooling with -inf
    assert (stage2 < 0).all()
    torch.testing.assert_close(y, x + stage1 + stage2)


@pytest.mark.parametrize("kernel_size, growth", [(1, 4), (3, 6)])
def test_each_crp_stage_grows_the_window_by_4_pixels_plus_the_conv(kernel_size, growth):
    # An impulse in the middle: stage k's response covers 1 + k * (4 + kernel_size - 1) pixels.
    crp = ChainedResidualPooling(1, stages=4, kernel_size=kernel_size)
    with torch.no_grad():
        for conv in crp.convs:
            conv.weight.fill_(1.0)
    x = torch.zeros(1, 1, 61, 61)
    x[..., 30, 30] = 1.0
    top, widths = x, []
    with torch.no_grad():
        for conv in crp.convs:
            top = conv(F.max_pool2d(top, 5, 1, 2))
            widths.append(int((top[0, 0, 30] != 0).sum()))
    assert widths == [1 + growth * k for k in range(1, 5)]


def test_multi_resolution_fusion_upsamples_every_path_to_the_finest_paths_exact_size():
    fine, coarse = torch.randn(2, 3, 17, 12), torch.randn(2, 5, 9, 6)   # strides 4 and 8
    convs = [nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(5, 3, 3, padding=1)]
    out = multi_resolution_fusion([fine, coarse], convs, [4, 8])
    assert out.shape == (2, 3, 17, 12)
    expected = convs[0](fine) + upsample_aligned(convs[1](coarse), (17, 12), 2)
    torch.testing.assert_close(out, expected)
    # the finest path need not come first, and a factor-4 jump works too
    out = multi_resolution_fusion([coarse[:, :, :5, :3], fine], convs[::-1], [16, 4])
    assert out.shape == (2, 3, 17, 12)


def test_fusion_convs_reduce_to_the_smallest_channel_count_and_one_path_passes_through():
    fusion = MultiResolutionFusion([256, 512], [16, 32])
    assert fusion.out_channels == 256
    assert [tuple(c.weight.shape) for c in fusion.convs] == [(256, 256, 3, 3), (256, 512, 3, 3)]
    single = MultiResolutionFusion([512], [32])
    x = torch.randn(1, 512, 3, 2)
    assert len(single.convs) == 0 and single(x) is x


def test_refinenet_block_is_adaptive_rcus_fusion_crp_and_output_rcu():
    block = RefineNetBlock([4, 8], [8, 16], crp_stages=2)
    assert [len(a) for a in block.adapt] == [2, 2] and len(block.output_conv) == 1
    assert len(block.crp.convs) == 2 and block.out_channels == 4 and block.stride == 8
    fine, coarse = torch.randn(1, 4, 9, 13), torch.randn(1, 8, 5, 7)
    expected = block.output_conv(block.crp(block.fusion(block.adapt[0](fine),
                                                        block.adapt[1](coarse))))
    torch.testing.assert_close(block(fine, coarse), expected)
    with pytest.raises(ValueError, match="takes 2 paths"):
        block(fine)


# --------------------------------------------------------------------------- alignment


@pytest.mark.parametrize("factor, n, size", [(2, 5, 9), (2, 5, 10), (4, 4, 13), (8, 3, 24)])
def test_upsample_aligned_puts_coarse_cell_j_on_fine_pixel_factor_times_j(factor, n, size):
    # Sample the line f(p) = p at the coarse centres p = factor * j: bilinear upsampling that
    # respects the centres gives back f exactly, and repeats the edge beyond the last centre.
    coarse = (factor * torch.arange(n, dtype=torch.float32)).view(1, 1, 1, n)
    fine = upsample_aligned(coarse, (1, size), factor)[0, 0, 0]
    expected = torch.arange(size, dtype=torch.float32).clamp(max=factor * (n - 1))
    torch.testing.assert_close(fine, expected)
    # resize_to (align_corners=False) stretches n cells over the whole map instead: at
    # size = factor * n it puts cell j on pixel factor * j + (factor - 1) / 2, elsewhere the
    # offset drifts along the map.
    offset = (expected - resize_to(coarse, (1, size))[0, 0, 0])[factor:factor * (n - 1)]
    if size == factor * n:
        torch.testing.assert_close(offset, torch.full_like(offset, (factor - 1) / 2))
    else:
        assert offset.max() - offset.min() > 0.1


def test_upsample_aligned_rejects_a_size_the_stride_cannot_have_made():
    with pytest.raises(ValueError, match="finer map"):
        upsample_aligned(torch.randn(1, 1, 5, 5), (12, 9), 2)   # 5 cells make 9 or 10 pixels


# --------------------------------------------------------------------------- the network


def test_refinenet_cascade_runs_on_strides_4_to_32_with_512_then_256_channels():
    model = refinenet.refinenet(3, width=0.125).eval()
    with torch.no_grad():
        stages = model.forward_stages(torch.randn(1, 3, 67, 45))
    for name, stride in refinenet.PATHS.items():  # ceil(n / stride): not dilated
        assert stages[name].shape[-2:] == (math.ceil(67 / stride), math.ceil(45 / stride))
    assert stages["refine4"].shape == (1, 64, 3, 2)                # 512 * 1/8, stride 32
    for i, stride in ((3, 16), (2, 8), (1, 4)):
        assert stages[f"refine{i}"].shape == (1, 32, math.ceil(67 / stride),
                                              math.ceil(45 / stride))  # 256 * 1/8
    assert stages["out"].shape == (1, 3, 67, 45)
    torch.testing.assert_close(model(torch.randn(1, 3, 67, 45))["out"].shape,
                               stages["out"].shape)


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (33, 17)])
def test_refinenet_output_matches_input_size_even_for_tiny_inputs(size):
    for model in (refinenet.refinenet(2, width=0.125), refinenet.lw_refinenet(2, width=0.125)):
        with torch.no_grad():
            assert model.eval()(torch.randn(1, 3, *size))["out"].shape == (1, 2, *size)


def test_crp_depth_is_two_as_in_the_paper_and_four_in_the_light_weight_model():
    assert len(refinenet.refinenet(3, width=0.125).refine1.crp.convs) == 2
    assert len(refinenet.refinenet(3, width=0.125, crp_stages=4).refine4.crp.convs) == 4
    assert len(refinenet.lw_refinenet(3, width=0.125).refine2.crp.convs) == 4


def test_light_weight_refinenet_has_no_rcus_and_only_1x1_convs_outside_the_backbone():
    model = refinenet.lw_refinenet(3, width=0.125)
    decoder = [m for name, m in model.named_modules()
               if not name.startswith("backbone") and isinstance(m, nn.Conv2d)]
    assert not any(isinstance(m, ResidualConvUnit) for m in model.modules())
    assert {m.kernel_size for m in decoder if m is not model.classifier} == {(1, 1)}
    assert model.classifier.kernel_size == (3, 3)   # as in the authors' released code


def test_full_width_parameter_counts_match_the_published_models():
    with torch.device("meta"):
        counts = {
            "rf50": refinenet.refinenet(21),
            "rf101_released": refinenet.refinenet(21, backbone="resnet101", crp_stages=4),
            "lw50": refinenet.lw_refinenet(21),
            "lw101": refinenet.lw_refinenet(21, backbone="resnet101"),
        }
        counts = {k: segedu.count_parameters(m) for k, m in counts.items()}
    assert counts == {"rf50": 90_802_773, "rf101_released": 118_052_437,
                      "lw50": 27_357_525, "lw101": 46_349_653}
    # The authors' table (light-weight-refinenet README): RF-LW-ResNet-50 27M, -101 46M.
    assert round(counts["lw50"] / 1e6) == 27 and round(counts["lw101"] / 1e6) == 46


def test_pretrained_backbone_fails_clearly_offline_and_at_reduced_width(monkeypatch):
    def offline(*args, **kwargs):
        raise weights.WeightsUnavailableError("no network here")

    monkeypatch.setattr(weights, "download_state_dict", offline)
    with pytest.raises(weights.WeightsUnavailableError, match="no network"):
        refinenet.lw_refinenet(3, pretrained_backbone=True)
    with pytest.raises(ValueError, match="width=1"):
        refinenet.refinenet(3, width=0.125, pretrained_backbone=True)
    with pytest.raises(ValueError, match="backbone must be one of"):
        refinenet.refinenet(3, backbone="vgg16")


def test_stage_readouts_give_a_prediction_per_block_at_the_input_size():
    model = refinenet.lw_refinenet(3, width=0.125)
    images, targets = torch.randn(2, 3, 35, 29), torch.randint(0, 3, (2, 35, 29))
    readouts = refinenet.fit_stage_readouts(model, [(images, targets)], 3)
    with torch.no_grad():
        preds = refinenet.stage_predictions(readouts, model.forward_stages(images), (35, 29))
    assert list(preds) == ["refine4", "refine3", "refine2", "refine1"]
    assert all(p.shape == (2, 3, 35, 29) for p in preds.values())

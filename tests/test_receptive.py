"""segedu.tools.receptive: theoretical and effective receptive fields, gridding, ASPP taps, PPM
cells. (The size arithmetic underneath is tested in test_sizes.py.)"""

import math
import random

import pytest
import torch
from torch import nn

from segedu.tools.receptive import EffectiveRF

# --------------------------------------------------------------------------- receptive fields


def _meta(build, *args, **kwargs):
    """Full-size networks on the meta device: the walk reads modules, not weights."""
    with torch.device("meta"):
        return build(*args, **kwargs)


def test_vgg16_field_at_pool5_is_212_pixels_with_stride_32():
    import torchvision

    from segedu.backbones import vgg16
    from segedu.tools.receptive import receptive_field

    for model in (vgg16(width=0.125), _meta(torchvision.models.vgg16)):
        rows = receptive_field(model, upto="pool5")
        pools = [(r.label, r.size, r.jump) for r in rows if r.kind == "pool"]
        assert pools == [("pool1", 6, 2), ("pool2", 16, 4), ("pool3", 44, 8),
                         ("pool4", 100, 16), ("pool5", 212, 32)]
    # torchvision's bare feature stack gives the same numbers (no labels there)
    features = receptive_field(_meta(torchvision.models.vgg16).features)
    assert (features[-1].size, features[-1].jump, features[-1].name) == (212, 32, "30")


def test_resnet50_field_at_layer4_is_427_pixels_with_stride_32():
    import torchvision

    from segedu.backbones import resnet50
    from segedu.tools.receptive import receptive_field

    expected = {"layer1": (35, 4), "layer2": (91, 8), "layer3": (267, 16), "layer4": (427, 32)}
    for model in (resnet50(width=0.125), _meta(torchvision.models.resnet50)):
        for stage, (size, jump) in expected.items():
            last = receptive_field(model, upto=stage)[-1]
            assert (last.size, last.jump) == (size, jump), stage
            assert last.name.startswith(stage)
    # the whole torchvision classifier walks to layer4 and stops before the global avgpool
    assert receptive_field(_meta(torchvision.models.resnet50))[-1].size == 427
    # ResNet-101: layer3's 23 blocks give 91 + 2*8 + 22*2*16 = 811, layer4 811 + 32 + 128 = 971;
    # ResNet-18 (BasicBlock: two 3x3 convs, the first strided): stem 11, layer1 11 + 4*2*4 = 43,
    # layer2 43 + 2*4 + 3*2*8 = 99, layer3 99 + 2*8 + 3*2*16 = 211, layer4 211 + 2*16 + 3*2*32 = 435
    assert receptive_field(_meta(torchvision.models.resnet101))[-1].size == 971
    assert receptive_field(_meta(torchvision.models.resnet18))[-1].size == 435


def test_our_backbones_walk_exactly_like_torchvisions():
    import torchvision

    from segedu.backbones import resnet50, vgg16
    from segedu.tools.receptive import receptive_field

    dilated = [False, True, True]
    pairs = [(vgg16(width=0.125).features, _meta(torchvision.models.vgg16).features),
             (resnet50(width=0.125), _meta(torchvision.models.resnet50)),
             (resnet50(width=0.125, replace_stride_with_dilation=dilated),
              _meta(torchvision.models.resnet50, replace_stride_with_dilation=dilated))]
    for ours, theirs in pairs:
        assert receptive_field(ours) == receptive_field(theirs)


def test_dilated_resnet_keeps_the_field_and_stride_8_from_layer2_on():
    from segedu.backbones import resnet50
    from segedu.tools.receptive import receptive_field

    plain = resnet50(width=0.125)
    dilated = resnet50(width=0.125, replace_stride_with_dilation=[False, True, True])
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        a, b = receptive_field(plain, upto=stage)[-1], receptive_field(dilated, upto=stage)[-1]
        assert a.size == b.size  # dilation buys back exactly the field the stride gave
        assert b.jump == min(a.jump, 8)
    rates = [r.dilation for r in receptive_field(dilated) if r.kernel == 3]
    # layer3: first block 1, then 2; layer4: first block 2, then 4 (as torchvision)
    assert rates[-9:] == [1, 2, 2, 2, 2, 2, 2, 4, 4]


def test_fcn_score_fr_sees_404_pixels_and_fcn_resnet50_head_443():
    from segedu.fcn import fcn8s, fcn_resnet50
    from segedu.tools.receptive import receptive_field

    last = receptive_field(fcn8s(num_classes=3, width=0.125))[-1]
    assert (last.name, last.size, last.jump) == ("score_fr", 212 + 6 * 32, 32)  # fc6: 7x7 at j=32
    last = receptive_field(fcn_resnet50(num_classes=3, width=0.125))[-1]
    assert (last.size, last.jump) == (427 + 2 * 8, 8)  # FCNHead's 3x3 at stride 8


def _linear_positive(model):
    """The same geometry with nothing that can cancel or block a gradient: ReLU -> identity,
    max-pool -> average pool, every weight 1/fan-in (float64), BatchNorm an identity."""
    for name, child in model.named_children():
        if isinstance(child, nn.ReLU):
            setattr(model, name, nn.Identity())
        elif isinstance(child, nn.MaxPool2d):
            setattr(model, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                              count_include_pad=False))
        else:
            _linear_positive(child)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.fill_(1.0 / m.weight[0].numel())
                if m.bias is not None:
                    m.bias.zero_()
    return model.double().eval()


def _clipped(row, index, size):
    first, last = row.field(index)
    return max(0, int(math.ceil(first))), min(size - 1, int(math.floor(last)))


@pytest.mark.parametrize("seed", range(8))
def test_gradient_support_equals_the_field_of_a_random_linear_stack(seed):
    from segedu.tools.receptive import effective_receptive_field, receptive_field

    rng = random.Random(seed)
    layers = []
    for _ in range(rng.randint(2, 5)):
        k, s, d = rng.choice([1, 2, 3, 5]), rng.choice([1, 1, 2]), rng.choice([1, 1, 2, 3])
        if rng.random() < 0.3:
            layers.append(nn.AvgPool2d(rng.choice([2, 3]), stride=rng.choice([1, 2])))
        else:
            layers.append(nn.Conv2d(1, 1, k, s, padding=rng.randint(0, d * (k - 1) // 2 + 1),
                                    dilation=d))
    stack = _linear_positive(nn.Sequential(*layers))
    row = receptive_field(stack)[-1]
    n = 3 * int(row.size) + 4 * int(row.jump) + 8
    erf = effective_receptive_field(stack, n)  # the centre unit: its field is inside the image
    first, last = row.field(erf.unit[0])
    assert 0 <= first and last < n
    assert erf.support() == (first, last, *row.field(erf.unit[1])), layers
    # A corner unit: its field is clipped to the image, and may see nothing at all there (all
    # padding, or only pixels between its dilated taps: seeds 2 and 7).
    corner = effective_receptive_field(stack, n, unit=(0, 0))
    first, last = _clipped(row, 0, n)
    seen = torch.nonzero(corner.gradient.sum(1)).flatten().tolist()
    assert all(first <= i <= last for i in seen)  # never outside the field
    if seed in (2, 7):
        assert seen == []
        with pytest.raises(ValueError, match="zero everywhere"):
            corner.support()
    else:
        top, bottom, left, right = corner.support()
        assert (top, bottom) == (seen[0], last)  # its far edge lies inside the image: reached


def test_transposed_conv_field_is_the_envelope_of_what_output_units_see():
    from segedu.tools.receptive import effective_receptive_field, receptive_field

    stack = _linear_positive(nn.Sequential(
        nn.Conv2d(1, 1, 3, padding=1), nn.ConvTranspose2d(1, 1, 4, 2, 1),
        nn.Conv2d(1, 1, 3, padding=1), nn.ConvTranspose2d(1, 1, 3, 2, 1)))
    last = receptive_field(stack)[-1]
    assert (last.jump, last.size) == (0.25, 3 + 1.5 + 2 * 0.5 + 1 * 0.5)
    tight_left = tight_right = False
    for col in range(30, 38):  # every phase of the two upsamplers
        _, _, left, right = effective_receptive_field(stack, 21, unit=(40, col)).support()
        first, end = last.field(col)
        assert math.ceil(first) <= left and right <= math.floor(end)
        tight_left |= left == math.ceil(first)
        tight_right |= right == math.floor(end)
    assert tight_left and tight_right  # and the envelope is reached


@pytest.mark.parametrize("build, layer, n", [("vgg16", "pool5", 256), ("resnet50", "layer4", 480)])
def test_gradient_support_equals_the_theoretical_field_of_linearised_backbones(build, layer, n):
    from segedu import backbones
    from segedu.tools.receptive import effective_receptive_field, receptive_field

    model = _linear_positive(getattr(backbones, build)(width=1 / 16, include_top=False))
    row = receptive_field(model, upto=layer)[-1]
    erf = effective_receptive_field(model, n, layer)
    top, bottom, left, right = erf.support()
    assert (top, bottom) == _clipped(row, erf.unit[0], n)
    assert (left, right) == _clipped(row, erf.unit[1], n)
    assert bottom - top + 1 == row.size  # the field lies inside the image: all of it is seen


def test_effective_field_of_a_random_relu_network_is_inside_and_much_smaller():
    from segedu.backbones import resnet50
    from segedu.tools.receptive import effective_receptive_field, receptive_field

    model = resnet50(width=0.125, include_top=False)
    row = receptive_field(model, upto="layer3")[-1]  # 267 px
    erf = effective_receptive_field(model, 320, "layer3", samples=2)
    top, bottom, left, right = erf.support()
    first, last = _clipped(row, erf.unit[0], 320)
    assert first <= top and bottom <= last
    assert erf.mass_extent(0.9) < row.size / 2  # Luo et al.: concentrated near the centre


def _erf(gradient) -> EffectiveRF:

    g = torch.as_tensor(gradient, dtype=torch.float32)
    return EffectiveRF(g, ((g.shape[0] - 1) // 2, (g.shape[1] - 1) // 2), tuple(g.shape))


def test_support_is_the_box_of_pixels_above_a_share_of_the_largest_gradient():
    g = torch.zeros(9, 11)
    g[4, 4], g[2, 4], g[4, 7], g[6, 1] = 1.0, 0.3, 0.6, 0.1
    assert _erf(g).support() == (2, 6, 1, 7)  # every pixel that moves the unit
    assert _erf(g).support(0.2) == (2, 4, 4, 7)
    assert _erf(g).support(0.5) == (4, 4, 4, 7)
    assert _erf(g).support(0.7) == (4, 4, 4, 4)


def test_support_and_mass_extent_of_a_zero_gradient_raise():
    for measure in ("support", "mass_extent"):
        with pytest.raises(ValueError, match="zero everywhere"):
            getattr(_erf(torch.zeros(5, 5)), measure)()


def test_mass_extent_of_a_single_pixel_is_1_wherever_it_is():
    for y, x in [(0, 0), (5, 7), (10, 14), (0, 14)]:
        g = torch.zeros(11, 15)
        g[y, x] = 2.0
        assert _erf(g).mass_extent(1.0) == 1, (y, x)


def test_mass_extent_is_the_smallest_centred_square_holding_the_fraction():
    g = torch.zeros(12, 12)
    g[2:5, 6:9] = 1.0  # a 3x3 block centred at (3, 7), away from the map's centre
    assert _erf(g).mass_extent(1.0) == 3
    assert _erf(g).mass_extent(0.5) == 3
    assert _erf(g).mass_extent(1 / 9) == 1  # the centre pixel alone holds exactly 1/9
    g[3, 7] = 9.0  # the centre pixel now holds 9/17 of the mass
    assert _erf(g).mass_extent(9 / 17) == 1
    assert _erf(g).mass_extent(0.6) == 3


def test_mass_extent_centres_the_square_on_the_rounded_centroid():
    g = torch.zeros(7, 9)
    g[3, 3], g[3, 6] = 2.0, 3.0  # centroid column (2*3 + 3*6) / 5 = 4.8 -> 5
    assert _erf(g).mass_extent(0.6) == 3  # columns 4..6 hold the 3 (from column 4: 5 wide)
    assert _erf(g).mass_extent(1.0) == 5  # columns 3..7
    g = torch.zeros(9, 7)
    g[3, 3], g[6, 3] = 2.0, 3.0  # the same along the rows
    assert _erf(g).mass_extent(0.6) == 3


def test_mass_extent_clips_the_square_at_the_border():
    g = torch.zeros(6, 6)
    g[0, 0], g[0, 2], g[1, 1] = 1.0, 1.0, 1.0  # centroid (0.33 -> 0, 1)
    assert _erf(g).mass_extent(1.0) == 3


@pytest.mark.parametrize("fraction", [0, -0.5, 1.5])
def test_mass_extent_fraction_must_be_in_0_1(fraction):
    with pytest.raises(ValueError, match=rf"fraction must be in \(0, 1\], got {fraction}"):
        _erf(torch.ones(3, 3)).mass_extent(fraction)


def test_receptive_field_errors_name_the_problem():
    from segedu.tools.receptive import effective_receptive_field, receptive_field

    with pytest.raises(ValueError, match="Upsample"):
        receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=2)))
    with pytest.raises(ValueError, match="whole input"):
        receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), nn.AdaptiveAvgPool2d(1)))
    with pytest.raises(ValueError, match="non-square"):
        receptive_field([nn.Conv2d(1, 1, (1, 7))])
    with pytest.raises(ValueError, match="no layer or block named 'layer5'"):
        receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3)), upto="layer5")
    with pytest.raises(ValueError, match="no layer"):
        effective_receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3)), 9, "nope")


def test_receptive_field_rows_follow_the_recurrences_layer_by_layer():
    from segedu.tools.receptive import RFRow, receptive_field

    stack = [nn.Conv2d(1, 1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
             nn.Conv2d(1, 1, 3, stride=2, padding=2, dilation=2), nn.BatchNorm2d(1),
             nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1)]
    # r += (e - 1) j, c += ((e - 1) / 2 - p) j, j *= s; a transposed conv divides by s instead
    assert receptive_field(stack) == [
        RFRow("0", "0", "conv", 3, 1, 1, 1, size=3, jump=1, centre=0, start=-1),
        RFRow("2", "2", "pool", 2, 2, 1, 0, size=4, jump=2, centre=0.5, start=-1),
        RFRow("3", "3", "conv", 3, 2, 2, 2, size=12, jump=4, centre=0.5, start=-5),
        RFRow("5", "5", "tconv", 4, 2, 1, 1, size=18, jump=2, centre=-0.5, start=-9),
    ]
    assert [type(v) for v in (receptive_field(stack)[1].size, receptive_field(stack)[1].centre)] \
        == [int, float]  # whole numbers come back as ints
    assert receptive_field(stack)[-1].field(3) == (-3, 14)


def test_receptive_field_accepts_square_tuples_and_names_unsupported_settings():
    from segedu.tools.receptive import receptive_field

    row = receptive_field([nn.Conv2d(1, 1, (3, 3), stride=(2, 2), padding=(1, 1))])[0]
    assert (row.kernel, row.stride, row.padding, row.size) == (3, 2, 1, 3)
    with pytest.raises(ValueError, match="padding='same' is not supported here"):
        receptive_field([nn.Conv2d(1, 1, 3, padding="same")])
    with pytest.raises(ValueError, match="found no conv or pool layer"):
        receptive_field([nn.ReLU(), nn.BatchNorm2d(1)])


def test_upto_a_label_stops_at_that_layer_and_upto_a_block_after_its_last_layer():
    from segedu.backbones import resnet50, vgg16
    from segedu.tools.receptive import receptive_field

    rows = receptive_field(vgg16(width=0.125), upto="conv3_2")
    assert (rows[-1].label, rows[-1].name, len(rows)) == ("conv3_2", "features.12", 8)
    rows = receptive_field(resnet50(width=0.125), upto="layer1.0")
    assert [r.name for r in rows[-3:]] == ["layer1.0.conv1", "layer1.0.conv2", "layer1.0.conv3"]
    assert receptive_field(resnet50(width=0.125), upto="conv1")[-1].name == "conv1"


def test_register_main_path_rejects_what_is_not_a_module_class():
    from segedu.tools.receptive import register_main_path

    for cls in (int, nn.Conv2d(1, 1, 1)):
        with pytest.raises(ValueError, match="cls must be an nn.Module subclass"):
            register_main_path(cls, ["body"])


def test_effective_receptive_field_uses_the_models_dtype_channels_and_restores_its_mode():
    from segedu.tools.receptive import effective_receptive_field

    model = nn.Sequential(nn.Conv2d(2, 1, 3, padding=1), nn.Dropout()).double().train()
    erf = effective_receptive_field(model, (5, 7), samples=3)
    assert erf.gradient.dtype == torch.float64 and erf.gradient.shape == (5, 7)
    assert (erf.unit, erf.output_size) == ((2, 3), (5, 7))
    assert model.training  # eval for the measurement, then back
    # the gradient of one conv output is |its weights| summed over input channels, at its taps
    expected = torch.zeros(5, 7, dtype=torch.float64)
    expected[1:4, 2:5] = model[0].weight.detach().abs().sum((0, 1))
    torch.testing.assert_close(erf.gradient, expected)


def test_effective_receptive_field_of_given_inputs_averages_over_them():
    from segedu.tools.receptive import effective_receptive_field

    model = nn.Sequential(nn.Conv2d(1, 1, 3), nn.ReLU())
    inputs = torch.randn(4, 1, 9, 9)
    erf = effective_receptive_field(model, 9, inputs=inputs, unit=(0, 6))
    grads = []
    for x in inputs:  # one at a time, by hand
        x = x[None].clone().requires_grad_(True)
        model(x)[0, 0, 0, 6].backward()
        grads.append(x.grad[0, 0].abs())
    torch.testing.assert_close(erf.gradient, torch.stack(grads).mean(0))


def test_effective_receptive_field_stops_at_a_layer_and_removes_its_hook():
    from segedu.tools.receptive import effective_receptive_field

    model = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3), nn.Flatten())
    erf = effective_receptive_field(model, 9, "0")
    assert erf.output_size == (7, 7) and erf.gradient[3:6, 3:6].abs().sum() > 0
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError, match=r"one \(N, C, H, W\) tensor; pass layer="):
        effective_receptive_field(model, 9)  # the flattened output is not a map


def test_effective_receptive_field_rejects_a_unit_outside_the_map_and_zero_samples():
    from segedu.tools.receptive import effective_receptive_field

    model = nn.Conv2d(1, 1, 3)
    for unit in [(7, 0), (0, 7), (-1, 0)]:
        with pytest.raises(ValueError, match=r"outside the layer's 7x7 output map"):
            effective_receptive_field(model, 9, unit=unit)
    with pytest.raises(ValueError, match="samples must be at least 1, got 0"):
        effective_receptive_field(model, 9, samples=0)


def test_register_main_path_lets_a_chapter_describe_its_block():
    from segedu.tools.receptive import receptive_field, register_main_path
    from segedu.tools.receptive.theoretical import _REGISTERED_PATHS

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Conv2d(1, 1, 3, padding=2, dilation=2)
            self.skip = nn.Identity()

    model = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), Residual())
    with pytest.raises(ValueError, match="Residual"):
        receptive_field(model)
    register_main_path(Residual, ["body"])
    try:
        assert [r.size for r in receptive_field(model)] == [3, 3 + 4 * 2]
    finally:
        del _REGISTERED_PATHS[Residual]


# --------------------------------------------------------------------------- dilation, ASPP, PPM


@pytest.mark.parametrize("rates", [(2, 2, 2), (1, 2, 5), (1, 2, 3), (3, 1), (4,)])
def test_dilated_sampling_counts_the_paths_a_real_stack_takes(rates):
    from segedu.tools.receptive import dilated_sampling

    layers = [nn.Conv2d(1, 1, 3, padding=r, dilation=r, bias=False) for r in rates]
    for layer in layers:
        nn.init.ones_(layer.weight)
    x = torch.zeros(1, 1, 41, 41, dtype=torch.float64, requires_grad=True)
    nn.Sequential(*layers).double()(x)[0, 0, 20, 20].backward()
    pattern = dilated_sampling(rates)
    r = pattern.shape[0] // 2
    assert pattern.shape[0] == 1 + 2 * sum(rates)
    assert torch.equal(x.grad[0, 0, 20 - r:21 + r, 20 - r:21 + r].long(), pattern)
    assert x.grad.sum() == pattern.sum()  # nothing outside the field


def test_sampling_profile_of_no_rates_is_one_pixel_and_empty_rates_are_rejected():
    from segedu.tools.receptive import dilated_coverage, dilated_sampling, sampling_profile

    assert sampling_profile([]).tolist() == [1]
    assert sampling_profile([2], kernel_size=5).tolist() == [1, 0, 1, 0, 1, 0, 1, 0, 1]
    for fn in (dilated_sampling, dilated_coverage):
        with pytest.raises(ValueError, match="at least one dilation rate"):
            fn([])
    one = dilated_coverage([3], kernel_size=1)
    assert (one.size, one.reached, one.total, one.largest_gap, one.holes) == (1, 1, 1, 1, False)


def test_rates_2_2_2_grid_while_hybrid_rates_1_2_5_cover_everything():
    from segedu.tools.receptive import dilated_coverage

    gridded = dilated_coverage([2, 2, 2])
    assert (gridded.size, gridded.reached, gridded.total) == (13, 49, 169)
    assert gridded.holes and gridded.largest_gap == 2
    hybrid = dilated_coverage([1, 2, 5])
    assert (hybrid.size, hybrid.fraction, hybrid.holes, hybrid.largest_gap) == (17, 1.0, False, 1)
    assert dilated_coverage([1, 2, 9]).holes  # Wang et al.: too big a jump after 1, 2
    assert dilated_coverage([5, 2, 1]) == hybrid  # the order of the layers does not matter


def test_aspp_feature_sizes_follow_deeplab_for_513_crops():
    from segedu.core.sizes import resnet_feature_size
    from segedu.tools.receptive import aspp_taps

    assert [resnet_feature_size(513, s) for s in (8, 16, 32)] == [65, 33, 17]
    from segedu.backbones import resnet50

    for stride, dilate in ((8, [False, True, True]), (16, [False, False, True])):
        model = resnet50(width=1 / 16, include_top=False, replace_stride_with_dilation=dilate)
        with torch.no_grad():
            measured = model.forward_features(torch.zeros(1, 3, 97, 97))["layer4"].shape[-1]
        assert resnet_feature_size(97, stride) == measured
    branches = aspp_taps(513, 16, rates=(6, 12, 18, 24))
    assert [b.taps_at_centre_2d for b in branches] == [9, 9, 1, 1]
    assert [b.degenerate for b in branches] == [False, False, True, True]
    assert [b.span for b in branches] == [13, 25, 37, 49]
    with pytest.raises(ValueError, match="output_stride"):
        resnet_feature_size(513, 12)


@pytest.mark.parametrize("size, rate", [(33, 6), (33, 18), (65, 24), (17, 36)])
def test_aspp_valid_fraction_is_the_measured_share_of_weights_on_the_map(size, rate):
    from segedu.core.sizes import resnet_feature_size
    from segedu.tools.receptive import aspp_taps

    input_size = next(n for n in range(16, 2000) if resnet_feature_size(n, 16) == size)
    (branch,) = aspp_taps(input_size, 16, rates=[rate])
    conv = nn.Conv2d(1, 1, 3, padding=rate, dilation=rate, bias=False).double()
    nn.init.ones_(conv.weight)
    with torch.no_grad():  # ones on the map, zeros in the padding: each output counts its taps
        taps = conv(torch.ones(1, 1, size, size, dtype=torch.float64))
    assert branch.map_size == size
    assert branch.valid_fraction == pytest.approx(taps.mean().item() / 9)


@pytest.mark.parametrize("h, w, bins",
                         [(60, 60, 6), (61, 47, 6), (7, 5, 3), (4, 9, 6), (13, 13, 2)])
def test_ppm_cells_reproduce_adaptive_avg_pool_in_2d(h, w, bins):
    from segedu.tools.receptive import ppm_cells

    x = torch.randn(1, 1, h, w, dtype=torch.float64)
    pooled = nn.AdaptiveAvgPool2d(bins)(x).flatten()
    cells = ppm_cells(h, w, bins)
    assert len(cells) == bins * bins
    by_hand = torch.stack([x[0, 0, t:b, l:r].mean() for t, b, l, r in cells])
    torch.testing.assert_close(by_hand, pooled)


# --------------------------------------------------------------------------- what mutation found

def test_aspp_taps_reports_each_branch_under_its_own_integer_rate():
    from segedu.tools.receptive import aspp_taps

    branches = aspp_taps(513, 16, rates=(6.0, 12, 18))
    assert [b.rate for b in branches] == [6, 12, 18]
    assert all(type(b.rate) is int for b in branches)


def test_a_non_square_padding_is_refused_by_name():
    from segedu.tools.receptive import receptive_field

    with pytest.raises(ValueError, match="non-square padding"):
        receptive_field([nn.Conv2d(1, 1, 3, padding=(1, 0))])
    with pytest.raises(ValueError, match="non-square stride"):
        receptive_field([nn.Conv2d(1, 1, 3, stride=(2, 1))])


def test_effective_field_of_a_model_without_parameters():
    from segedu.tools.receptive import effective_receptive_field

    erf = effective_receptive_field(nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1)), 9)
    assert erf.support() == (3, 5, 3, 5)  # rows 3..5, cols 3..5 around the centre unit (4, 4)


def test_effective_field_reads_the_out_entry_of_a_dict_output():
    from segedu.tools.receptive import effective_receptive_field

    class DictNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 5, padding=2)

        def forward(self, x):
            return {"out": self.conv(x), "aux": x}

    erf = effective_receptive_field(DictNet(), 11)
    assert erf.output_size == (11, 11)
    assert erf.support() == (3, 7, 3, 7)


def test_the_random_inputs_of_the_effective_field_follow_the_seed():
    from segedu.tools.receptive import effective_receptive_field

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))
    torch.manual_seed(1)  # the global generator must not matter
    a = effective_receptive_field(model, 9, seed=3).gradient
    torch.manual_seed(2)
    b = effective_receptive_field(model, 9, seed=3).gradient
    c = effective_receptive_field(model, 9, seed=4).gradient
    assert torch.equal(a, b)
    assert not torch.equal(a, c)  # ReLU routes the gradient differently for other inputs


def test_support_threshold_is_relative_to_the_largest_gradient():
    profile = torch.tensor([1.0, 4.0, 10.0, 4.0, 1.0])
    gradient = torch.zeros(7, 7)
    gradient[3, 1:6] = profile  # a cross: the same profile along the row and the column
    gradient[1:6, 3] = profile
    erf = EffectiveRF(gradient, (3, 3), (7, 7))
    assert erf.support() == (1, 5, 1, 5)
    assert erf.support(threshold=0.2) == (2, 4, 2, 4)  # above 2 = 0.2 x the largest (10)
    assert erf.support(threshold=0.5) == (3, 3, 3, 3)

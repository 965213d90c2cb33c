"""segedu.core.sizes: the size arithmetic agrees with what PyTorch's layers actually do."""

import itertools
import math
import random

import pytest
import torch
from torch import nn

from segedu.core.sizes import (
    adaptive_pool_regions,
    atrous_taps_inside,
    conv_output_size,
    conv_transpose_output_size,
    effective_kernel_size,
    resnet_feature_size,
    stack_output_size,
)


def _torch_size(layer, n):
    try:
        out = layer(torch.zeros(1, 1, n, n)).shape[-1]
    except RuntimeError:
        return None
    return out if out > 0 else None


def _ours(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except ValueError:
        return None


@pytest.mark.parametrize("n", [1, 2, 5, 31, 64, 127])
def test_conv_output_size_matches_nn_conv2d_for_every_setting(n):
    for k, s, p, d in itertools.product([1, 2, 3, 4, 7], [1, 2, 3], [0, 1, 3], [1, 2, 6]):
        expected = _torch_size(nn.Conv2d(1, 1, k, s, p, d), n)
        assert _ours(conv_output_size, n, k, s, p, d) == expected, (n, k, s, p, d)


@pytest.mark.parametrize("n", [1, 2, 5, 31, 64, 127])
def test_conv_transpose_output_size_matches_nn_conv_transpose2d(n):
    for k, s, p, d in itertools.product([1, 2, 3, 4, 16], [1, 2, 3, 8], [0, 1, 4], [1, 2]):
        for op in range(max(s, d)):
            layer = nn.ConvTranspose2d(1, 1, k, s, p, op, dilation=d)
            got = _ours(conv_transpose_output_size, n, k, s, p, op, d)
            assert got == _torch_size(layer, n), (n, k, s, p, op, d)


@pytest.mark.parametrize("n", [1, 2, 5, 31, 64, 127])
def test_pooling_size_with_ceil_mode_matches_nn_maxpool2d(n):
    for k, s, p in itertools.product([1, 2, 3], [1, 2, 3], [0, 1]):
        if p > k // 2:
            continue  # PyTorch forbids padding above half the kernel
        for ceil in (False, True):
            expected = _torch_size(nn.MaxPool2d(k, s, p, ceil_mode=ceil), n)
            assert _ours(conv_output_size, n, k, s, p, ceil_mode=ceil) == expected


def test_fcn_upsampling_kernels_multiply_the_size_exactly():
    for n in (1, 3, 5, 64):
        assert conv_transpose_output_size(n, 4, 2, 1) == 2 * n
        assert conv_transpose_output_size(n, 16, 8, 4) == 8 * n
        assert conv_transpose_output_size(n, 64, 32, 16) == 32 * n


def test_stack_output_size_follows_a_vgg_block_stack():
    stack = [nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
             nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.MaxPool2d(2),
             nn.ConvTranspose2d(8, 8, 4, 2, 1)]
    for n in (127, 64, 9):
        expected = nn.Sequential(*stack)(torch.zeros(1, 3, n, n)).shape[-1]
        assert stack_output_size(n, stack) == expected


def test_size_errors_are_clear():
    with pytest.raises(ValueError, match="does not fit"):
        conv_output_size(4, 7)
    with pytest.raises(ValueError, match="positive integer"):
        conv_output_size(0, 3)
    with pytest.raises(ValueError, match="output_padding"):
        conv_transpose_output_size(4, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="does not know"):
        stack_output_size(8, [nn.Upsample(scale_factor=2)])


# --------------------------------------------------------------------------- dilation and bins


@pytest.mark.parametrize("k, d", [(1, 1), (3, 1), (3, 2), (3, 12), (5, 3)])
def test_effective_kernel_size_is_the_span_of_the_dilated_kernel(k, d):
    # A dilated kernel of span e, unpadded, shrinks a map by e - 1.
    conv = nn.Conv2d(1, 1, k, dilation=d)
    n = 40
    assert conv(torch.zeros(1, 1, n, n)).shape[-1] == n - (effective_kernel_size(k, d) - 1)


@pytest.mark.parametrize("size", [1, 4, 6, 7, 13, 60, 61])
@pytest.mark.parametrize("bins", [1, 2, 3, 6])
def test_adaptive_pool_regions_reproduce_adaptive_avg_pool(size, bins):
    x = torch.randn(1, 1, 1, size, generator=torch.Generator().manual_seed(size * 10 + bins))
    pooled = nn.AdaptiveAvgPool2d((1, bins))(x)[0, 0, 0]
    regions = adaptive_pool_regions(size, bins)
    assert len(regions) == bins
    by_hand = torch.stack([x[0, 0, 0, a:b].mean() for a, b in regions])
    torch.testing.assert_close(by_hand, pooled)


def test_adaptive_pool_regions_overlap_when_bins_do_not_divide():
    assert adaptive_pool_regions(60, 6) == [(10 * i, 10 * i + 10) for i in range(6)]
    assert adaptive_pool_regions(7, 3) == [(0, 3), (2, 5), (4, 7)]
    assert adaptive_pool_regions(4, 6) == [(0, 1), (0, 2), (1, 2), (2, 3), (2, 4), (3, 4)]
    with pytest.raises(ValueError, match="bins"):
        adaptive_pool_regions(7, 0)


@pytest.mark.parametrize("size", [5, 9, 33, 65])
@pytest.mark.parametrize("rate", [1, 6, 12, 18, 24, 36])
def test_atrous_taps_inside_counts_the_taps_that_see_the_map(size, rate):
    # Measure: a 3x3 dilated conv with weights = 1 on a map of ones; the centre output sums
    # the taps that land inside the map (padding is zero).
    conv = nn.Conv2d(1, 1, 3, padding=rate, dilation=rate, bias=False)
    nn.init.ones_(conv.weight)
    with torch.no_grad():
        out = conv(torch.ones(1, 1, size, size))
    c = (size - 1) // 2
    assert out[0, 0, c, c].item() == atrous_taps_inside(size, rate) ** 2


def test_size_arguments_must_be_positive_integers_named_in_the_message():
    for kwargs, name in [({"stride": 0}, "stride"), ({"dilation": 0}, "dilation"),
                         ({"kernel_size": 2.5}, "kernel_size"), ({"size": -1}, "size")]:
        args = {"size": 8, "kernel_size": 3, **kwargs}
        with pytest.raises(ValueError, match=rf"^{name} must be a positive integer, got"):
            conv_output_size(**args)
    assert conv_output_size(8.0, 3.0) == 6  # whole floats are fine (sizes computed elsewhere)


def test_conv_transpose_output_size_rejects_negative_output_padding_and_an_empty_output():
    with pytest.raises(ValueError, match=r"output_padding must be in \[0, max\(stride, dilation\)\)"
                                         r" = \[0, 2\), got -1"):
        conv_transpose_output_size(4, 3, stride=2, output_padding=-1)
    with pytest.raises(ValueError, match="padding 1 removes the whole output .* on 1 pixels"):
        conv_transpose_output_size(1, 1, padding=1)
    assert conv_transpose_output_size(1, 3, padding=1) == 1  # the smallest output is allowed


def test_ceil_mode_pooling_keeps_the_last_window_that_starts_inside_the_input():
    # 10 px, 3x3/2: floor gives 4 windows (starts 0, 2, 4, 6); ceil adds one starting at 8
    assert conv_output_size(10, 3, 2) == 4
    assert conv_output_size(10, 3, 2, ceil_mode=True) == 5
    # padding 1, in padded coordinates: 6 px, 3x3/2: the extra window starts at 6, inside the
    # input (which ends at 6); 5 px, 2x2/2: it would start at 6 = size + padding, in the right
    # padding only, so PyTorch drops it
    assert conv_output_size(6, 3, 2, padding=1, ceil_mode=True) == 4
    assert conv_output_size(5, 2, 2, padding=1, ceil_mode=True) == 3


def test_stack_output_size_reads_stride_padding_dilation_and_ceil_mode_of_each_layer():
    stack = [nn.Conv2d(3, 4, 3, stride=2, padding=1),            # 20 -> 10
             nn.MaxPool2d(3, stride=2, ceil_mode=True),            # 10 -> 5 (floor: 4)
             nn.Conv2d(4, 4, 3, padding=2, dilation=2),            # 5 -> 5
             nn.AvgPool2d(2),                                      # 5 -> 2 (stride = kernel)
             nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1),  # 2 -> 4
             nn.ConvTranspose2d(4, 4, 3, stride=3, padding=2, dilation=2)]        # 4 -> 10
    assert stack_output_size(20, stack) == 10
    assert nn.Sequential(*stack)(torch.zeros(1, 3, 20, 20)).shape[-1] == 10


def _random_layer(rng: random.Random) -> nn.Module:
    kind = rng.choice(["conv", "conv", "maxpool", "avgpool", "tconv", "keep"])
    k, s, d = rng.choice([1, 2, 3, 5]), rng.choice([1, 2, 3]), rng.choice([1, 1, 2, 3])
    if kind == "conv":
        return nn.Conv2d(1, 1, k, s, padding=rng.randint(0, 3), dilation=d)
    if kind == "maxpool":
        return nn.MaxPool2d(k, rng.choice([s, None]), padding=rng.randint(0, k // 2), dilation=d,
                            ceil_mode=rng.random() < 0.5)
    if kind == "avgpool":
        return nn.AvgPool2d(k, rng.choice([s, None]), padding=rng.randint(0, k // 2),
                            ceil_mode=rng.random() < 0.5)
    if kind == "tconv":
        return nn.ConvTranspose2d(1, 1, k, s, padding=rng.randint(0, 2),
                                  output_padding=rng.randrange(max(s, d)), dilation=d)
    return rng.choice([nn.ReLU(), nn.BatchNorm2d(1), nn.Dropout(), nn.Dropout2d(), nn.Identity()])


@pytest.mark.parametrize("seed", range(40))
def test_stack_output_size_matches_pytorch_on_random_strided_stacks(seed):
    rng = random.Random(seed)
    stack = [_random_layer(rng) for _ in range(rng.randint(1, 5))]
    n = rng.randint(6, 70)
    expected = _torch_size(nn.Sequential(*stack).eval(), n)
    assert _ours(stack_output_size, n, stack) == expected, (n, stack)


@pytest.mark.parametrize("output_stride", [4, 8, 16, 32])
def test_resnet_feature_size_matches_the_stem_and_strided_stages_for_odd_and_even_inputs(
        output_stride):
    # conv1 7x7/2 pad 3, maxpool 3x3/2 pad 1, then one 3x3/2 pad 1 conv per stride-2 stage
    stages = int(math.log2(output_stride // 4))
    net = nn.Sequential(nn.Conv2d(1, 1, 7, 2, 3), nn.MaxPool2d(3, 2, 1),
                        *[nn.Conv2d(1, 1, 3, 2, 1) for _ in range(stages)])
    for n in range(1, 80):
        assert resnet_feature_size(n, output_stride) == _torch_size(net, n), n


def test_resnet_feature_size_follows_deeplab_and_rejects_other_strides():
    assert [resnet_feature_size(513, s) for s in (4, 8, 16, 32)] == [129, 65, 33, 17]
    assert [resnet_feature_size(512, s) for s in (4, 8, 16, 32)] == [128, 64, 32, 16]
    with pytest.raises(ValueError, match="output_stride must be 4, 8, 16 or 32, got 12"):
        resnet_feature_size(513, 12)


def test_effective_kernel_size_of_a_3x3_kernel_at_rate_12_is_25_and_rates_start_at_1():
    assert effective_kernel_size(3, 12) == 25
    assert effective_kernel_size(3) == 3
    with pytest.raises(ValueError, match="dilation must be a positive integer"):
        effective_kernel_size(3, 0)


def test_adaptive_pool_regions_reject_bad_sizes_and_bins():
    with pytest.raises(ValueError, match="size must be a positive integer"):
        adaptive_pool_regions(0, 2)
    with pytest.raises(ValueError, match=r"bins must be a positive integer, got 1.5"):
        adaptive_pool_regions(6, 1.5)
    assert adaptive_pool_regions(6, 1) == [(0, 6)]


@pytest.mark.parametrize("kernel_size, rate", [(3, 1), (3, 2), (3, 5), (5, 1), (5, 3), (1, 4)])
def test_atrous_taps_inside_counts_the_taps_at_every_position(kernel_size, rate):
    # A 1-D dilated conv with weights 1 on a line of ones counts, at each position, its taps
    # that land on the line (padding is zero).
    size = 9
    conv = nn.Conv1d(1, 1, kernel_size, padding=rate * (kernel_size // 2), dilation=rate,
                     bias=False)
    nn.init.ones_(conv.weight)
    with torch.no_grad():
        counts = conv(torch.ones(1, 1, size))[0, 0].round().long().tolist()
    ours = [atrous_taps_inside(size, rate, kernel_size, position=p) for p in range(size)]
    assert ours == counts
    assert atrous_taps_inside(size, rate, kernel_size) == counts[(size - 1) // 2]


def test_atrous_taps_inside_rejects_a_position_outside_the_map():
    for position in (-1, 9):
        with pytest.raises(ValueError, match=rf"position must be inside the map \[0, 9\), "
                                             rf"got {position}"):
            atrous_taps_inside(9, 2, position=position)


# --------------------------------------------------------------------------- what mutation found

def test_conv_transpose_output_size_defaults_are_pytorchs():
    from segedu.core.sizes import conv_transpose_output_size

    layer = torch.nn.ConvTranspose2d(1, 1, 3)  # stride 1, padding 0
    assert conv_transpose_output_size(5, 3) == layer(torch.zeros(1, 1, 5, 5)).shape[-1] == 7


def test_an_even_kernel_reaches_one_tap_further_back_as_a_conv_padded_by_half_does():
    from segedu.core.sizes import atrous_taps_inside

    # Conv2d(k=4, padding=2): output o reads inputs o-2 .. o+1, so at position 0 only 0 and 1.
    assert atrous_taps_inside(9, 1, kernel_size=4, position=0) == 2
    assert atrous_taps_inside(9, 1, kernel_size=4, position=8) == 3

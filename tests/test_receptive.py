"""Size arithmetic agrees with what PyTorch's layers actually do."""

import itertools

import pytest
import torch
from torch import nn

from segedu.receptive import conv_output_size, conv_transpose_output_size, stack_output_size


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
    from segedu.receptive import effective_kernel_size

    # A dilated kernel of span e, unpadded, shrinks a map by e - 1.
    conv = nn.Conv2d(1, 1, k, dilation=d)
    n = 40
    assert conv(torch.zeros(1, 1, n, n)).shape[-1] == n - (effective_kernel_size(k, d) - 1)


@pytest.mark.parametrize("size", [1, 4, 6, 7, 13, 60, 61])
@pytest.mark.parametrize("bins", [1, 2, 3, 6])
def test_adaptive_pool_regions_reproduce_adaptive_avg_pool(size, bins):
    from segedu.receptive import adaptive_pool_regions

    x = torch.randn(1, 1, 1, size, generator=torch.Generator().manual_seed(size * 10 + bins))
    pooled = nn.AdaptiveAvgPool2d((1, bins))(x)[0, 0, 0]
    regions = adaptive_pool_regions(size, bins)
    assert len(regions) == bins
    by_hand = torch.stack([x[0, 0, 0, a:b].mean() for a, b in regions])
    torch.testing.assert_close(by_hand, pooled)


def test_adaptive_pool_regions_overlap_when_bins_do_not_divide():
    from segedu.receptive import adaptive_pool_regions

    assert adaptive_pool_regions(60, 6) == [(10 * i, 10 * i + 10) for i in range(6)]
    assert adaptive_pool_regions(7, 3) == [(0, 3), (2, 5), (4, 7)]
    assert adaptive_pool_regions(4, 6) == [(0, 1), (0, 2), (1, 2), (2, 3), (2, 4), (3, 4)]
    with pytest.raises(ValueError, match="bins"):
        adaptive_pool_regions(7, 0)


@pytest.mark.parametrize("size", [5, 9, 33, 65])
@pytest.mark.parametrize("rate", [1, 6, 12, 18, 24, 36])
def test_atrous_taps_inside_counts_the_taps_that_see_the_map(size, rate):
    from segedu.receptive import atrous_taps_inside

    # Measure: a 3x3 dilated conv with weights = 1 on a map of ones; the centre output sums
    # the taps that land inside the map (padding is zero).
    conv = nn.Conv2d(1, 1, 3, padding=rate, dilation=rate, bias=False)
    nn.init.ones_(conv.weight)
    with torch.no_grad():
        out = conv(torch.ones(1, 1, size, size))
    c = (size - 1) // 2
    assert out[0, 0, c, c].item() == atrous_taps_inside(size, rate) ** 2

"""Chapter 3: U-Net (paper and padded versions), size arithmetic, weight map, overlap-tile."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import segedu
from segedu import unet
from segedu.core.utils import count_parameters
from segedu.train import segmentation_loss, train_one_epoch

SMALL = {"base": 4, "batch_norm": True}


def _conv_layers(model):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


# --------------------------------------------------------------------------- paper facts


def test_paper_unet_has_31_030_658_parameters_and_23_conv_layers():
    model = unet.UNet(in_channels=1, num_classes=2, padding=False)
    assert count_parameters(model) == 31_030_658
    assert len(_conv_layers(model)) == 23
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(m.bias is not None for m in _conv_layers(model))


def test_paper_unet_maps_572_to_388_with_a_28_pixel_bottom():
    with torch.device("meta"):  # full width, no memory or compute spent
        model = unet.UNet(1, 2, padding=False)
        bottoms = []
        model.contracting[-1].register_forward_hook(lambda m, i, o: bottoms.append(o.shape))
        out = model(torch.empty(1, 1, 572, 572))["out"]
    assert out.shape == (1, 2, 388, 388)
    assert bottoms == [(1, 1024, 28, 28)]
    assert unet.unet_output_size(572) == 388


def test_valid_unet_real_forward_on_572_at_a_narrow_base():
    model = unet.UNet(1, 2, base=2, padding=False).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 572, 572))["out"].shape == (1, 2, 388, 388)


# --------------------------------------------------------------------------- sizes


def test_unet_output_size_agrees_with_the_network_for_every_valid_size_and_depth():
    for depth in (1, 2, 3):
        model = unet.UNet(1, 2, base=2, padding=False, depth=depth).eval()
        for size in unet.valid_input_sizes(1, 110, depth)[:4]:
            with torch.no_grad():
                out = model(torch.randn(1, 1, size, size + 2**depth))["out"]
            assert out.shape[-2:] == (unet.unet_output_size(size, depth),
                                      unet.unet_output_size(size + 2**depth, depth))


def test_valid_sizes_are_16_apart_and_the_smallest_is_188():
    sizes = unet.valid_input_sizes(1, 600)
    assert sizes[0] == 188 and unet.unet_output_size(188) == 4
    assert all(b - a == 16 for a, b in zip(sizes, sizes[1:], strict=False))
    assert 572 in sizes and 512 not in sizes


@pytest.mark.parametrize(("size", "expected"), [(500, (492, 508)), (572, (572, 572)),
                                                (512, (508, 524)), (100, (None, 188))])
def test_nearest_valid_sizes(size, expected):
    assert unet.nearest_valid_sizes(size) == expected


def test_invalid_size_error_names_the_nearest_valid_sizes():
    with pytest.raises(ValueError, match="use 492 or 508"):
        unet.unet_output_size(500)
    with pytest.raises(ValueError, match="too small.*smallest size that works is 188"):
        unet.unet_output_size(100)
    model = unet.UNet(1, 2, padding=False, base=2)
    with pytest.raises(ValueError, match="input is 572x500.*use 492 or 508"):
        model(torch.randn(1, 1, 572, 500))
    with pytest.raises(ValueError, match="positive int"):
        unet.unet_output_size(0)
    with pytest.raises(ValueError, match="depth"):
        unet.unet_output_size(572, depth=0)


# --------------------------------------------------------------------------- padded U-Net


@pytest.mark.parametrize("up", ["transpose", "bilinear"])
@pytest.mark.parametrize("size", [(64, 64), (127, 127), (100, 151), (1, 1), (33, 17)])
def test_padded_unet_output_matches_input_size_for_odd_sizes(up, size):
    model = unet.UNet(3, 5, padding=True, up=up, **SMALL).eval()
    out = model(torch.randn(2, 3, *size))
    assert list(out) == ["out"]
    assert out["out"].shape == (2, 5, *size)


def test_bilinear_up_halves_channels_with_a_1x1_conv():
    block = unet.UpBlock(16, 8, up="bilinear")
    assert isinstance(block.up.conv, nn.Conv2d) and block.up.conv.kernel_size == (1, 1)
    assert block.up.conv.out_channels == 8 and block.conv.conv1.in_channels == 16
    with pytest.raises(ValueError, match="transpose"):
        unet.UpBlock(16, 8, up="nearest")


def test_zoo_builds_unet_with_width_and_batch_norm():
    assert "unet" in segedu.list_models()
    model = segedu.build_model("unet", 3, width=0.125, batch_norm=True).eval()
    assert model.base == 8 and model.in_channels == 3 and model.num_classes == 3
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model(torch.randn(1, 3, 40, 50))["out"].shape == (1, 3, 40, 50)
    # BatchNorm makes the conv bias redundant: it is dropped
    assert all(m.bias is None for m in model.modules()
               if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))


def test_unet_trains_a_step_with_batch_size_one_every_weight_getting_a_gradient():
    model = unet.UNet(1, 2, **SMALL).train()
    out = model(torch.randn(1, 1, 36, 44))["out"]
    F.cross_entropy(out, torch.randint(0, 2, (1, 36, 44))).backward()
    for name, p in model.named_parameters():
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_unet_rejects_bad_input_clearly():
    model = unet.UNet(1, 2, **SMALL)
    with pytest.raises(ValueError, match="1 channels"):
        model(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="unsqueeze"):
        model(torch.randn(1, 64, 64))
    with pytest.raises(ValueError, match="floating-point"):
        model(torch.zeros(1, 1, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="num_classes"):
        unet.UNet(1, 0)


# --------------------------------------------------------------------------- crop and concat


def test_crop_and_concat_takes_the_centre_and_puts_the_skip_first():
    skip = torch.arange(2 * 9 * 10, dtype=torch.float32).reshape(1, 2, 9, 10)
    x = torch.zeros(1, 3, 4, 5)
    out = unet.crop_and_concat(skip, x)
    assert out.shape == (1, 5, 4, 5)
    # height 9 -> 4: top = (9 - 4) // 2 = 2; width 10 -> 5: left = 2 (odd differences round down)
    torch.testing.assert_close(out[:, :2], skip[..., 2:6, 2:7])
    assert out[:, 2:].abs().sum() == 0
    with pytest.raises(ValueError, match="at least as large"):
        unet.crop_and_concat(x, skip)


def test_paper_crop_sizes_match_figure_1():
    # the skip of the top level is 568x568 and the upsampled map 392x392: crop 88 per side
    with torch.device("meta"):
        model = unet.UNet(1, 2, padding=False)
        shapes = []
        model.expansive[-1].register_forward_pre_hook(
            lambda m, args: shapes.append((args[0].shape[-1], args[1].shape[-1])))
        model(torch.empty(1, 1, 572, 572))
    assert shapes == [(196, 568)]  # 196 upsampled to 392, the 568 skip cropped to it


# --------------------------------------------------------------------------- weight map


def _two_cells(gap: int, size: int = 40) -> torch.Tensor:
    ids = torch.zeros(size, size, dtype=torch.long)
    ids[10:30, 5:15] = 1
    ids[10:30, 15 + gap - 1: 25 + gap] = 2  # columns 5..14 and 14+gap..
    return ids


@pytest.mark.parametrize("gap", [2, 4, 6])
def test_weight_map_border_term_at_the_gap_centre(gap):
    ids = _two_cells(gap)
    w = unet.weight_map(ids, w0=10.0, sigma=5.0)
    # pixel centres of the cells' edges are `gap` apart; a gap pixel at distance a from cell 1
    # and gap - a from cell 2 has d1 + d2 = gap
    cell = (ids > 0).float().mean().item()
    w_background = 1 / (2 * (1 - cell))
    row, col = 20, 15  # the first gap pixel: d1 = 1, d2 = gap - 1
    expected = w_background + 10 * math.exp(-(gap**2) / (2 * 5.0**2))
    assert w[row, col].item() == pytest.approx(expected, rel=1e-5)
    # cells get the class-balance weight only
    assert w[20, 8].item() == pytest.approx(1 / (2 * cell), rel=1e-5)


def test_weight_map_with_one_cell_or_none_is_class_balance_only():
    one = torch.zeros(10, 10, dtype=torch.long)
    one[2:5, 2:5] = 1
    w = unet.weight_map(one)
    assert w.unique().tolist() == pytest.approx([100 / 182, 100 / 18])
    torch.testing.assert_close(unet.weight_map(torch.zeros(6, 7, dtype=torch.long)),
                               torch.ones(6, 7))


def test_weight_map_is_largest_in_narrow_gaps():
    narrow, wide = unet.weight_map(_two_cells(2)), unet.weight_map(_two_cells(8))
    assert narrow[20, 15] > wide[20, 15 + 3] > 1
    assert narrow.dtype == torch.float32


def test_weight_map_rejects_bad_masks():
    with pytest.raises(ValueError, match="integer"):
        unet.weight_map(torch.zeros(5, 5))
    with pytest.raises(ValueError, match="H, W"):
        unet.weight_map(torch.zeros(1, 5, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=">= 0"):
        unet.weight_map(torch.full((5, 5), -1))


# --------------------------------------------------------------------------- overlap-tile


@pytest.mark.parametrize(("height", "width"), [(36, 52), (28, 68)])
def test_overlap_tile_equals_one_pass_over_the_mirrored_image(height, width):
    # depth 2: tile 60 -> output 20, border 20, step 20 (already a multiple of 4). The image
    # sizes are not multiples of the step, and (size + 40) is a valid input for one pass.
    torch.manual_seed(0)
    model = unet.UNet(1, 3, base=4, padding=False, depth=2, batch_norm=True).eval()
    with torch.no_grad():  # give BatchNorm non-trivial statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    image = torch.randn(2, 1, height, width)
    tiled = unet.overlap_tile_predict(model, image, tile=60)
    border = (60 - unet.unet_output_size(60, 2)) // 2
    whole = F.pad(image, (border,) * 4, mode="reflect")
    with torch.no_grad():
        once = model(whole)["out"]
    assert tiled.shape == once.shape == (2, 3, height, width)
    torch.testing.assert_close(tiled, once, rtol=1e-4, atol=1e-5)


def test_overlap_tile_step_is_rounded_to_the_pooling_grid():
    # tile 572 -> out 388; 388 is not a multiple of 16, so tiles step 384 pixels
    model = unet.UNet(1, 2, base=1, padding=False).eval()
    calls = []
    model.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[-1]))
    out = unet.overlap_tile_predict(model, torch.randn(1, 1, 30, 400), tile=572)
    assert out.shape == (1, 2, 30, 400)
    assert calls == [572, 572]  # columns 0 and 384; the 30 rows fit one tile


def test_overlap_tile_rejects_padded_models_and_bad_tiles():
    with pytest.raises(ValueError, match="padding=False"):
        unet.overlap_tile_predict(unet.UNet(1, 2, base=2), torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match="use 492 or 508"):
        unet.overlap_tile_predict(unet.UNet(1, 2, base=2, padding=False),
                                  torch.randn(1, 1, 8, 8), tile=500)


# --------------------------------------------------------------------------- weighted loss


def test_segmentation_loss_with_pixel_weights():
    logits = torch.randn(2, 3, 5, 6)
    target = torch.randint(0, 3, (2, 5, 6))
    ones = segmentation_loss({"out": logits}, target, pixel_weight=torch.ones(2, 5, 6))
    torch.testing.assert_close(ones, F.cross_entropy(logits, target))
    weight = torch.rand(2, 5, 6)
    target[0, 0, 0] = 255  # ignored pixels count neither in the sum nor in the mean
    per_pixel = F.cross_entropy(logits, target, ignore_index=255, reduction="none")
    expected = (per_pixel * weight).sum() / 59
    torch.testing.assert_close(segmentation_loss({"out": logits}, target, pixel_weight=weight),
                               expected)
    with pytest.raises(ValueError, match="target's shape"):
        segmentation_loss({"out": logits}, target, pixel_weight=torch.ones(5, 6))


def test_train_one_epoch_accepts_batches_with_weight_maps():
    model = unet.UNet(1, 2, **SMALL)
    images, targets = torch.randn(4, 1, 16, 16), torch.randint(0, 2, (4, 16, 16))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    plain = train_one_epoch(model, [(images, targets)], optimizer)
    doubled = train_one_epoch(model, [(images, targets, torch.full((4, 16, 16), 2.0))],
                              optimizer)
    assert doubled == pytest.approx(2 * plain, rel=1e-4)


def test_separated_cells_counts_a_merged_pair_once():
    ids = _two_cells(2)
    assert unet.separated_cells((ids > 0).long(), ids) == (2, 2)
    merged = (ids > 0).long()
    merged[10:30, 15] = 1  # the gap filled in: one blob covering both cells
    assert unet.separated_cells(merged, ids) == (0, 2)  # IoU of each cell with it is ~0.5
    assert unet.separated_cells(torch.zeros_like(ids), ids) == (0, 2)


def test_unet_loss_rejects_masks_with_invalid_values():
    model = unet.UNet(1, 2, **SMALL).eval()
    outputs = model(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match="outside the 2 classes"):
        segmentation_loss(outputs, torch.full((1, 16, 16), 2))
    with pytest.raises(ValueError, match="positive int"):
        unet.nearest_valid_sizes(-3)

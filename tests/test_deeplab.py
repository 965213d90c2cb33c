"""Chapter 5: atrous convolution, DeepLab v1/v2/v3/v3+ and torchvision's deeplabv3_resnet50."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from segedu import deeplab
from segedu.core.sizes import atrous_taps_inside, effective_kernel_size
from segedu.core.utils import count_parameters

SMALL = {"width": 0.125}


def _conv_rates(layer):
    return [block.conv2.dilation[0] for block in layer]


# -------------------------------------------------------------------- atrous convolution


@pytest.mark.parametrize("rate", [1, 2, 3, 6])
def test_dilated_conv_equals_conv_with_the_sparse_dilated_kernel(rate):
    weight, x = torch.randn(4, 3, 3, 3), torch.randn(2, 3, 29, 23)
    sparse = deeplab.dilate_kernel(weight, rate)
    assert sparse.shape[-1] == effective_kernel_size(3, rate) == 2 * rate + 1
    assert int((sparse != 0).sum()) == int((weight != 0).sum())  # 9 taps, zeros in between
    dilated = F.conv2d(x, weight, dilation=rate, padding=rate)
    torch.testing.assert_close(F.conv2d(x, sparse, padding=rate), dilated)


def test_dilate_kernel_rejects_what_is_not_a_conv_weight():
    with pytest.raises(ValueError, match="conv weight"):
        deeplab.dilate_kernel(torch.randn(3, 3), 2)
    with pytest.raises(ValueError, match="positive integer"):
        deeplab.dilate_kernel(torch.randn(1, 1, 3, 3), 0)


@pytest.mark.parametrize("rates", [(1, 1, 1), (1, 2, 4), (2, 4, 8)])
def test_receptive_field_of_stacked_3x3_convs_is_one_plus_twice_the_sum_of_rates(rates):
    convs = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=r, dilation=r, bias=False)
                            for r in rates])
    for conv in convs:
        nn.init.constant_(conv.weight, 1.0)
    x = torch.zeros(1, 1, 41, 41, requires_grad=True)
    convs(x)[0, 0, 20, 20].backward()             # which inputs reach the centre output?
    seen = (x.grad[0, 0] != 0).nonzero()
    extent = int(seen[:, 0].max() - seen[:, 0].min()) + 1
    assert extent == 1 + 2 * sum(rates)


# -------------------------------------------------------------------- v1 and v2


def test_deeplabv1_is_vgg16_at_output_stride_8_with_the_largefov_head():
    with torch.device("meta"):
        model = deeplab.deeplabv1(21)
        features = model.backbone.forward_features(torch.empty(1, 3, 513, 321))
    assert tuple(features["pool5"].shape[-2:]) == (65, 41)  # ceil(n / 8): no row is lost
    fc6 = model.classifier.fc6
    assert (fc6.kernel_size, fc6.dilation, fc6.out_channels) == ((3, 3), (12, 12), 1024)
    conv5 = [m for m in list(model.backbone.features)[24:] if isinstance(m, nn.Conv2d)]
    assert [m.dilation[0] for m in conv5] == [2, 2, 2]
    # v1 Table 2: DeepLab-LargeFOV has 20.5M parameters.
    assert round(count_parameters(model) / 1e6, 1) == 20.5
    with torch.device("meta"):  # pools carry no weights: ImageNet VGG16 still loads
        vgg = torchvision.models.vgg16()
    assert list(model.backbone.features.state_dict()) == list(vgg.features.state_dict())


def test_deeplabv2_sums_four_atrous_branches_into_class_scores():
    model = deeplab.deeplabv2(5, **SMALL).eval()
    head = model.classifier
    assert head.rates == (6, 12, 18, 24)
    assert [b.out_channels for b in head.branches] == [5] * 4
    assert _conv_rates(model.backbone.layer4) == [2, 4, 4]  # output stride 8
    x = torch.randn(2, head.branches[0].in_channels, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(head(x), sum(b(x) for b in head.branches))


# -------------------------------------------------------------------- v3: ASPP


def test_aspp_matches_torchvision_structure_state_dict_and_outputs():
    from torchvision.models.segmentation.deeplabv3 import ASPP as TorchvisionASPP

    theirs = TorchvisionASPP(16, [2, 4, 6], out_channels=8).eval()
    ours = deeplab.ASPP(16, [2, 4, 6], out_channels=8).eval()   # the same call
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()}
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 16, 13, 7)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)
    assert ours.project[0].in_channels == 5 * 8  # 1x1 + three atrous + image pooling


def test_aspp_takes_torchvisions_signature_with_its_default_width():
    aspp = deeplab.ASPP(in_channels=16, atrous_rates=(6, 12, 18))
    assert aspp.rates == (6, 12, 18)
    assert aspp.project[0].out_channels == 256


@pytest.mark.parametrize("rates", [8, (), (6, 0, 18), (6.0, 12, 18), "6,12,18"])
def test_aspp_rejects_rates_that_are_not_positive_ints_clearly(rates):
    with pytest.raises(ValueError, match=r"atrous_rates must be .*ASPP\(in_channels, atrous_rates"):
        deeplab.ASPP(16, rates, 8)


def test_aspp_rejects_a_width_that_is_not_a_positive_int_clearly():
    with pytest.raises(ValueError, match="out_channels must be a positive int"):
        deeplab.ASPP(16, (6, 12, 18), (8,))


def test_aspp_rates_follow_the_output_stride():
    assert deeplab.aspp_rates(16) == (6, 12, 18)
    assert deeplab.aspp_rates(8) == (12, 24, 36)
    with pytest.raises(ValueError, match="8 or 16"):
        deeplab.aspp_rates(32)
    with pytest.raises(ValueError, match="8 or 16"):
        deeplab.deeplabv3(3, output_stride=4, **SMALL)


@pytest.mark.parametrize("output_stride, size", [(16, 33), (8, 65)])
def test_deeplabv3_output_stride_sets_the_map_size_and_the_rates(output_stride, size):
    with torch.device("meta"):
        model = deeplab.deeplabv3(21, output_stride=output_stride)
        features = model.backbone.forward_features(torch.empty(1, 3, 513, 513))
    assert features["layer4"].shape[-1] == size
    assert model.classifier[0].rates == deeplab.aspp_rates(output_stride)
    assert model.output_stride == output_stride


@pytest.mark.parametrize("output_stride, grid, rates", [
    (16, (1, 2, 4), [2, 4, 8]),      # v3 Sec. 3.2: "rates = 2 * (1, 2, 4) = (2, 4, 8)"
    (8, (1, 2, 4), [4, 8, 16]),
    (16, None, [1, 2, 2]),           # torchvision's dilation: the first block keeps rate 1
    (8, None, [2, 4, 4]),
])
def test_multi_grid_sets_layer4_rates_to_unit_rates_times_the_layer_rate(output_stride, grid,
                                                                          rates):
    model = deeplab.deeplabv3(3, output_stride=output_stride, multi_grid=grid,
                              backbone="resnet50", **SMALL)
    assert _conv_rates(model.backbone.layer4) == rates
    assert [b.conv2.padding[0] for b in model.backbone.layer4] == rates  # sizes kept


def test_multi_grid_needs_one_unit_rate_per_block():
    with pytest.raises(ValueError, match="one unit rate per block"):
        deeplab.deeplabv3(3, multi_grid=(1, 2), **SMALL)


def test_image_pooling_trains_with_batch_size_one_on_running_statistics():
    from torchvision.models.segmentation.deeplabv3 import ASPPPooling as TorchvisionPooling

    x = torch.randn(1, 8, 5, 7)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        TorchvisionPooling(8, 4).train()(x)  # the problem, in torchvision
    pooling = deeplab.ASPPPooling(8, 4)
    with torch.no_grad():
        pooling.bn.running_mean.uniform_(-1, 1)
        pooling.bn.running_var.uniform_(0.5, 2)
    before = pooling.bn.running_mean.clone()
    out = pooling.train()(x)
    assert out.shape == (1, 4, 5, 7)
    torch.testing.assert_close(pooling.bn.running_mean, before)  # not updated from one value
    with torch.no_grad():
        torch.testing.assert_close(out, pooling.eval()(x))      # = eval-mode normalisation
    out.sum().backward()
    assert pooling.bn.weight.grad is not None and pooling.conv.weight.grad.abs().sum() > 0
    pooling.train()(torch.randn(2, 8, 5, 7))                    # batch 2: batch statistics
    assert not torch.equal(pooling.bn.running_mean, before)


# -------------------------------------------------------------------- torchvision parity


def test_deeplabv3_resnet50_pretrained_loads_through_chapter_1s_loader(monkeypatch):
    import torchvision.models as tvm

    trained = deeplab.deeplabv3_resnet50(21, aux=True).state_dict()
    monkeypatch.setattr(tvm.WeightsEnum, "get_state_dict",
                        lambda self, progress=True, check_hash=False: trained)
    model = deeplab.deeplabv3_resnet50(21, pretrained=True)
    torch.testing.assert_close(model.classifier[4].weight, trained["classifier.4.weight"])


def test_deeplabv3plus_on_xception65_reads_its_stride_4_map_and_has_no_imagenet_weights():
    with torch.device("meta"):
        full = deeplab.deeplabv3plus(21, backbone="xception65", output_stride=16)
    assert count_parameters(full) == 54_711_461  # backbone 37,867,312 without its classifier
    model = deeplab.deeplabv3plus(3, backbone="xception65", output_stride=8, width=0.125,
                                  aux=True).eval()
    assert model.low_level_layer == "low_level" and model.aux_layer == "middle_flow"
    with torch.no_grad():
        out = model(torch.randn(1, 3, 67, 45))
    assert out["out"].shape == out["aux"].shape == (1, 3, 67, 45)
    with pytest.raises(ValueError, match="ImageNet"):
        deeplab.deeplabv3plus(3, backbone="xception65", width=0.125, pretrained_backbone=True)


# -------------------------------------------------------------------- v3+


def test_deeplabv3plus_decoder_meets_the_low_level_map_at_its_exact_size():
    model = deeplab.deeplabv3plus(3, backbone="resnet50", **SMALL).eval()
    seen = {}
    model.classifier.decoder.register_forward_hook(
        lambda module, inputs, output: seen.update(high=inputs[0], low=inputs[1], out=output))
    with torch.no_grad():
        out = model(torch.randn(1, 3, 67, 45))["out"]
    assert out.shape == (1, 3, 67, 45)
    assert tuple(seen["high"].shape[-2:]) == (5, 3)     # stride 16
    assert tuple(seen["low"].shape[-2:]) == (17, 12)    # stride 4: not 4 * (5, 3)
    assert tuple(seen["out"].shape[-2:]) == (17, 12)


def test_deeplabv3plus_has_the_papers_decoder_channels():
    with torch.device("meta"):
        model = deeplab.deeplabv3plus(21)
    decoder = model.classifier.decoder
    assert decoder.project[0].out_channels == 48
    assert decoder.fuse[0].in_channels == 256 + 48
    convs = [m for m in decoder.fuse if isinstance(m, nn.Conv2d)]
    assert [(m.kernel_size, m.out_channels) for m in convs] == [((3, 3), 256)] * 2
    assert model.low_level_layer == "layer1"


def test_deeplabv3_from_backbone_builds_v3_and_v3plus_on_another_backbone():
    from segedu.backbones import VGG16

    vgg = VGG16(width=0.125, batch_norm=True, include_top=False)
    model = deeplab.deeplabv3_from_backbone(vgg, 4, output_stride=16, out_layer="pool4",
                                            aux_layer="pool3", low_level_layer="pool2",
                                            rates=(1, 2, 3), channels=8, low_level_out=4).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 80))
    assert out["out"].shape == out["aux"].shape == (2, 4, 64, 80)
    assert model.classifier.aspp.rates == (1, 2, 3)


def test_deeplab_rejects_inputs_below_twice_the_output_stride():
    model = deeplab.deeplabv3(3, backbone="resnet50", **SMALL).eval()
    with pytest.raises(ValueError, match="at least 32x32"):
        model(torch.randn(1, 3, 31, 64))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32))["out"].shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="backbone must be one of"):
        deeplab.deeplabv3(3, backbone="resnet18")


def test_a_large_rate_on_a_small_map_degenerates_to_its_centre_tap():
    conv = deeplab.ASPPConv(4, 2, dilation=24).eval()
    centre_only = nn.Conv2d(4, 2, 1, bias=False)
    with torch.no_grad():
        centre_only.weight.copy_(conv[0].weight[:, :, 1:2, 1:2])
        x = torch.randn(1, 4, 17, 17)                # 17 <= 24: all 8 outer taps in the padding
        torch.testing.assert_close(conv(x), conv[2](conv[1](centre_only(x))))
    assert atrous_taps_inside(17, 24) == 1


# ONNX export (onnxruntime agrees) and torch.compile of every DeepLab in the zoo: tests/test_zoo.py.


# -------------------------------------------------------------------- dense CRF


def _two_regions(seed):
    g = torch.Generator().manual_seed(seed)
    truth = torch.zeros(24, 24, dtype=torch.long)
    truth[:, 11:] = 1
    image = torch.where(truth.bool(), 200.0, 50.0).expand(3, 24, 24) + 5 * torch.randn(
        3, 24, 24, generator=g)
    onehot = F.one_hot(truth, 2).permute(2, 0, 1).float()
    logits = 0.6 * (2 * onehot - 1) + torch.randn(2, 24, 24, generator=g)  # noisy scores
    return logits, image, truth


def test_dense_crf_cleans_noisy_scores_inside_regions_of_one_colour():
    logits, image, truth = _two_regions(seed=0)
    before = (logits.argmax(0) == truth).float().mean()
    q = deeplab.dense_crf(logits, image)
    after = (q.argmax(0) == truth).float().mean()
    assert before < 0.9 and after > 0.98
    torch.testing.assert_close(q.sum(0), torch.ones(24, 24))  # marginals


def test_dense_crf_without_pairwise_terms_is_the_softmax_of_the_scores():
    logits, image, _ = _two_regions(seed=1)
    q = deeplab.dense_crf(logits, image, bilateral_weight=0.0, gaussian_weight=0.0)
    torch.testing.assert_close(q, logits.softmax(0))


def test_dense_crf_refuses_images_too_large_for_dense_kernels():
    with pytest.raises(ValueError, match="max_pixels"):
        deeplab.dense_crf(torch.randn(2, 65, 64), torch.rand(3, 65, 64))
    with pytest.raises(ValueError, match=r"\(3, 8, 8\)"):
        deeplab.dense_crf(torch.randn(2, 8, 8), torch.rand(3, 8, 9))

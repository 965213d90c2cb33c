"""Chapter 2: SegNet — max-pooling indices, max-unpooling, the encoder-decoder network."""

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from contract import assert_logits_at_input_size, assert_rejects_bad_images
from torch import nn

import segedu
from segedu import segnet
from segedu.core.utils import count_parameters
from segedu.core.weights import WeightsUnavailableError

SMALL = {"width": 0.125}

# (in, out) channels of the reference decoder's 3x3 convs, conv5_3_D ... conv1_2_D
# (segnet_train.prototxt); conv1_1_D (64 -> classes) is the classifier.
REFERENCE_DECODER = [(512, 512)] * 3 + [(512, 512), (512, 512), (512, 256)] + \
    [(256, 256), (256, 256), (256, 128)] + [(128, 128), (128, 64)] + [(64, 64)]


def test_segnet_has_the_papers_29_5m_parameters_for_11_classes():
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = segnet.segnet(11)
        vgg16_bn = torchvision.models.vgg16_bn(weights=None)
    total = count_parameters(model)
    encoder = count_parameters(vgg16_bn.features)             # torchvision's, BN included
    decoder = sum(9 * i * o + o + 2 * o for i, o in REFERENCE_DECODER)  # conv + bias + BN
    classifier = 9 * 64 * 11 + 11
    assert count_parameters(model.encoder) == encoder == 14_723_136
    assert total == encoder + decoder + classifier == 29_449_355
    assert abs(total - 29.5e6) < 0.1e6  # the paper: "29.5M" (29,449,355 rounded)


def test_segnet_encoder_is_vgg16s_13_convs_and_the_decoder_mirrors_them():
    model = segnet.SegNet(11, **SMALL)
    encoder_convs = [m for m in model.encoder.modules() if isinstance(m, nn.Conv2d)]
    decoder_convs = [m for s in range(5, 0, -1) for m in getattr(model, f"decoder{s}").modules()
                     if isinstance(m, nn.Conv2d)] + [model.classifier]
    assert len(encoder_convs) == len(decoder_convs) == 13
    assert not hasattr(model.encoder, "classifier")  # no fc6/fc7/fc8
    names = [n for n, m in model.decoder4.named_children() if isinstance(m, nn.Conv2d)]
    assert names == ["conv4_3_D", "conv4_2_D", "conv4_1_D"]
    assert [n for n, _ in model.decoder1.named_children()][0] == "conv1_2_D"
    assert model.classifier.kernel_size == (3, 3)  # the reference's conv1_1_D


def test_segnet_encoder_loads_torchvision_vgg16_bn_features_strictly_and_gives_equal_outputs():
    theirs = torchvision.models.vgg16_bn(weights=None).features.eval()
    ours = segnet.segnet(5).eval()
    ours.encoder.features.load_state_dict(theirs.state_dict(), strict=True)
    with torch.no_grad():
        for module in theirs.modules():  # make it non-trivial: BN statistics that are not 0/1
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
        ours.encoder.features.load_state_dict(theirs.state_dict(), strict=True)
        x = torch.randn(1, 3, 64, 96)  # multiples of 32: rounding up or down agree
        torch.testing.assert_close(ours.forward_intermediates(x)["pool5"], theirs(x),
                                   rtol=0, atol=0)
        # Odd sizes: the only difference is that SegNet's pools round up (Caffe), so
        # torchvision's network with ceil_mode pools gives the same pool5.
        for module in theirs.modules():
            if isinstance(module, nn.MaxPool2d):
                module.ceil_mode = True
        x = torch.randn(1, 3, 45, 70)
        torch.testing.assert_close(ours.forward_intermediates(x)["pool5"], theirs(x),
                                   rtol=0, atol=0)


@pytest.mark.parametrize("size", [(32, 32), (64, 64), (127, 127), (100, 151), (33, 200),
                                  (1, 1), (17, 5)])
def test_segnet_output_matches_input_size_for_odd_sizes(size):
    assert_logits_at_input_size(segnet.SegNet(5, **SMALL).eval(), size, 5)


def test_full_width_segnet_runs_on_an_odd_size():
    assert_logits_at_input_size(segnet.segnet(11).eval(), (45, 70), 11, batch=1)


def test_segnet_pools_round_up_so_odd_maps_keep_their_last_row():
    model = segnet.SegNet(3, **SMALL).eval()
    with torch.no_grad():
        inter = model.forward_intermediates(torch.randn(1, 3, 127, 45))
    assert [tuple(inter[f"pool{i}"].shape[-2:]) for i in range(1, 6)] == \
        [(64, 23), (32, 12), (16, 6), (8, 3), (4, 2)]
    # The last row of the 127-row map has its own windows, so its maxima reach the decoder.
    assert inter["unpool1"].shape[-2:] == (127, 45)
    assert inter["unpool1"][..., 126, :].ne(0).any()


@pytest.mark.parametrize("ceil_mode", [True, False])
@pytest.mark.parametrize("shape", [(1, 1, 4, 4), (2, 3, 7, 9), (1, 4, 127, 33), (2, 2, 1, 5)])
def test_max_pool_with_indices_equals_torch_max_pool2d(shape, ceil_mode):
    if not ceil_mode and min(shape[-2:]) < 2:
        with pytest.raises(ValueError, match="at least 2x2"):
            segnet.max_pool_with_indices(torch.randn(*shape), ceil_mode=False)
        return
    x = torch.randn(*shape)
    values, indices = segnet.max_pool_with_indices(x, ceil_mode=ceil_mode)
    ref_values, ref_indices = F.max_pool2d(x, 2, 2, ceil_mode=ceil_mode, return_indices=True)
    torch.testing.assert_close(values, ref_values, rtol=0, atol=0)
    assert indices.dtype == torch.int64
    assert torch.equal(indices, ref_indices)


def test_max_pool_with_indices_breaks_ties_like_pytorch():
    x = torch.tensor([[[[1.0, 1.0, 0.0, 2.0], [1.0, 0.0, 2.0, 2.0]]]])  # ties in both windows
    assert torch.equal(segnet.max_pool_with_indices(x)[1],
                       F.max_pool2d(x, 2, 2, return_indices=True)[1])


@pytest.mark.parametrize("shape", [(1, 1, 4, 4), (2, 3, 7, 9), (1, 4, 127, 33), (2, 5, 1, 1)])
def test_max_unpool_equals_torch_max_unpool2d_for_odd_sizes(shape):
    x = torch.randn(*shape)
    pooled, indices = F.max_pool2d(x, 2, 2, ceil_mode=True, return_indices=True)
    ours = segnet.max_unpool(pooled, indices, x.shape[-2:])
    theirs = F.max_unpool2d(pooled, indices, 2, 2, output_size=x.shape[-2:])
    assert ours.shape == x.shape
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    # Every maximum is back where it was; everything else is zero.
    back = ours != 0
    assert back.sum() == pooled.numel() and torch.equal(ours[back], x[back])


def test_max_unpool_passes_gradients_to_the_pooled_values_only():
    pooled = torch.randn(1, 2, 3, 3, requires_grad=True)
    _, indices = F.max_pool2d(torch.randn(1, 2, 6, 6), 2, 2, return_indices=True)
    segnet.max_unpool(pooled, indices, (6, 6)).sum().backward()
    torch.testing.assert_close(pooled.grad, torch.ones_like(pooled))


def test_unpooled_map_is_sparse_until_the_decoder_convs_densify_it():
    model = segnet.SegNet(3, **SMALL).eval()
    with torch.no_grad():
        inter = model.forward_intermediates(torch.randn(2, 3, 64, 64))
    for stage in range(1, 6):
        # stage 5 unpools pool5; every other stage unpools the output of the stage above
        sparse, idx = inter[f"unpool{stage}"], inter[f"indices{stage}"]
        coarse = inter["pool5"] if stage == 5 else inter[f"decoder{stage + 1}"]
        assert (sparse != 0).sum() <= coarse.numel() == sparse.numel() // 4
        assert torch.equal(sparse.flatten(2).gather(2, idx.flatten(2)), coarse.flatten(2))
    dense = inter["decoder1"]
    assert (dense != 0).float().mean() > (inter["unpool1"] != 0).float().mean()
    with torch.no_grad():  # forward_intermediates and forward compute the same network
        x = torch.randn(1, 3, 50, 40)
        torch.testing.assert_close(model.forward_intermediates(x)["out"], model(x)["out"])


def test_upsampling_memory_counts_the_bytes_of_the_real_tensors():
    model = segnet.SegNet(3, **SMALL).eval()
    with torch.no_grad():
        inter = model.forward_intermediates(torch.randn(2, 3, 100, 75))
    pre_pool = [inter[f"unpool{s}"].shape for s in range(1, 6)]  # unpooled = pre-pool size
    memory = segnet.upsampling_memory(pre_pool)
    indices = [inter[f"indices{s}"] for s in range(1, 6)]
    assert memory["indices_int64"] == sum(i.numel() * i.element_size() for i in indices)
    assert memory["feature_maps"] == sum(inter[f"unpool{s}"].numel() * 4 for s in range(1, 6))
    assert memory["indices_2bit"] == sum(math.ceil(i.numel() / 4) for i in indices)
    # 2x2 windows of an even map: 4 float32 (16 bytes) vs one int64 (8) vs 2 bits.
    even = segnet.upsampling_memory([(1, 64, 224, 224)])
    assert even["feature_maps"] == 2 * even["indices_int64"] == 64 * even["indices_2bit"]


def test_segnet_trains_a_step_with_batch_size_one():
    model = segnet.SegNet(3, **SMALL).train()
    out = model(torch.randn(1, 3, 40, 56))["out"]
    F.cross_entropy(out, torch.randint(0, 3, (1, 40, 56))).backward()
    assert model.encoder.features[0].weight.grad.abs().sum() > 0
    assert model.decoder5.conv5_3_D.weight.grad.abs().sum() > 0


def test_segnet_rejects_bad_input_clearly():
    model = segnet.SegNet(3, **SMALL)
    assert_rejects_bad_images(model)
    with pytest.raises(ValueError, match="num_classes"):
        segnet.SegNet(0)
    pooled, indices = F.max_pool2d(torch.randn(1, 2, 7, 7), 2, 2, ceil_mode=True,
                                   return_indices=True)
    with pytest.raises(ValueError, match="int64"):
        segnet.max_unpool(pooled, indices.int(), (7, 7))
    with pytest.raises(ValueError, match="shape of x"):
        segnet.max_unpool(pooled, indices[..., :2], (7, 7))
    with pytest.raises(ValueError, match="before the pool"):
        segnet.max_unpool(pooled, indices, (6, 6))


def test_pretrained_backbone_loads_imagenet_vgg16_bn_into_the_encoder(monkeypatch):
    import torchvision.models as tvm

    imagenet = torchvision.models.vgg16_bn(weights=None).state_dict()
    monkeypatch.setattr(tvm.WeightsEnum, "get_state_dict",
                        lambda self, progress=True, check_hash=False: imagenet)
    model = segedu.build_model("segnet", 11, pretrained_backbone=True)
    torch.testing.assert_close(model.encoder.features[0].weight, imagenet["features.0.weight"])
    torch.testing.assert_close(model.encoder.features[41].running_var,
                               imagenet["features.41.running_var"])
    with pytest.raises(ValueError, match="width=1"):
        segnet.segnet(11, width=0.5, pretrained_backbone=True)
    with pytest.raises(ValueError, match="3 input channels"):
        segnet.segnet(2, in_channels=1, pretrained_backbone=True)


def test_pretrained_backbone_fails_clearly_offline(monkeypatch):
    import torchvision.models as tvm

    def offline(self, progress=True, check_hash=False):
        raise OSError("no network")

    monkeypatch.setattr(tvm.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(WeightsUnavailableError, match="internet"):
        segnet.segnet(11, pretrained_backbone=True)


def test_segnet_is_in_the_zoo_and_follows_the_contract():
    assert "segnet" in segedu.list_models()
    model = segedu.build_model("segnet", 4, width=0.125)
    assert (model.num_classes, model.in_channels) == (4, 3)
    gray = segedu.build_model("segnet", 2, width=0.125, in_channels=1).eval()
    with torch.no_grad():
        assert gray(torch.randn(1, 1, 48, 48))["out"].shape == (1, 2, 48, 48)

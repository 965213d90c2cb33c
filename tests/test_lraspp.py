"""LR-ASPP (MobileNetV3 paper, Sec. 6.3): the head computing what Fig. 10 draws. That it is
torchvision's network key for key and output for output is a row of the parity table in
test_torchvision_parity.py; the shared contract is tested in test_zoo.py."""

import pytest
import torch

import segedu
from segedu.deploy.lraspp import LRASPPHead, lite_aspp, lraspp_mobilenet_v3_large


def test_lite_aspp_gates_the_1x1_branch_by_the_pooled_sigmoid():
    torch.manual_seed(0)
    head = LRASPPHead(low_channels=5, high_channels=12, num_classes=3, inter_channels=8).eval()
    high = torch.randn(2, 12, 4, 6)
    gate = torch.sigmoid(torch.einsum("oc,nc->no", head.scale[1].weight[:, :, 0, 0],
                                      high.mean(dim=(2, 3))))
    expected = head.cbr(high) * gate[:, :, None, None]
    with torch.no_grad():
        torch.testing.assert_close(lite_aspp(high, head.cbr, head.scale), expected)


def test_lraspp_reads_stride_16_and_stride_8_maps_and_has_no_aux_head():
    model = segedu.build_model("lraspp_mobilenet_v3_large", 3, width=0.125)
    assert model.backbone.feature_strides["C5"] == 16 and model.backbone.feature_strides["C2"] == 8
    assert model.aux_classifier is None
    with pytest.raises(ValueError, match="at least 32"):
        model(torch.randn(1, 3, 31, 64))


def test_lraspp_pretrained_weights_need_21_classes_at_full_width():
    with pytest.raises(ValueError, match="21 classes at width 1"):
        lraspp_mobilenet_v3_large(3, pretrained=True)

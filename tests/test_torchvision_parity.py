"""Where torchvision ships the same network, ours is it: the same state_dict keys in the same
order, a strict load of torchvision's weights, and identical outputs (atol=0), with and without
the auxiliary head. That is how learners get real pretrained weights into code they can read.

One table, one test: a new identical network is tested by adding a row.
"""

from __future__ import annotations

import pytest
import torch
import torchvision

from segedu import deeplab, fcn
from segedu.core.utils import count_parameters

# name: (our factory, torchvision's builder, parameters without aux, with aux), 21 classes,
# as torchvision counts them.
IDENTICAL = {
    "fcn_resnet50": (fcn.fcn_resnet50, torchvision.models.segmentation.fcn_resnet50,
                     32_957_013, 35_322_218),
    "deeplabv3_resnet50": (deeplab.deeplabv3_resnet50,
                           torchvision.models.segmentation.deeplabv3_resnet50,
                           39_638_869, 42_004_074),
    "deeplabv3_mobilenet_v3_large": (deeplab.deeplabv3_mobilenet_v3_large,
                                     torchvision.models.segmentation.deeplabv3_mobilenet_v3_large,
                                     11_025_477, 11_029_328),
}


@pytest.mark.parametrize("aux", [False, True], ids=["no_aux", "aux"])
@pytest.mark.parametrize("name", sorted(IDENTICAL))
def test_our_network_is_torchvisions_key_for_key_and_output_for_output(name, aux):
    ours_factory, theirs_builder, params, params_aux = IDENTICAL[name]
    with torch.device("meta"):
        assert count_parameters(ours_factory(21, aux=aux)) == (params_aux if aux else params)
    theirs = theirs_builder(weights=None, weights_backbone=None, aux_loss=aux,
                            num_classes=21).eval()
    ours = ours_factory(21, aux=aux).eval()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 67, 45)  # odd, non-square: every resize and padding is exercised
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    assert set(a) == set(b) == ({"out", "aux"} if aux else {"out"})
    for key in a:
        assert a[key].shape == (2, 21, 67, 45)
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)

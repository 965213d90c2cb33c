"""Where torchvision ships the same network, ours is it: the same state_dict keys in the same
order, a strict load of torchvision's weights, and identical outputs (atol=0), with and without
the auxiliary head. That is how learners get real pretrained weights into code they can read.

One table, one test: a new identical network is tested by adding a row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pytest
import torch
import torchvision

from segedu import deeplab, fcn
from segedu.core.utils import count_parameters
from segedu.deploy import lraspp

seg = torchvision.models.segmentation


class Pair(NamedTuple):
    """Our factory, torchvision's builder, and the parameters with 21 classes as torchvision
    counts them, without and with the auxiliary head (``None``: the network has none, and our
    factory takes no ``aux``)."""

    ours: Callable
    theirs: Callable
    params: int
    params_aux: int | None


IDENTICAL = {
    "fcn_resnet50": Pair(fcn.fcn_resnet50, seg.fcn_resnet50, 32_957_013, 35_322_218),
    "deeplabv3_resnet50": Pair(deeplab.deeplabv3_resnet50, seg.deeplabv3_resnet50,
                               39_638_869, 42_004_074),
    "deeplabv3_mobilenet_v3_large": Pair(deeplab.deeplabv3_mobilenet_v3_large,
                                         seg.deeplabv3_mobilenet_v3_large, 11_025_477, 11_029_328),
    # the MobileNetV3 paper's LR-ASPP (Sec. 6.3): a third of deeplabv3_mobilenet_v3_large's
    "lraspp_mobilenet_v3_large": Pair(lraspp.lraspp_mobilenet_v3_large,
                                      seg.lraspp_mobilenet_v3_large, 3_221_538, None),
}
CASES = [(name, aux) for name, pair in sorted(IDENTICAL.items())
         for aux in ((False, True) if pair.params_aux is not None else (False,))]


def _ours(pair: Pair, aux: bool) -> torch.nn.Module:
    return pair.ours(21, aux=aux) if pair.params_aux is not None else pair.ours(21)


def _with_running_statistics(model: torch.nn.Module) -> torch.nn.Module:
    """BatchNorm statistics that are not the identity, so that a BatchNorm wired to the wrong
    layer changes the output in eval mode."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(0.1 * torch.randn(buffer.shape, generator=generator))
            elif name.endswith("running_var"):
                buffer.copy_(0.5 + 1.5 * torch.rand(buffer.shape, generator=generator))
    return model


@pytest.mark.parametrize(("name", "aux"), CASES,
                         ids=[f"{n}-{'aux' if a else 'no_aux'}" for n, a in CASES])
def test_our_network_is_torchvisions_key_for_key_and_output_for_output(name, aux):
    pair = IDENTICAL[name]
    with torch.device("meta"):
        assert count_parameters(_ours(pair, aux)) == (pair.params_aux if aux else pair.params)
    theirs = pair.theirs(weights=None, weights_backbone=None, aux_loss=aux, num_classes=21)
    theirs = _with_running_statistics(theirs).eval()
    ours = _ours(pair, aux).eval()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 67, 45)  # odd, non-square: every resize and padding is exercised
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    assert set(a) == set(b) == ({"out", "aux"} if aux else {"out"})
    for key in a:
        assert a[key].shape == (2, 21, 67, 45)
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)

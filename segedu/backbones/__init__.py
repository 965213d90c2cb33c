"""Backbones written from scratch, one module per family (as torchvision's ``models`` does):

* :mod:`~segedu.backbones.vgg` — VGG16 and VGG16-BN (Simonyan & Zisserman, 2015);
* :mod:`~segedu.backbones.resnet` — ResNet-50/101 with dilation (He et al., CVPR 2016);
* :mod:`~segedu.backbones.mobilenet` — MobileNetV3-Large (Howard et al., ICCV 2019);
* :mod:`~segedu.backbones.xception` — the aligned Xception-65 of DeepLab v3+ (Chen et al., 2018).

Every network here except Xception (torchvision has none) has the same module names, and so
the same ``state_dict`` keys and shapes, as torchvision's model of the same name. That is how a
learner gets real ImageNet weights into code they can read:
``model.load_state_dict(torchvision_model.state_dict())`` with ``strict=True`` (see
:func:`segedu.core.weights.load_imagenet_weights`).

Segmentation networks use a backbone as a feature extractor. Each backbone has
``forward_features(x) -> dict[str, Tensor]`` returning named intermediate maps
(``pool1``..``pool5`` for VGG, ``layer1``..``layer4`` for ResNet, ``C0``..``C5`` for
MobileNetV3, ``entry_block1``..``out`` for Xception) and ``feature_channels``, the channel
count of each; MobileNetV3 and Xception also have ``feature_strides``, the output stride of
each map. ``include_top=False`` drops the ImageNet classifier, as torchvision's
``IntermediateLayerGetter`` does.

Two course-specific options, both off by default:

* ``width`` multiplies every channel count (``width=0.125`` gives a VGG16 with 8..64 channels,
  :func:`segedu.core.model.scaled`). The CPU profile trains the *same* architecture at reduced
  width, because a 134M-parameter FCN cannot learn anything in a CPU minute. Only ``width=1``
  matches torchvision.
* ``batch_norm=True`` for VGG16 gives torchvision's ``vgg16_bn`` (SegNet's encoder).

Pretrained weights (:mod:`~segedu.backbones.pretrained`): ``pretrained_backbone=True`` in a
segmentation builder loads torchvision's ImageNet weights (width 1, downloaded);
``pretrained_backbone="shapes"`` loads the width-1/8 weights shipped in ``shapes_weights/``,
pretrained offline on synthetic images (:mod:`segedu.train.pretext`).

Layer: backbones import only :mod:`segedu.core`; chapters import backbones.
"""

# As torchvision's ``models/__init__.py`` does: each family module lists its public names.
from . import mobilenet, resnet, vgg, xception
from .mobilenet import *  # noqa: F403
from .resnet import *  # noqa: F403
from .vgg import *  # noqa: F403
from .xception import *  # noqa: F403

__all__ = [*vgg.__all__, *resnet.__all__, *mobilenet.__all__, *xception.__all__]

"""The model zoo: every network of the course by name.

    >>> import segedu
    >>> [name for name in segedu.list_models() if name.startswith("fcn")]
    ['fcn16s', 'fcn32s', 'fcn8s', 'fcn_resnet50']
    >>> model = segedu.build_model("fcn8s", num_classes=5, width=0.125, batch_norm=True)

Each chapter registers its factories here; a factory takes ``num_classes`` and keyword
options, and returns a model following the dict contract (``model(x)["out"]``).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from . import deeplab, fcn, pspnet, refinenet, segnet, unet
from .core.validation import check_num_classes
from .deploy import lraspp

__all__ = ["register_model", "build_model", "list_models", "get_factory"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
    """Add ``factory(num_classes, **kw)`` under ``name`` (each name once)."""
    if name in _REGISTRY:
        raise ValueError(f"a model named {name!r} is already registered.")
    _REGISTRY[name] = factory


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`, sorted."""
    return sorted(_REGISTRY)


def build_model(name: str, num_classes: int = 21, **kwargs) -> nn.Module:
    """Build model ``name`` with ``num_classes`` outputs; ``kwargs`` go to its factory.

    Raises:
        ValueError: for an unknown name, a bad ``num_classes``, or an option the model does
            not have.
    """
    factory = _factory(name)
    check_num_classes(num_classes)
    try:
        return factory(num_classes, **kwargs)
    except TypeError as err:
        if "unexpected keyword argument" not in str(err):
            raise
        raise ValueError(f"model {name!r} does not take that option ({err}); see "
                         f"help(segedu.zoo.get_factory({name!r})).") from err


def get_factory(name: str) -> Callable[..., nn.Module]:
    """The factory registered as ``name`` (read its docstring for the options)."""
    return _factory(name)


def _factory(name: str) -> Callable[..., nn.Module]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}.")
    return _REGISTRY[name]


# Chapter 1
register_model("fcn32s", fcn.fcn32s)
register_model("fcn16s", fcn.fcn16s)
register_model("fcn8s", fcn.fcn8s)
register_model("fcn_resnet50", fcn.fcn_resnet50)

# Chapter 2
register_model("segnet", segnet.segnet)

# Chapter 3
register_model("unet", unet.unet)

# Chapter 4
register_model("pspnet", pspnet.pspnet)

# Chapter 5
register_model("deeplabv1", deeplab.deeplabv1)
register_model("deeplabv2", deeplab.deeplabv2)
register_model("deeplabv3", deeplab.deeplabv3)
register_model("deeplabv3plus", deeplab.deeplabv3plus)
register_model("deeplabv3_resnet50", deeplab.deeplabv3_resnet50)
register_model("deeplabv3_mobilenet_v3_large", deeplab.deeplabv3_mobilenet_v3_large)

# Chapter 6
register_model("refinenet", refinenet.refinenet)
register_model("lw_refinenet", refinenet.lw_refinenet)

# Chapter 8
register_model("lraspp_mobilenet_v3_large", lraspp.lraspp_mobilenet_v3_large)

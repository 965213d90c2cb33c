"""segedu — semantic segmentation from FCN to RefineNet: a course to run, break and be graded on.

The package holds every model, block, metric and tool of the course; the notebooks in
``notebooks/`` import and explain it. Quick tour::

    import segedu
    segedu.list_models()                              # the model zoo
    model = segedu.build_model("fcn8s", num_classes=21)
    device = segedu.get_device()                      # CUDA, then MPS, then CPU
    profile = segedu.get_profile()                    # sizes for this machine
    segedu.check("ch01.bilinear_kernel", my_fn)       # feedback on an exercise
    segedu.hint("ch01.bilinear_kernel")               # the next hint level, on demand
"""

from .core.profiles import get_profile
from .core.utils import count_parameters, get_device, set_seed
from .grading import check, hint
from .zoo import build_model, list_models

__version__ = "0.1.0"

__all__ = [
    "build_model",
    "list_models",
    "get_device",
    "get_profile",
    "set_seed",
    "count_parameters",
    "check",
    "hint",
    "__version__",
]

"""Interactive explorers for receptive fields, dilation, pyramid pooling and ASPP.

Each is one call in a notebook and returns an ``ipywidgets`` box::

    from segedu.tools.widgets import receptive_field_explorer
    receptive_field_explorer()                 # chapters 1 and 6

    dilation_explorer()                        # chapter 5: rates -> sampling grid, gridding
    aspp_explorer()                            # chapter 5: output stride and rates -> taps
    ppm_explorer()                             # chapter 4: bins and map size -> cells

The arithmetic is :mod:`segedu.tools.receptive` (pure functions, tested on their own); this
module only draws it. How it draws: each explorer owns one matplotlib ``Figure`` (not pyplot,
so nothing is displayed twice or leaked) and, on every change, redraws its axes and swaps the
PNG shown by an ``ipywidgets.Image``. Swapping an image's bytes does not flicker and needs
neither ipympl nor a particular matplotlib backend, so the same code runs in JupyterLab,
classic Notebook, VS Code and Colab (whose ``%matplotlib widget`` needs extra setup). An error
in a callback is shown in the explorer (and kept in ``.last_error``) instead of vanishing into
the kernel log.

For tests and for curious learners, every explorer exposes ``.controls`` (name -> widget),
``.figure``, ``.image``, ``.summary`` (an HTML widget), ``.last_result`` and ``.renders``.
"""

from .aspp import ASPPExplorer, aspp_explorer
from .base import Explorer, sample_image
from .dilation import DilationExplorer, dilation_explorer
from .pyramid import PPMExplorer, ppm_explorer
from .receptive_field import ReceptiveFieldExplorer, receptive_field_explorer

__all__ = [
    "receptive_field_explorer",
    "dilation_explorer",
    "ppm_explorer",
    "aspp_explorer",
    "sample_image",
    "Explorer",
    "ReceptiveFieldExplorer",
    "DilationExplorer",
    "PPMExplorer",
    "ASPPExplorer",
]

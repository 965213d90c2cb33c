"""Tools above the chapters: they draw, measure and explain the chapters' networks.

* :mod:`~segedu.tools.receptive` — receptive fields walked from the modules, effective fields
  by gradients, dilation coverage, ASPP taps, pyramid-pooling cells;
* :mod:`~segedu.tools.widgets` — ipywidgets explorers that draw them;
* :mod:`~segedu.tools.viz` — palettes, colourised masks, overlays, prediction grids;
* :mod:`~segedu.tools.experiment` — the experiment harness: models against both per-pixel
  baselines on a diagnostic task, equal budgets, seeds, stored results (``segedu experiment``).

Layer: tools may import the chapters, the zoo, data, backbones and core; no chapter imports a
tool.
"""

"""The lowest layer: what every other part of segedu builds on, and nothing of the course above it.

* :mod:`~segedu.core.validation` — input checks with errors that say what was expected, and the
  conventions they check (ImageNet normalisation, the ignore label 255);
* :mod:`~segedu.core.sizes` — size arithmetic: output sizes of convs, pools and transposed convs;
* :mod:`~segedu.core.model` — the base segmentation model (backbone → head (+ aux) → resize)
  and the width multiplier;
* :mod:`~segedu.core.weights` — torchvision's pretrained weights, loaded by key;
* :mod:`~segedu.core.metrics` — confusion matrix, IoU, boundary F-score;
* :mod:`~segedu.core.utils` — device choice, seeds, parameter counts;
* :mod:`~segedu.core.profiles` — the CPU and GPU profiles every notebook starts from.

Layer: core imports nothing from segedu outside itself (checked by the import contract in
``pyproject.toml``).
"""

"""Receptive fields: which input pixels can this unit see? (chapters 1, 4, 5 and 6)

Three questions, one module each:

* :mod:`.theoretical` — the theoretical receptive field of any stack or backbone, walked from
  the modules themselves (:func:`receptive_field`, :func:`register_main_path`);
* :mod:`.effective` — the effective receptive field measured by gradients
  (:func:`effective_receptive_field`);
* :mod:`.sampling` — the sampling pattern of stacked dilated convolutions
  (:func:`dilated_sampling`, gridding), the taps of ASPP branches (:func:`aspp_taps`) and the
  cells of a pyramid pooling module (:func:`ppm_cells`).

:mod:`segedu.tools.widgets` draws all of them; nothing here needs a widget. The size arithmetic
underneath ("how big is the map after this layer?") is :mod:`segedu.core.sizes`.

This is a tool, above the chapters: it knows how to walk the course's own networks (VGG16,
ResNet, FCN, the backbone + head models), so it imports them; no chapter imports it. Import the
names from here (``from segedu.tools.receptive import receptive_field``).
"""

from __future__ import annotations

from .effective import EffectiveRF, effective_receptive_field
from .sampling import (
    ASPPBranch,
    DilationCoverage,
    aspp_taps,
    aspp_valid_fraction,
    dilated_coverage,
    dilated_sampling,
    ppm_cells,
    sampling_profile,
)
from .theoretical import RFRow, receptive_field, register_main_path

__all__ = [
    "RFRow",
    "receptive_field",
    "register_main_path",
    "EffectiveRF",
    "effective_receptive_field",
    "dilated_sampling",
    "sampling_profile",
    "DilationCoverage",
    "dilated_coverage",
    "ASPPBranch",
    "aspp_taps",
    "aspp_valid_fraction",
    "ppm_cells",
]

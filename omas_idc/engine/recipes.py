"""Recipes: what a card's wrapper does around nnU-Net.

- ``nnunet-native``: nnU-Net's own preprocessing and export, on the RAS-canonical array.
- ``cads``: reorient to RAS, resample to 1.5 mm (cubic), nnU-Net, then CADS's post-processing on
  the 1.5 mm labels (:mod:`omas_idc.engine.cads`), labels back with nearest neighbour.
- ``totalseg``: the same wrapper without post-processing (TotalSegmentator's optional
  small-blob removal is not applied).

The reorientation and resampling themselves live in the segmenter; this module holds the
post-processing dispatch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from omas_idc.engine.model import SegmentationModel

__all__ = ["postprocess"]


def postprocess(
    model: SegmentationModel,
    labels: Mapping[str, torch.Tensor],
    spacing: tuple[float, float, float],
) -> dict[str, torch.Tensor]:
    """Apply the recipe's post-processing to the label maps of one series (working grid)."""
    if model.card.recipe == "cads":
        from omas_idc.engine.cads import cads_postprocess

        names = {t.id: dict(t.folder.labels) for t in model.tasks}
        return cads_postprocess(labels, names, spacing)
    return dict(labels)

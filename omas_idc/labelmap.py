"""``TaskLabelMap``: the segment stage's output, one per model task, on the source grid."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["TaskLabelMap"]


@dataclass(frozen=True, eq=False)
class TaskLabelMap:
    """The labels one model task assigned to each voxel of a source volume.

    Attributes
    ----------
    model
        The model (family) name as the catalog knows it, e.g. ``"cads"`` or ``"totalseg"``.
    task
        The task identifier within the model, e.g. ``"551"`` for CADS or ``"total"``.
    array
        uint8 or uint16 labels, shape (slices, rows, columns) of the source ``CTVolume``;
        0 is background. Labels are exclusive within a task.
    labels
        Label value -> the model's label name (``{1: "spleen", 2: "kidney_right", ...}``);
        the catalog maps these names to coded structures.
    model_version
        Version (or weights variant) of the model that produced the map, for provenance.
    """

    model: str
    task: str
    array: npt.NDArray[np.unsignedinteger]
    labels: Mapping[int, str]
    model_version: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.dtype not in (np.uint8, np.uint16):
            raise TypeError(f"TaskLabelMap.array must be uint8 or uint16, got {self.array.dtype}")
        if self.array.ndim != 3:
            raise ValueError(f"TaskLabelMap.array must be 3-D (z, y, x), got {self.array.shape}")
        if 0 in self.labels:
            raise ValueError("label 0 is background and must not be named in TaskLabelMap.labels")

    def present_labels(self) -> list[int]:
        """The non-zero label values that occur in the array, ascending."""
        # Labels fill a small part of a CT: unique over the labelled voxels only is fast.
        return [int(v) for v in np.unique(self.array[self.array != 0])]

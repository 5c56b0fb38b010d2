"""Evaluate a trained model on fresh phantoms through the engine (the whole inference chain).

The phantom is rendered on any acquisition grid (orientation, patient position, flips,
obliquity, tilt), wrapped in a :class:`~omas_idc.volume.CTVolume` or read back from its
DICOM files, segmented by :class:`~omas_idc.engine.segmenter.Segmenter`, and compared with
the phantom's true label map (Dice) and analytic centroids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from omas_idc.geometry import VolumeGeometry
from omas_idc.labelmap import TaskLabelMap
from omas_idc.volume import CTVolume, SeriesHeader, SourceReference

__all__ = ["PhantomScore", "dice", "score_labelmap", "volume_from_array"]


def volume_from_array(hu: npt.NDArray[np.floating], geometry: VolumeGeometry) -> CTVolume:
    """A CTVolume with placeholder references around rendered HU (no DICOM round trip)."""
    refs = tuple(
        SourceReference("1.2.840.10008.5.1.4.1.1.2", f"1.2.3.{i + 1}") for i in range(hu.shape[0])
    )
    header = SeriesHeader(
        series_instance_uid="1.2.3.4", study_instance_uid="1.2.3", frame_of_reference_uid="1.2.5"
    )
    return CTVolume(
        hu=np.round(hu).astype(np.int16), geometry=geometry, source_refs=refs, header=header
    )


def dice(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float:
    """Dice of two masks (1.0 where both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


@dataclass(frozen=True)
class PhantomScore:
    """Per structure: Dice with the true labels and centroid error (mm and voxels)."""

    dice: Mapping[str, float]
    centroid_error_mm: Mapping[str, float]
    centroid_error_voxels: Mapping[str, float]


def score_labelmap(
    labelmap: TaskLabelMap,
    truth: npt.NDArray[np.integer],
    truth_names: Mapping[int, str],
    geometry: VolumeGeometry,
    structures: Sequence[str],
    true_centroids: Mapping[str, npt.NDArray[np.float64]] | None = None,
) -> PhantomScore:
    """Compare a predicted label map with a phantom's truth, structure by structure.

    Parameters
    ----------
    labelmap
        The engine's output on the phantom's grid.
    truth, truth_names
        The phantom's label map and its label -> structure names.
    geometry
        The grid (for centroids in LPS).
    structures
        Structures to score (names in both the model and the phantom).
    true_centroids
        Analytic centroids (LPS mm); the truth label map's centroids where ``None``.
    """
    by_name_pred = {name: value for value, name in labelmap.labels.items()}
    by_name_true = {name: value for value, name in truth_names.items()}
    inverse = np.linalg.inv(geometry.affine[:3, :3])
    scores, errors_mm, errors_vox = {}, {}, {}
    for name in structures:
        predicted = labelmap.array == by_name_pred[name]
        expected = truth == by_name_true[name]
        scores[name] = dice(predicted, expected)
        if not predicted.any():
            errors_mm[name] = errors_vox[name] = float("inf")
            continue
        center = geometry.voxel_to_lps(np.argwhere(predicted).mean(axis=0))
        if true_centroids is not None:
            reference = np.asarray(true_centroids[name], dtype=np.float64)
        else:
            reference = geometry.voxel_to_lps(np.argwhere(expected).mean(axis=0))
        error = np.asarray(center, dtype=np.float64).ravel() - reference.ravel()
        errors_mm[name] = float(np.linalg.norm(error))
        # in voxels of the grid: the largest component along the (possibly sheared) voxel axes
        errors_vox[name] = float(np.abs(inverse @ error).max())
    return PhantomScore(dice=scores, centroid_error_mm=errors_mm, centroid_error_voxels=errors_vox)

"""Per-segment measurements of a task label map on its CT volume, in one pass per task.

Counts, HU sums, sums of squares, minima, maxima and integer-HU histograms of all labels are
accumulated together over slabs of slices (``numpy.bincount`` and ``scipy.ndimage``), so memory
stays bounded and the volume is read once per task, whatever the number of labels. Centroids,
connected components and truncation are then computed per label inside its bounding box only
(``scipy.ndimage.find_objects``).

Volumes are voxel counts times ``|det(affine)|``: right for oblique grids and for the sheared
grids of gantry-tilted series, whose voxels are parallelepipeds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from omas_idc.errors import QAError
from omas_idc.labelmap import TaskLabelMap
from omas_idc.qa.records import HUStatistics, SegmentMetrics
from omas_idc.volume import CTVolume

__all__ = ["HU_RANGE", "body_midline", "measure_labelmap"]

logger = logging.getLogger(__name__)

#: HU range of the histograms behind the percentiles; values outside are clipped to it
#: (minimum, maximum, mean and standard deviation are exact regardless).
HU_RANGE = (-2048, 4095)
_SLAB_VOXELS = 8_000_000
_CONNECTIVITY = ndimage.generate_binary_structure(3, 3)  # 26-connectivity


@dataclass
class _Accumulator:
    counts: npt.NDArray[np.int64]
    sums: npt.NDArray[np.float64]
    squares: npt.NDArray[np.float64]
    minima: npt.NDArray[np.float64]
    maxima: npt.NDArray[np.float64]
    histogram: npt.NDArray[np.int64]


def _percentile(cumulative: npt.NDArray[np.int64], n: int, q: float) -> float:
    """numpy's linear percentile from a cumulative histogram of integer values."""
    position = q / 100.0 * (n - 1)
    low_rank = int(np.floor(position))
    high_rank = min(low_rank + 1, n - 1)
    low = int(np.searchsorted(cumulative, low_rank, side="right"))
    high = int(np.searchsorted(cumulative, high_rank, side="right"))
    fraction = position - low_rank
    return float(HU_RANGE[0] + low + (high - low) * fraction)


def _accumulate(
    hu: npt.NDArray[np.int16], array: npt.NDArray[np.unsignedinteger], present: list[int]
) -> _Accumulator:
    k = len(present)
    bins = HU_RANGE[1] - HU_RANGE[0] + 1
    lut = np.full(int(array.max()) + 1, k, dtype=np.int64)  # background and absent -> k
    lut[present] = np.arange(k)
    acc = _Accumulator(
        counts=np.zeros(k + 1, dtype=np.int64),
        sums=np.zeros(k + 1),
        squares=np.zeros(k + 1),
        minima=np.full(k, np.inf),
        maxima=np.full(k, -np.inf),
        histogram=np.zeros((k + 1) * bins, dtype=np.int64),
    )
    slab = max(1, _SLAB_VOXELS // max(1, array.shape[1] * array.shape[2]))
    for start in range(0, array.shape[0], slab):
        labels = array[start : start + slab]
        values = hu[start : start + slab]
        index = lut[labels.ravel()]
        weights = values.ravel().astype(np.float64)
        slab_counts = np.bincount(index, minlength=k + 1)
        acc.counts += slab_counts
        acc.sums += np.bincount(index, weights=weights, minlength=k + 1)
        acc.squares += np.bincount(index, weights=weights * weights, minlength=k + 1)
        clipped = np.clip(values.ravel(), HU_RANGE[0], HU_RANGE[1]).astype(np.int64) - HU_RANGE[0]
        acc.histogram += np.bincount(index * bins + clipped, minlength=(k + 1) * bins)
        seen = np.flatnonzero(slab_counts[:k])
        if len(seen) == 0:
            continue
        targets = [present[i] for i in seen]
        mins = np.asarray(ndimage.minimum(values, labels, targets), dtype=np.float64)
        maxs = np.asarray(ndimage.maximum(values, labels, targets), dtype=np.float64)
        acc.minima[seen] = np.minimum(acc.minima[seen], mins)
        acc.maxima[seen] = np.maximum(acc.maxima[seen], maxs)
    return acc


def _hu_statistics(acc: _Accumulator, i: int) -> HUStatistics:
    n = int(acc.counts[i])
    bins = HU_RANGE[1] - HU_RANGE[0] + 1
    cumulative = np.cumsum(acc.histogram[i * bins : (i + 1) * bins])
    mean = float(acc.sums[i] / n)
    variance = max(0.0, float(acc.squares[i] / n) - mean * mean)
    return HUStatistics(
        mean=mean,
        std=float(np.sqrt(variance)),
        minimum=float(acc.minima[i]),
        maximum=float(acc.maxima[i]),
        median=_percentile(cumulative, n, 50.0),
        p10=_percentile(cumulative, n, 10.0),
        p25=_percentile(cumulative, n, 25.0),
        p75=_percentile(cumulative, n, 75.0),
        p90=_percentile(cumulative, n, 90.0),
    )


def _truncation(box: tuple[slice, ...], shape: tuple[int, ...]) -> tuple[str, ...]:
    """The borders of the field of view that a bounding box touches."""
    touched: list[str] = []
    if box[0].start == 0:
        touched.append("first_slice")
    if box[0].stop == shape[0]:
        touched.append("last_slice")
    if box[1].start == 0 or box[1].stop == shape[1]:
        touched.append("row_border")
    if box[2].start == 0 or box[2].stop == shape[2]:
        touched.append("column_border")
    return tuple(touched)


def measure_labelmap(volume: CTVolume, labelmap: TaskLabelMap) -> dict[int, SegmentMetrics]:
    """Measure every label present in ``labelmap``.

    Parameters
    ----------
    volume
        The CT series the label map was made from (its HU and geometry).
    labelmap
        One task's labels on the source grid.

    Returns
    -------
    dict
        Label value -> metrics, for the labels present (non-zero voxel count), ascending.

    Raises
    ------
    QAError
        If the label map does not lie on the volume's grid.
    """
    array = labelmap.array
    if array.shape != volume.shape:
        raise QAError(
            f"task {labelmap.task} label map has shape {array.shape} but the volume is "
            f"{volume.shape}: QA needs the label map on the source grid",
            series_instance_uid=volume.series_instance_uid or None,
            reason="grid-mismatch",
        )
    counts = np.bincount(array.ravel())
    present = [int(v) for v in np.flatnonzero(counts) if v != 0]
    if not present:
        return {}
    acc = _accumulate(volume.hu, array, present)
    boxes = ndimage.find_objects(array)
    voxel_ml = volume.geometry.voxel_volume_mm3 / 1000.0
    results: dict[int, SegmentMetrics] = {}
    for i, value in enumerate(present):
        box = boxes[value - 1]
        if box is None:  # cannot happen for a present label; keeps mypy and readers honest
            continue
        mask = array[box] == value
        n = int(acc.counts[i])
        offset = np.array([part.start for part in box], dtype=np.float64)
        centroid_zyx = offset + np.array(
            [
                (
                    np.arange(mask.shape[axis])
                    * mask.sum(axis=tuple(a for a in range(3) if a != axis))
                ).sum()
                / n
                for axis in range(3)
            ]
        )
        components, count = ndimage.label(mask, structure=_CONNECTIVITY)
        sizes = np.bincount(components.ravel())[1:]
        results[value] = SegmentMetrics(
            voxel_count=n,
            volume_ml=n * voxel_ml,
            hu=_hu_statistics(acc, i),
            centroid_lps=tuple(float(v) for v in volume.geometry.voxel_to_lps(centroid_zyx)),  # type: ignore[arg-type]
            bbox_start=tuple(int(part.start) for part in box),  # type: ignore[arg-type]
            bbox_stop=tuple(int(part.stop) for part in box),  # type: ignore[arg-type]
            components=int(count),
            largest_component_fraction=float(sizes.max() / n) if count else 0.0,
            truncated_at=_truncation(box, array.shape),
        )
    logger.debug(
        "series %s task %s: measured %d segments",
        volume.series_instance_uid,
        labelmap.task,
        len(results),
    )
    return results


def body_midline(
    volume: CTVolume,
    vertebra_centroids: Mapping[str, tuple[float, float, float]],
    body_mask: npt.NDArray[np.bool_] | None = None,
) -> tuple[float, str]:
    """The LPS x (patient left-right) of the body midline, and where it came from.

    The rule, in order of preference:

    1. ``"vertebrae"``: the median LPS x of the centroids of the vertebrae present (the
       spine is the midline, and is not moved by arms, tables or asymmetric organs);
    2. ``"body"``: the median LPS x of the voxels of a body mask (e.g. a ``body`` segment);
    3. ``"threshold"``: the median LPS x of the voxels above -500 HU (soft tissue and bone),
       sampled on every second voxel of each axis.

    Working in LPS from the affine makes the rule independent of patient position (head or
    feet first, supine or prone) and of the order of rows, columns and slices.
    """
    if vertebra_centroids:
        xs = [c[0] for c in vertebra_centroids.values()]
        return float(np.median(xs)), "vertebrae"
    if body_mask is not None and body_mask.any():
        mask, step, source = body_mask, 1, "body"
        if mask.size > 20_000_000:
            mask, step = mask[::2, ::2, ::2], 2
    else:
        mask, step, source = volume.hu[::2, ::2, ::2] > -500, 2, "threshold"
    zyx = np.argwhere(mask)
    if len(zyx) == 0:
        raise QAError(
            "no voxel above -500 HU: cannot place the body midline for the laterality check",
            series_instance_uid=volume.series_instance_uid or None,
            reason="no-body",
        )
    a = volume.geometry.affine
    x = (zyx[:, ::-1] * step) @ a[0, :3] + a[0, 3]
    return float(np.median(x)), source

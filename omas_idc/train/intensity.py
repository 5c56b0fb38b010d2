"""Foreground intensity properties of the CT normalisation, computed as nnU-Net computes them.

nnU-Net's ``DatasetFingerprintExtractor`` samples, from each training case cropped to its
non-zero box, ``int(1e8 // n_cases)`` foreground voxels (label > 0) with replacement from a
``numpy.random.RandomState(1234)`` made afresh for every case, concatenates the samples of
all cases and records their mean, median, standard deviation, minimum, maximum and 0.5/99.5
percentiles (``np.percentile``, linear interpolation). ``CTNormalization`` later clips to the
percentiles and standardises with the mean and standard deviation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from omas_idc.errors import TrainingError

__all__ = ["NNUNET_FOREGROUND_SAMPLES", "foreground_intensity_properties", "sample_foreground"]

logger = logging.getLogger(__name__)

#: nnU-Net's total number of foreground voxels sampled over the dataset (``10e7``).
NNUNET_FOREGROUND_SAMPLES = 100_000_000


def sample_foreground(
    image: npt.NDArray[np.floating], labels: npt.NDArray[np.integer], num_samples: int
) -> npt.NDArray[np.floating]:
    """One case's foreground samples (``collect_foreground_intensities`` for one channel).

    Parameters
    ----------
    image
        The case's intensities, cropped to its non-zero box, in nnU-Net's array order.
    labels
        Its label map on the same grid.
    num_samples
        Samples drawn with replacement (nnU-Net: ``int(1e8 // n_cases)``).
    """
    foreground = image[labels > 0]
    if foreground.size == 0:
        return np.zeros(0, dtype=image.dtype)
    rs = np.random.RandomState(1234)  # nnU-Net reseeds per case
    samples: npt.NDArray[np.floating] = rs.choice(foreground, num_samples, replace=True)
    return samples


def foreground_intensity_properties(
    cases: Sequence[tuple[npt.NDArray[np.floating], npt.NDArray[np.integer]]],
    total_samples: int = NNUNET_FOREGROUND_SAMPLES,
) -> dict[str, float]:
    """``foreground_intensity_properties_per_channel["0"]`` of nnU-Net's plans.

    Parameters
    ----------
    cases
        (image, labels) per training case, each cropped to its non-zero box, images as float32
        as nnU-Net reads them.
    total_samples
        Samples over the whole dataset; nnU-Net's value by default. Lower it to save memory
        (the statistics then differ from nnU-Net's by sampling noise only).

    Raises
    ------
    TrainingError
        If no case has any labelled voxel.
    """
    if not cases:
        raise TrainingError("no training cases to compute intensity properties from")
    per_case = int(total_samples // len(cases))
    samples = [sample_foreground(image, labels, per_case) for image, labels in cases]
    values = np.concatenate(samples)
    if values.size == 0:
        raise TrainingError(
            "the training labels hold no foreground voxel: CT normalisation needs labelled "
            "voxels; check the datasets' label values"
        )
    p005, median, p995 = np.percentile(values, np.array((0.5, 50.0, 99.5)))
    properties = {
        "mean": float(np.mean(values)),
        "median": float(median),
        "std": float(np.std(values)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "percentile_99_5": float(p995),
        "percentile_00_5": float(p005),
    }
    logger.info("foreground intensity properties: %s", properties)
    return properties

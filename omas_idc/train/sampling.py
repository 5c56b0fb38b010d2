"""Patch sampling with foreground oversampling, as nnU-Net's data loader does it.

Each patch comes from a case drawn uniformly at random. With probability
``foreground_oversampling`` the region is centred on a random voxel of a random annotated
class present in the case; otherwise its position is uniform. Where spatial augmentation
needs a region larger than the patch (its centre is cut after rotation and scaling), the
region may reach past the volume by half that margin on each side, and by more where the
volume is smaller than the region (nnU-Net's ``need_to_pad``): so the final patch reaches
every voxel, and a structure can be seen at any position within the patch. Without that
margin, an axis about as long as the region would always be cut at the same place and its
outer margin never seen, and the network would learn where in the patch a structure lies
rather than what it looks like. Outside the volume the data is 0 (the normalised mean, as
nnU-Net pads) and the label background. All randomness comes from one
``numpy.random.Generator``, whose state the checkpoints save.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from omas_idc.train.augment import AugmentationParams, augment_patch
from omas_idc.train.data import TrainingCase

__all__ = ["Batch", "PatchSampler", "crop_padded"]


@dataclass(frozen=True, eq=False)
class Batch:
    """One training batch: data ``(B, 1, *patch)``, target ``(B, *patch)`` and class masks."""

    data: torch.Tensor
    target: torch.Tensor
    annotated: torch.Tensor
    absent: torch.Tensor


def crop_padded(
    array: torch.Tensor, start: Sequence[int], size: Sequence[int], fill: float = 0.0
) -> torch.Tensor:
    """``array[..., start:start+size]`` over the last three axes, ``fill`` outside."""
    spatial = array.shape[-3:]
    out = torch.full((*array.shape[:-3], *size), fill, dtype=array.dtype)
    src: list[slice] = []
    dst: list[slice] = []
    for a in range(3):
        lo, hi = max(start[a], 0), min(start[a] + size[a], spatial[a])
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - start[a], hi - start[a]))
    out[..., dst[0], dst[1], dst[2]] = array[..., src[0], src[1], src[2]]
    return out


class PatchSampler:
    """Draws training batches from preprocessed cases.

    Parameters
    ----------
    cases
        The training cases.
    patch_size
        Patch size (network input).
    batch_size
        Patches per batch.
    foreground_oversampling
        Probability that a patch is centred on an annotated voxel.
    rng
        The generator all sampling and augmentation draws from.
    augmentation
        Augmentation parameters, or ``None`` for none.
    """

    def __init__(
        self,
        cases: Sequence[TrainingCase],
        patch_size: Sequence[int],
        batch_size: int,
        foreground_oversampling: float,
        rng: np.random.Generator,
        augmentation: AugmentationParams | None = None,
    ) -> None:
        self.cases = list(cases)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.batch_size = batch_size
        self.foreground_oversampling = foreground_oversampling
        self.rng = rng
        self.augmentation = augmentation

    def _start(self, case: TrainingCase, size: Sequence[int], force_fg: bool) -> list[int]:
        shape = case.labels.shape
        need = [max(s - p, s - d, 0) for s, p, d in zip(size, self.patch_size, shape, strict=True)]
        lb = [-n // 2 for n in need]
        ub = [d + n // 2 + n % 2 - s for d, n, s in zip(shape, need, size, strict=True)]
        present = [c for c in case.class_locations if case.annotated[c]]
        if force_fg and present:
            label = present[int(self.rng.integers(len(present)))]
            where = case.class_locations[label]
            voxel = where[int(self.rng.integers(len(where)))]
            return [
                int(np.clip(v - s // 2, lo, hi))
                for v, s, lo, hi in zip(voxel, size, lb, ub, strict=True)
            ]
        return [int(self.rng.integers(lo, hi + 1)) for lo, hi in zip(lb, ub, strict=True)]

    def sample(self) -> Batch:
        """The next batch."""
        data, target, annotated, absent = [], [], [], []
        for _ in range(self.batch_size):
            case = self.cases[int(self.rng.integers(len(self.cases)))]
            force_fg = bool(self.rng.random() < self.foreground_oversampling)
            params = self.augmentation
            size: Sequence[int] = self.patch_size
            if params is not None:
                size = params.source_size(self.patch_size)
            start = self._start(case, size, force_fg)
            patch = crop_padded(case.data, start, size)
            labels = crop_padded(case.labels, start, size)
            if params is not None:
                patch, labels = augment_patch(patch, labels, self.patch_size, params, self.rng)
            data.append(patch)
            target.append(labels.long())
            annotated.append(torch.from_numpy(case.annotated))
            absent.append(torch.from_numpy(case.absent))
        return Batch(
            data=torch.stack(data),
            target=torch.stack(target),
            annotated=torch.stack(annotated),
            absent=torch.stack(absent),
        )


def batch_annotation(cases: Sequence[TrainingCase]) -> npt.NDArray[np.bool_]:
    """Which classes each case annotates, ``(n_cases, n_classes)`` (for reports)."""
    return np.stack([c.annotated for c in cases])

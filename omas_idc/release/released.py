"""A released case: what :func:`omas_idc.release.encode_case` made of one manifest case."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset

from omas_idc.encode import EncodedSeg
from omas_idc.encode.annotation_sr import StructureStatus
from omas_idc.release.labeltables import AnnotatedDataset
from omas_idc.release.manifest import ManifestCase
from omas_idc.volume import CTVolume

__all__ = ["ReleasedCase"]


@dataclass(frozen=True, eq=False)
class ReleasedCase:
    """A released case: its SEG (``None`` where nothing is present), SR and statuses."""

    case: ManifestCase
    dataset: AnnotatedDataset
    volume: CTVolume
    statuses: tuple[StructureStatus, ...]
    seg: EncodedSeg | None
    sr: Dataset
    match_method: str

"""``CTVolume``: the read stage's output, the contract between read, segment, encode and qa."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from omas_idc.geometry import VolumeGeometry

__all__ = ["CTVolume", "SeriesHeader", "SourceReference"]


@dataclass(frozen=True)
class SourceReference:
    """One source image (or frame of a multi-frame image) behind one slice of a volume."""

    sop_class_uid: str
    sop_instance_uid: str
    #: 1-based frame number for multi-frame sources, ``None`` for single-frame images.
    frame_number: int | None = None


@dataclass(frozen=True)
class SeriesHeader:
    """The source header fields that SEG and SR need, copied, never invented.

    Empty strings mean the source left the attribute empty or absent.
    """

    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""
    study_time: str = ""
    study_id: str = ""
    accession_number: str = ""
    referring_physician_name: str = ""
    series_number: int | None = None
    series_description: str = ""
    modality: str = "CT"
    manufacturer: str = ""
    body_part_examined: str = ""


@dataclass(frozen=True, eq=False)
class CTVolume:
    """A CT series as a volume.

    Attributes
    ----------
    hu
        Hounsfield units, int16, shape (slices, rows, columns), slice 0 lowest along the normal.
    geometry
        Voxel -> LPS mapping and per-slice positions (sheared where the gantry is tilted).
    source_refs
        The source image (and frame) of each slice, in array order.
    header
        Patient, study, series and frame-of-reference fields for the SEG/SR headers.
    files
        The source files, in slice order (for multi-frame sources the one file, repeated).
    warnings
        What the reader repaired, dropped or noticed (localizers dropped, empty UIDs, ...).
    datasets
        The source header of each slice as the reader parsed it, without pixel data (for
        multi-frame sources the one dataset, repeated), so that the encoder copies from them
        instead of parsing the files again; empty where the volume was not read from DICOM.
    """

    hu: npt.NDArray[np.int16]
    geometry: VolumeGeometry
    source_refs: tuple[SourceReference, ...]
    header: SeriesHeader
    files: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    datasets: tuple[Dataset, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if self.hu.dtype != np.int16:
            raise TypeError(f"CTVolume.hu must be int16, got {self.hu.dtype}")
        if self.hu.shape != self.geometry.shape:
            raise ValueError(
                f"CTVolume.hu has shape {self.hu.shape} but the geometry describes "
                f"{self.geometry.shape}"
            )
        if len(self.source_refs) != self.hu.shape[0]:
            raise ValueError(
                f"CTVolume has {self.hu.shape[0]} slices but {len(self.source_refs)} source refs"
            )

    @property
    def series_instance_uid(self) -> str:
        """The source SeriesInstanceUID (may be empty for anonymisation-damaged series)."""
        return self.header.series_instance_uid

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (slices, rows, columns)."""
        return self.geometry.shape

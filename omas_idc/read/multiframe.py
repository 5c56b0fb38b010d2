"""Frames of Enhanced CT and Legacy Converted Enhanced CT images as slice records.

Per PS3.3 C.7.6.16 (Multi-frame Functional Groups), an attribute of a frame is taken from the
frame's item of the Per-Frame Functional Groups Sequence (5200,9230) where present, otherwise
from the Shared Functional Groups Sequence (5200,9229). The macros used are Plane Position
(C.7.6.16.2.3), Plane Orientation (C.7.6.16.2.4), Pixel Measures (C.7.6.16.2.1), Pixel Value
Transformation (C.7.6.16.2.9) and CT Image Frame Type (C.8.15.3.1).
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from omas_idc.read.files import DicomFile
from omas_idc.read.slices import (
    SliceRecord,
    float_tuple,
    image_type_of,
    optional_float,
)

__all__ = ["frames_of", "is_multiframe"]


def is_multiframe(ds: Dataset) -> bool:
    """True for objects with functional groups (Enhanced / Legacy Converted multi-frame)."""
    return "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds


def _macro(per_frame: Dataset | None, shared: Dataset | None, sequence: str) -> Dataset | None:
    """The first item of a functional group macro, per-frame taking precedence over shared."""
    for group in (per_frame, shared):
        if group is not None and sequence in group and len(group[sequence].value) > 0:
            item: Dataset = group[sequence].value[0]
            return item
    return None


def _get(item: Dataset | None, keyword: str) -> object:
    return None if item is None else item.get(keyword)


def frames_of(f: DicomFile) -> list[SliceRecord]:
    """One slice record per frame of a multi-frame CT image."""
    ds = f.dataset
    uid = f.series_instance_uid
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared: Dataset | None = shared_seq[0] if shared_seq else None
    per_frame_seq = ds.get("PerFrameFunctionalGroupsSequence") or []
    records = []
    for index in range(n_frames):
        per_frame: Dataset | None = per_frame_seq[index] if index < len(per_frame_seq) else None
        where = f"{f.path} frame {index + 1}"
        position = _macro(per_frame, shared, "PlanePositionSequence")
        orientation = _macro(per_frame, shared, "PlaneOrientationSequence")
        measures = _macro(per_frame, shared, "PixelMeasuresSequence")
        transform = _macro(per_frame, shared, "PixelValueTransformationSequence")
        frame_type = _macro(per_frame, shared, "CTImageFrameTypeSequence")
        slope = optional_float(transform, "RescaleSlope") if transform is not None else None
        intercept = optional_float(transform, "RescaleIntercept") if transform is not None else None
        # Legacy objects may keep the Modality LUT at the top level.
        if slope is None:
            slope = optional_float(ds, "RescaleSlope")
        if intercept is None:
            intercept = optional_float(ds, "RescaleIntercept")
        image_type = image_type_of(_get(frame_type, "FrameType")) or f.image_type
        records.append(
            SliceRecord(
                file=f,
                frame_index=index,
                orientation=float_tuple(  # type: ignore[arg-type]
                    _get(orientation, "ImageOrientationPatient"),
                    6,
                    "ImageOrientationPatient (Plane Orientation Sequence)",
                    where,
                    uid,
                ),
                position=float_tuple(  # type: ignore[arg-type]
                    _get(position, "ImagePositionPatient"),
                    3,
                    "ImagePositionPatient (Plane Position Sequence)",
                    where,
                    uid,
                ),
                pixel_spacing=float_tuple(  # type: ignore[arg-type]
                    _get(measures, "PixelSpacing"),
                    2,
                    "PixelSpacing (Pixel Measures Sequence)",
                    where,
                    uid,
                ),
                rows=int(ds.Rows),
                columns=int(ds.Columns),
                rescale_slope=1.0 if slope is None else slope,
                rescale_intercept=0.0 if intercept is None else intercept,
                image_type=image_type,
                slice_thickness=(
                    optional_float(measures, "SliceThickness") if measures is not None else None
                ),
            )
        )
    return records

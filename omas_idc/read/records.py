"""The slice records of one CT file, single-frame or multi-frame."""

from __future__ import annotations

from omas_idc.read.files import DicomFile
from omas_idc.read.multiframe import frames_of, is_multiframe
from omas_idc.read.slices import SliceRecord, single_frame_record

__all__ = ["slices_of"]


def slices_of(f: DicomFile) -> list[SliceRecord]:
    """The slice records of one CT file (one per frame for multi-frame objects)."""
    if is_multiframe(f.dataset):
        return frames_of(f)
    return [single_frame_record(f)]

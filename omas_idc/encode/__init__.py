"""The encode stage: task label maps -> DICOM SEG (highdicom), deterministic and validated.

See :mod:`omas_idc.encode.seg` for the layouts and numbering rules and
:mod:`omas_idc.encode.provenance` for the deterministic UIDs and timestamps.
"""

from __future__ import annotations

from omas_idc.encode.provenance import Provenance, derived_uid
from omas_idc.encode.seg import LAYOUTS, EncodedSeg, SegLayout, encode_binary, encode_labelmaps
from omas_idc.encode.write import write_dataset

__all__ = [
    "LAYOUTS",
    "EncodedSeg",
    "Provenance",
    "SegLayout",
    "derived_uid",
    "encode_binary",
    "encode_labelmaps",
    "write_dataset",
]

"""Write DICOM files atomically: a temporary name in the same folder, then a rename.

A reader (or a resumed run) never sees a half-written file: either the previous file or the
complete new one is at the final path.

A BINARY SEG of a whole-body series holds a few hundred MB of native Pixel Data; pydicom
writes every element through an in-memory buffer first (two copies of it). Native Pixel Data
in Explicit VR Little Endian, the last element of the dataset, is therefore written here
straight from its value, with the element header pydicom would write (PS3.5 7.1.2): the file
is byte for byte what ``Dataset.save_as`` writes (tests/encode/test_write.py).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian

from omas_idc.atomic import atomic_output

__all__ = ["write_dataset"]

_PIXEL_DATA = Tag(0x7FE00010)


def _native_pixel_data(dataset: Dataset) -> DataElement | None:
    """The Pixel Data element where it can be written straight, else ``None``."""
    meta = getattr(dataset, "file_meta", None)
    if meta is None or meta.get("TransferSyntaxUID") != ExplicitVRLittleEndian:
        return None
    if _PIXEL_DATA not in dataset or max(dataset.keys()) != _PIXEL_DATA:
        return None
    element = dataset[_PIXEL_DATA]
    if element.VR not in ("OB", "OW") or not isinstance(element.value, bytes):
        return None
    return element


def _save(dataset: Dataset, stream: BinaryIO) -> None:
    element = _native_pixel_data(dataset)
    if element is None:
        dataset.save_as(stream, enforce_file_format=True)
        return
    del dataset[_PIXEL_DATA]
    try:
        dataset.save_as(stream, enforce_file_format=True)
    finally:
        dataset[_PIXEL_DATA] = element
    value = element.value
    padding = len(value) % 2
    header = struct.pack("<HH2sHI", 0x7FE0, 0x0010, element.VR.encode(), 0, len(value) + padding)
    stream.write(header)
    stream.write(value)
    if padding:
        stream.write(b"\x00")


def write_dataset(dataset: Dataset, path: str | Path) -> Path:
    """Write ``dataset`` to ``path`` (DICOM Part 10) atomically; return the path."""
    with atomic_output(path) as stream:
        _save(dataset, stream)
    return Path(path)

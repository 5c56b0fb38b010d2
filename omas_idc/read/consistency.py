"""Consistency checks of a series' headers before anything is decoded.

A damaged header must never become a silently different volume. Before the pixels are
decoded, each file's image pixel description (PS3.3 C.7.6.3) must agree with its pixel data,
and each slice's geometry and Modality LUT must be numbers that can place and scale it:

- BitsAllocated is 8, 16 or 32 (or 1 for bit-packed images), BitsStored <= BitsAllocated,
  HighBit = BitsStored - 1 where present, PixelRepresentation 0 or 1, and native (uncompressed)
  pixel data is exactly Rows x Columns x frames x samples x BitsAllocated / 8 bytes long (PS3.5
  8.1.1; one pad byte to an even length allowed): ``inconsistent-bits``;
- the files of one series agree on BitsAllocated, BitsStored and PixelRepresentation
  (``inconsistent-bits``, naming the odd files);
- PixelSpacing finite and positive (``invalid-spacing``); ImagePositionPatient finite
  (``non-finite-position``); ImageOrientationPatient finite, two unit vectors at right angles
  (``invalid-orientation``); RescaleSlope finite and non-zero (``zero-slope``), RescaleIntercept
  finite (``invalid-rescale``).

Slices whose Modality LUT or Pixel Padding Value differ from the rest of the series are legal
(PS3.3 C.11.1) but rare in CT, and one damaged digit looks the same: they are read, with a
warning naming the files.
"""

from __future__ import annotations

import math
import os
import struct
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

from omas_idc.errors import OmasIdcError, SeriesGeometryError, UnsupportedSeriesError
from omas_idc.read.files import DicomFile
from omas_idc.read.slices import SliceRecord

__all__ = [
    "COSINE_TOLERANCE",
    "check_complete",
    "check_pixel_description",
    "check_series_encoding",
    "check_slice",
    "value_transform_warnings",
]

#: ImageOrientationPatient's cosines must have unit length, and be at right angles, within
#: this (scanners write them with 5-6 decimals; 0.01 is about 0.6 degrees).
COSINE_TOLERANCE = 0.01

_FIX_FETCH = (
    "Fetch the series again; if the copy in the archive is damaged, exclude the series or "
    "remove the file."
)


def _int(ds: Dataset, keyword: str, default: int | None, where: str, uid: str) -> int | None:
    """An integer attribute, or a named error where its value cannot be read."""
    try:
        value = ds.get(keyword)
        if value is None or value == "":
            return default
        return int(value)
    except (TypeError, ValueError, OverflowError, struct.error) as err:
        raise UnsupportedSeriesError(
            f"{keyword} of {where} cannot be read ({err}); the header is damaged. {_FIX_FETCH}",
            series_instance_uid=uid,
            reason="damaged-header",
        ) from err


def check_complete(ds: Dataset, path: str, series_uid: str) -> None:
    """Refuse a file whose pixel data is declared longer than what the file holds.

    pydicom reads a truncated value without complaint (it simply comes back short); the
    reader parses each file once (the run's fetch leaves this check to it), so it checks the
    declared length of the pixel data against the file's size (deferred values, without
    reading the pixels) or against the value read (small images), by the header's own
    numbers. Not for deflated files, whose offsets count the inflated stream.

    Raises
    ------
    UnsupportedSeriesError
        ``truncated-file``, naming the file.
    """
    element = ds.get_item("PixelData", keep_deferred=True)
    if not isinstance(element, RawDataElement) or element.length == 0xFFFFFFFF:
        return  # converted already, or encapsulated: its items are checked as decoded
    if element.value is not None:
        held = len(element.value)
    elif element.value_tell is not None:
        held = os.path.getsize(path) - element.value_tell
    else:
        return
    if held < element.length:
        raise UnsupportedSeriesError(
            f"{path} is truncated: its pixel data is declared as {element.length} bytes but "
            f"the file ends {held} bytes after its start. Fetch the series again; if the copy "
            "in the archive is damaged, exclude the series.",
            series_instance_uid=series_uid,
            reason="truncated-file",
        )


def check_pixel_description(f: DicomFile) -> None:
    """Refuse a file whose Image Pixel attributes disagree with each other or its pixel data.

    Raises
    ------
    UnsupportedSeriesError
        ``inconsistent-bits`` naming the file and the values that disagree;
        ``truncated-file`` (:func:`check_complete`); ``damaged-header`` where one of them
        cannot be read at all.
    """
    ds, uid, where = f.dataset, f.series_instance_uid, f.path

    def refuse(what: str) -> UnsupportedSeriesError:
        return UnsupportedSeriesError(
            f"{where}: {what}; decoding it would give wrong Hounsfield units. The file's "
            f"header is damaged or was rewritten inconsistently. {_FIX_FETCH}",
            series_instance_uid=uid,
            reason="inconsistent-bits",
        )

    rows = _int(ds, "Rows", None, where, uid)
    columns = _int(ds, "Columns", None, where, uid)
    allocated = _int(ds, "BitsAllocated", None, where, uid)
    stored = _int(ds, "BitsStored", allocated, where, uid)
    high_bit = _int(ds, "HighBit", None, where, uid)
    representation = _int(ds, "PixelRepresentation", 0, where, uid)
    samples = _int(ds, "SamplesPerPixel", 1, where, uid) or 1
    frames = _int(ds, "NumberOfFrames", 1, where, uid) or 1
    for keyword in ("PhotometricInterpretation", "PixelPaddingValue", "PixelPaddingRangeLimit"):
        ds.get(keyword)  # read here, where a damaged value is named with its file
    if not rows or not columns or rows < 0 or columns < 0:
        raise refuse(f"Rows x Columns is {rows} x {columns}")
    if allocated not in (1, 8, 16, 32):
        raise refuse(f"BitsAllocated is {allocated}, not 8, 16 or 32 (or 1)")
    if stored is None or not 1 <= stored <= allocated:
        raise refuse(f"BitsStored {stored} is not between 1 and BitsAllocated {allocated}")
    if high_bit is not None and high_bit != stored - 1:
        raise refuse(f"HighBit {high_bit} is not BitsStored - 1 = {stored - 1}")
    if representation not in (0, 1):
        raise refuse(f"PixelRepresentation is {representation}, not 0 (unsigned) or 1 (signed)")
    if frames < 1:
        raise refuse(f"NumberOfFrames is {frames}")
    ts = UID(f.transfer_syntax_uid)
    if not ts.is_deflated:
        check_complete(ds, where, uid)
    if ts.is_compressed:
        return  # encapsulated: the decoded frame's shape is checked when it is decoded
    element = ds.get_item("PixelData", keep_deferred=True)
    if element is None:
        return
    if isinstance(element, RawDataElement) and element.value is None:
        length = int(element.length)
    else:
        length = len(ds.PixelData)
    expected = math.ceil(rows * columns * frames * samples * allocated / 8)
    if length not in (expected, expected + (expected % 2)):
        raise refuse(
            f"its pixel data holds {length} bytes but Rows x Columns x frames x samples x "
            f"BitsAllocated/8 = {rows} x {columns} x {frames} x {samples} x {allocated}/8 is "
            f"{expected} bytes"
        )


def check_series_encoding(files: Sequence[DicomFile], series_uid: str) -> None:
    """Refuse a series whose files disagree on BitsAllocated, BitsStored or
    PixelRepresentation (naming the files in the minority).

    Raises
    ------
    UnsupportedSeriesError
        ``inconsistent-bits``.
    """

    def key(f: DicomFile) -> tuple[object, ...]:
        ds = f.dataset
        return tuple(ds.get(k) for k in ("BitsAllocated", "BitsStored", "PixelRepresentation"))

    _refuse_minority(
        files,
        key,
        "BitsAllocated/BitsStored/PixelRepresentation",
        lambda text: UnsupportedSeriesError(
            text + " One encoding per series is expected; a single differing file is most "
            f"likely damaged. {_FIX_FETCH}",
            series_instance_uid=series_uid,
            reason="inconsistent-bits",
        ),
    )


def _refuse_minority(
    files: Sequence[DicomFile],
    key: Callable[[DicomFile], tuple[object, ...]],
    what: str,
    error: Callable[[str], OmasIdcError],
) -> None:
    counts = Counter(key(f) for f in files)
    if len(counts) < 2:
        return
    usual = counts.most_common(1)[0][0]
    odd = [f for f in files if key(f) != usual]
    listed = ", ".join(f"{f.path} ({list(key(f))})" for f in odd[:5])
    raise error(
        f"the files disagree on {what}: {counts[usual]} file(s) have {list(usual)} but "
        f"{len(odd)} differ: {listed}."
    )


def _finite(values: Sequence[float]) -> bool:
    return bool(np.all(np.isfinite(values)))


def check_slice(record: SliceRecord, series_uid: str) -> None:
    """Refuse a slice whose geometry or Modality LUT cannot place or scale it.

    Raises
    ------
    SeriesGeometryError
        ``invalid-spacing``, ``non-finite-position`` or ``invalid-orientation``.
    UnsupportedSeriesError
        ``zero-slope`` (RescaleSlope zero or not finite) or ``invalid-rescale``
        (RescaleIntercept not finite).
    """
    where = record.where()
    spacing = record.pixel_spacing
    if not _finite(spacing) or min(spacing) <= 0:
        raise SeriesGeometryError(
            f"PixelSpacing of {where} is {list(spacing)}; it must be two finite, positive "
            "distances in mm (PS3.3 10.7.1.3). Correct PixelSpacing in the file (or fetch the "
            "series again if it is damaged).",
            series_instance_uid=series_uid,
            reason="invalid-spacing",
        )
    if not _finite(record.position):
        raise SeriesGeometryError(
            f"ImagePositionPatient of {where} is {list(record.position)}; a slice needs a "
            "finite position to be placed. The file's header is damaged: fetch the series "
            "again, or exclude the series.",
            series_instance_uid=series_uid,
            reason="non-finite-position",
        )
    row = np.asarray(record.orientation[:3])
    col = np.asarray(record.orientation[3:])
    if (
        not _finite(record.orientation)
        or abs(float(np.linalg.norm(row)) - 1) > COSINE_TOLERANCE
        or abs(float(np.linalg.norm(col)) - 1) > COSINE_TOLERANCE
        or abs(float(row @ col)) > COSINE_TOLERANCE
    ):
        raise SeriesGeometryError(
            f"ImageOrientationPatient of {where} is {list(record.orientation)}; it must be two "
            "unit direction cosines at right angles (PS3.3 C.7.6.2.1.1). The file's header is "
            "damaged: fetch the series again, or exclude the series.",
            series_instance_uid=series_uid,
            reason="invalid-orientation",
        )
    slope, intercept = record.rescale_slope, record.rescale_intercept
    if not math.isfinite(slope) or slope == 0:
        raise UnsupportedSeriesError(
            f"RescaleSlope of {where} is {slope}; HU = stored x slope + intercept would make "
            "every voxel the same value. Correct RescaleSlope (usually 1) in the file, or "
            "fetch the series again if it is damaged.",
            series_instance_uid=series_uid,
            reason="zero-slope",
        )
    if not math.isfinite(intercept):
        raise UnsupportedSeriesError(
            f"RescaleIntercept of {where} is {intercept}; it must be a finite number (usually "
            "-1024 or 0). Correct it in the file, or fetch the series again if it is damaged.",
            series_instance_uid=series_uid,
            reason="invalid-rescale",
        )


def value_transform_warnings(records: Sequence[SliceRecord]) -> list[str]:
    """Warnings naming the slices whose RescaleSlope/Intercept or padding differ from most."""

    def key(r: SliceRecord) -> tuple[float, float, object]:
        return (r.rescale_slope, r.rescale_intercept, r.file.dataset.get("PixelPaddingValue"))

    counts = Counter(key(r) for r in records)
    if len(counts) < 2:
        return []
    usual = counts.most_common(1)[0][0]
    odd = [r for r in records if key(r) != usual]
    listed = ", ".join(f"{r.where()} {list(key(r))}" for r in odd[:5])
    return [
        f"{len(odd)} slice(s) have another RescaleSlope/RescaleIntercept/PixelPaddingValue "
        f"than the other {counts[usual]} ({list(usual)}): {listed}; legal, but rare in CT and "
        "also what a damaged header looks like: check these slices' HU"
    ]

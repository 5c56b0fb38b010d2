"""Verification of a downloaded series, and the markers that let a re-run skip it.

A series verifies when its folder holds exactly the objects the bucket lists, with the listed
sizes, their number equals the index's ``instanceCount``, and every file is a complete DICOM
file of that series. pydicom reads a truncated file without complaint (the last element
simply comes back short), so completeness is checked explicitly: the pixel data must have the
length its attributes imply (native) or consist of whole items (encapsulated).

A verified series gets a marker ``<root>/.omas-idc/fetched/<SeriesInstanceUID>.json`` (kept
outside the series folder, so that the folder holds only DICOM files, as idc-index lays it out).
A later run trusts the marker as long as the recorded files are still there with their sizes.
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

from omas_idc.errors import FetchError
from omas_idc.paths import path_part
from omas_idc.series_ref import SeriesRef

__all__ = [
    "check_dicom_file",
    "is_verified",
    "marker_path",
    "verify_series",
    "write_marker",
]

logger = logging.getLogger(__name__)

_ITEM = (0xFFFE, 0xE000)
_SEQUENCE_DELIMITER = (0xFFFE, 0xE0DD)


def marker_path(root: Path, series_instance_uid: str) -> Path:
    """Where the verification marker of a series lives below the download root.

    The UID is encoded by :func:`omas_idc.paths.path_part` (a DICOM UID is unchanged), so
    that whatever a selection holds, the marker stays in the markers' folder.
    """
    return root / ".omas-idc" / "fetched" / f"{path_part(series_instance_uid)}.json"


def _check_encapsulated(value: bytes) -> str | None:
    """Why encapsulated pixel data is incomplete, or ``None`` (PS3.5 A.4)."""
    offset = 0
    items = 0
    while offset + 8 <= len(value):
        group, element, length = struct.unpack_from("<HHI", value, offset)
        offset += 8
        if (group, element) == _SEQUENCE_DELIMITER:
            return None
        if (group, element) != _ITEM:
            return f"unexpected tag ({group:04X},{element:04X}) in encapsulated pixel data"
        if offset + length > len(value):
            return f"pixel data item {items} is cut short"
        offset += length
        items += 1
    if offset != len(value):
        return "encapsulated pixel data ends inside an item header"
    return None if items >= 2 else "encapsulated pixel data holds no frame"


def check_dicom_file(path: Path, series_instance_uid: str | None = None) -> str | None:
    """Why ``path`` is not a complete DICOM file of the series, or ``None`` if it is.

    Parameters
    ----------
    path
        The file.
    series_instance_uid
        The series it must belong to (not checked where ``None``).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError, struct.error) as err:
        return f"does not parse as DICOM ({err})"
    for keyword in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID"):
        if not ds.get(keyword):
            return f"has no {keyword} (the file is truncated or not a DICOM instance)"
    if series_instance_uid is not None and ds.SeriesInstanceUID != series_instance_uid:
        return f"belongs to series {ds.SeriesInstanceUID}"
    if "PixelData" not in ds:
        return None
    element = ds["PixelData"]
    value = element.value
    if not isinstance(value, bytes):
        return "has unreadable pixel data"
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        return _check_encapsulated(value) if element.is_undefined_length else None
    try:
        expected = (
            int(ds.Rows)
            * int(ds.Columns)
            * int(ds.get("SamplesPerPixel", 1))
            * int(ds.get("NumberOfFrames", 1) or 1)
            * int(ds.BitsAllocated)
            + 7
        ) // 8
    except (AttributeError, TypeError, ValueError) as err:
        return f"lacks the image attributes that size its pixel data ({err})"
    if len(value) < expected:
        return f"has {len(value)} bytes of pixel data, {expected} expected (truncated)"
    return None


def verify_series(
    ref: SeriesRef, series_dir: Path, listing: dict[str, int], *, check_contents: bool = True
) -> dict[str, int]:
    """Check the files of ``series_dir`` against the bucket ``listing`` and the index.

    ``check_contents`` also parses every file (a complete DICOM file of the series); a caller
    whose next step parses every file anyway (the run's read stage, which names any file it
    cannot decode) passes ``False``, so that a series is parsed once.

    Returns
    -------
    dict
        File name -> size of the verified files.

    Raises
    ------
    FetchError
        ``reason="count-mismatch"``, ``"size-mismatch"``, ``"invalid-dicom"``: what is wrong
        with which file.
    """
    uid = ref.series_instance_uid
    local = {p.name: p.stat().st_size for p in series_dir.iterdir() if p.is_file()}
    missing = sorted(set(listing) - set(local))
    extra = sorted(set(local) - set(listing))
    if missing or extra or len(local) != ref.instance_count:
        raise FetchError(
            f"{series_dir} holds {len(local)} files, the bucket lists {len(listing)} and the "
            f"index says {ref.instance_count} (missing {missing[:3]}, unexpected {extra[:3]}). "
            "Remove the folder and fetch again.",
            series_instance_uid=uid,
            reason="count-mismatch",
        )
    wrong = sorted(name for name, size in listing.items() if local[name] != size)
    if wrong:
        name = wrong[0]
        raise FetchError(
            f"{len(wrong)} files differ in size from the bucket (e.g. {name}: "
            f"{local[name]} bytes here, {listing[name]} in the bucket); the download was "
            "interrupted or the disk is full. Fetch again: such files are downloaded anew.",
            series_instance_uid=uid,
            reason="size-mismatch",
        )
    for name in sorted(local) if check_contents else ():
        problem = check_dicom_file(series_dir / name, uid)
        if problem is not None:
            raise FetchError(
                f"{series_dir / name} {problem}. The object in the bucket is damaged or not "
                "part of this series; report it to IDC (support@canceridc.dev) and exclude the "
                "series (--series-uid selects others).",
                series_instance_uid=uid,
                reason="invalid-dicom",
            )
    return local


def write_marker(root: Path, ref: SeriesRef, files: dict[str, int]) -> Path:
    """Record that ``ref`` verified with ``files`` (written atomically)."""
    path = marker_path(root, ref.series_instance_uid)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {
        "series_instance_uid": ref.series_instance_uid,
        "crdc_series_uuid": ref.crdc_series_uuid,
        "idc_version": ref.idc_version,
        "relative_dir": str(ref.relative_dir()),
        "files": files,
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(content, indent=1, sort_keys=True))
    tmp.replace(path)
    return path


def is_verified(root: Path, ref: SeriesRef) -> bool:
    """Whether ``ref`` verified earlier and its files are still there, with their sizes."""
    path = marker_path(root, ref.series_instance_uid)
    try:
        content = json.loads(path.read_text())
        files = dict(content["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if len(files) != ref.instance_count or content.get("crdc_series_uuid") != ref.crdc_series_uuid:
        return False
    series_dir = root / ref.relative_dir()
    for name, size in files.items():
        file = series_dir / name
        if not file.is_file() or file.stat().st_size != int(size):
            return False
    return True

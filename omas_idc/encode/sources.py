"""Source image headers for derived objects: loaded in slice order, checked and sanitised.

Values are copied from the source, never invented. Two kinds of damage are handled:

- Empty or absent Study/Series/SOP Instance UIDs (anonymisation damage, as in the
  TotalSegmentator example series) make references impossible: refused with EncodingError.
- Attributes that highdicom refuses to copy although they only carry no information (an empty
  SpecificCharacterSet, as in the dcmqi CT) are removed from our in-memory copy; an empty
  SpecificCharacterSet means the default repertoire (PS3.3 C.12.1.1.2), so removing it keeps
  the meaning.
"""

from __future__ import annotations

from collections.abc import Sequence

import pydicom
from pydicom.dataset import Dataset

from omas_idc.errors import EncodingError
from omas_idc.read.reader import SeriesHeaders
from omas_idc.volume import CTVolume

__all__ = ["SourceSeries", "load_source_datasets", "sanitise_source"]

#: What the encoder encodes onto: a decoded volume or, where the HU values are not needed, the
#: series' headers (:func:`omas_idc.read.read_series_headers`, which also carries the source
#: datasets, so they are not read again).
SourceSeries = CTVolume | SeriesHeaders

_REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


def sanitise_source(ds: Dataset) -> Dataset:
    """Remove header values that carry no information but that highdicom refuses to copy."""
    if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
        del ds.SpecificCharacterSet
    return ds


def _check_uids(ds: Dataset, path: str, series_uid: str) -> None:
    empty = [kw for kw in _REQUIRED_UIDS if not str(ds.get(kw, "") or "").strip()]
    if empty:
        raise EncodingError(
            f"source image {path} has empty {', '.join(empty)}: a SEG must reference its "
            "source series, study and images by UID. Restore the UIDs from the original "
            "data (anonymisation removed them) before encoding.",
            series_instance_uid=series_uid or None,
            reason="empty-uids",
        )


def load_source_datasets(volume: SourceSeries) -> list[Dataset]:
    """The source image headers of ``volume``, one per distinct file, in slice order.

    A :class:`~omas_idc.read.SeriesHeaders`, and a :class:`~omas_idc.volume.CTVolume` read by
    :func:`~omas_idc.read.read_series`, bring them along (the reader's own parse); otherwise
    they are read from the volume's files (without pixel data).

    Raises
    ------
    EncodingError
        If the volume has no source files or a source lacks its UIDs.
    """
    if not volume.files:
        raise EncodingError(
            "the volume carries no source files; read it with omas_idc.read.read_series",
            series_instance_uid=volume.series_instance_uid or None,
            reason="no-sources",
        )
    known = volume.datasets if len(volume.datasets) == len(volume.files) else None
    datasets: list[Dataset] = []
    seen: set[str] = set()
    for index, path in enumerate(volume.files):
        if path in seen:
            continue
        seen.add(path)
        ds = known[index] if known is not None else pydicom.dcmread(path, stop_before_pixels=True)
        _check_uids(ds, path, volume.series_instance_uid)
        datasets.append(sanitise_source(ds))
    _check_consistent(datasets, volume)
    return datasets


def _check_consistent(datasets: Sequence[Dataset], volume: SourceSeries) -> None:
    series = {str(ds.SeriesInstanceUID) for ds in datasets}
    if series != {volume.series_instance_uid}:
        raise EncodingError(
            f"the source files belong to series {sorted(series)}, not only to the volume's "
            f"series {volume.series_instance_uid}",
            series_instance_uid=volume.series_instance_uid,
            reason="mixed-sources",
        )

"""``read_series``: DICOM CT files -> :class:`~omas_idc.volume.CTVolume`, or a clear refusal."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import UID

from omas_idc.errors import UnsupportedSeriesError
from omas_idc.geometry import VolumeGeometry
from omas_idc.read.checks import build_geometry, drop_localizers
from omas_idc.read.consistency import (
    check_pixel_description,
    check_series_encoding,
    check_slice,
    value_transform_warnings,
)
from omas_idc.read.decode import decode_volume
from omas_idc.read.files import (
    CT_VOLUME_SOP_CLASSES,
    PARSE_ERRORS,
    SeriesFiles,
    collect_paths,
    group_by_series,
    scan_files,
)
from omas_idc.read.records import slices_of
from omas_idc.read.slices import SliceRecord
from omas_idc.volume import CTVolume, SeriesHeader, SourceReference

__all__ = [
    "DEFAULT_SINGLE_SLICE_STEP_MM",
    "SeriesHeaders",
    "Source",
    "list_series",
    "read_series",
    "read_series_headers",
]

logger = logging.getLogger(__name__)

#: A folder, one file, or several files.
Source = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]

#: Slice step of a one-slice volume where the file gives no SliceThickness (mm).
DEFAULT_SINGLE_SLICE_STEP_MM = 1.0


def list_series(source: Source, *, workers: int | None = None) -> list[SeriesFiles]:
    """The image series found in ``source`` (non-DICOM files and non-image objects skipped).

    Parameters
    ----------
    source
        A folder (searched recursively) or a list of files.
    workers
        Threads for reading headers (default: one; see
        :func:`~omas_idc.read.files.scan_files`).

    Returns
    -------
    list of SeriesFiles
        One entry per SeriesInstanceUID, the largest first.
    """
    return group_by_series(scan_files(collect_paths(source), workers=workers))


def _few_files(series: SeriesFiles) -> str:
    """The files of a series of one to three files (a damaged UID makes such a 'series')."""
    if len(series.files) > 3:
        return ""
    return ": " + ", ".join(f.path for f in series.files)


def _select(series: list[SeriesFiles], wanted: str | None, source: Source) -> SeriesFiles:
    listing = "\n".join(f"  {s.label()}{_few_files(s)}" for s in series)
    if not series:
        raise UnsupportedSeriesError(
            f"no DICOM image files found in {source}. Point to the folder of one CT series.",
            series_instance_uid=wanted,
            reason="no-images",
        )
    if wanted is not None:
        for s in series:
            if s.series_instance_uid == wanted:
                return s
        raise UnsupportedSeriesError(
            f"no image series with this SeriesInstanceUID in {source}; found:\n{listing}",
            series_instance_uid=wanted,
            reason="series-not-found",
        )
    if len(series) > 1:
        raise UnsupportedSeriesError(
            f"{source} holds {len(series)} image series; choose one with "
            f"series_instance_uid= (CLI: --series-uid):\n{listing}",
            reason="several-series",
        )
    return series[0]


def _ct_files(chosen: SeriesFiles) -> tuple[list[SliceRecord], list[str]]:
    uid = chosen.series_instance_uid
    ct = [f for f in chosen.files if f.is_ct_volume_class]
    other = [f for f in chosen.files if not f.is_ct_volume_class]
    if not ct:
        f = chosen.files[0]
        secondary = f.sop_class_uid.startswith("1.2.840.10008.5.1.4.1.1.7")
        why = (
            "Secondary Capture images are screenshots (dose reports, scout views) even when "
            "their Modality says CT"
            if secondary
            else f"only {', '.join(CT_VOLUME_SOP_CLASSES.values())} objects form CT volumes"
        )
        raise UnsupportedSeriesError(
            f"not a CT volume: the series holds {f.sop_class_name} objects (Modality "
            f"{f.modality or 'absent'}); {why}. Select the series with the CT slices.",
            series_instance_uid=uid,
            reason="not-ct-volume",
        )
    unknown = [f for f in other if UID(f.sop_class_uid).name == f.sop_class_uid]
    if unknown:
        raise UnsupportedSeriesError(
            f"{unknown[0].path} has the SOP Class UID {unknown[0].sop_class_uid!r}, which is no "
            "known DICOM object: its header is damaged (the other files are "
            f"{ct[0].sop_class_name}). Fetch the series again; if the copy in the archive is "
            "damaged, exclude the series.",
            series_instance_uid=uid,
            reason="damaged-header",
        )
    warnings = []
    if other:
        warnings.append(
            f"ignored {len(other)} non-CT-volume image(s) in the series "
            f"({', '.join(sorted({f.sop_class_name for f in other}))}): "
            + ", ".join(f.path for f in other[:5])
        )
    records: list[SliceRecord] = []
    for f in ct:
        try:
            check_pixel_description(f)
            records += slices_of(f)
        except PARSE_ERRORS as err:
            raise UnsupportedSeriesError(
                f"the header of {f.path} cannot be read ({type(err).__name__}: {err}); the "
                "file is damaged. Fetch the series again; if the copy in the archive is "
                "damaged, exclude the series.",
                series_instance_uid=uid,
                reason="damaged-header",
            ) from err
    check_series_encoding(ct, uid)
    for r in records:
        check_slice(r, uid)
    warnings += value_transform_warnings(records)
    return records, warnings


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _series_number(value: object) -> int | None:
    """SeriesNumber, or None where absent or unreadable (it is descriptive only)."""
    try:
        return int(value) if value not in (None, "") else None  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _header(ds: Dataset) -> SeriesHeader:
    number = ds.get("SeriesNumber")
    return SeriesHeader(
        series_instance_uid=_text(ds, "SeriesInstanceUID"),
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        frame_of_reference_uid=_text(ds, "FrameOfReferenceUID"),
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        patient_sex=_text(ds, "PatientSex"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        study_id=_text(ds, "StudyID"),
        accession_number=_text(ds, "AccessionNumber"),
        referring_physician_name=_text(ds, "ReferringPhysicianName"),
        series_number=_series_number(number),
        series_description=_text(ds, "SeriesDescription"),
        modality=_text(ds, "Modality") or "CT",
        manufacturer=_text(ds, "Manufacturer"),
        body_part_examined=_text(ds, "BodyPartExamined"),
    )


def _uid_warnings(header: SeriesHeader, records: list[SliceRecord]) -> list[str]:
    """Anonymisation damage: say which UIDs are empty or were taken from the File Meta."""
    warnings = []
    empty = [
        name
        for name, value in (
            ("SeriesInstanceUID", header.series_instance_uid),
            ("StudyInstanceUID", header.study_instance_uid),
            ("FrameOfReferenceUID", header.frame_of_reference_uid),
        )
        if not value
    ]
    if empty:
        warnings.append(
            f"missing UIDs: {', '.join(empty)} empty in the files (anonymisation damage?); they "
            "are left empty, never invented, so no DICOM SEG/SR can reference this series"
        )
    from_meta = sum(1 for r in records if r.file.uid_from_file_meta)
    if from_meta:
        warnings.append(
            f"missing UIDs: SOPClassUID/SOPInstanceUID empty in {from_meta} file(s); taken "
            "from the File Meta Information (Media Storage SOP Class/Instance UID)"
        )
    if any(not r.file.sop_instance_uid for r in records):
        warnings.append("missing UIDs: some images have no SOPInstanceUID at all")
    return warnings


def read_series(
    source: Source,
    *,
    series_instance_uid: str | None = None,
    allow_tilt: bool = True,
    workers: int | None = None,
) -> CTVolume:
    """Read one DICOM CT series into a :class:`~omas_idc.volume.CTVolume`.

    Parameters
    ----------
    source
        A folder (searched recursively; non-DICOM files and non-image objects are skipped) or
        a list of files.
    series_instance_uid
        The series to read where ``source`` holds several image series.
    allow_tilt
        Carry gantry tilt in a sheared affine (default). ``False`` refuses tilted series
        with ``SeriesGeometryError(reason="tilt")``.
    workers
        Threads for reading headers and decoding pixels. Default: headers in one thread
        (parsing holds the GIL; see :func:`~omas_idc.read.files.scan_files`), pixels in one
        thread per CPU (the decoders release it).

    Returns
    -------
    CTVolume
        int16 HU (z, y, x) with slice 0 lowest along the slice normal, its geometry, the
        source SOP instance (and frame) of each slice, header fields and warnings.

    Raises
    ------
    UnsupportedSeriesError
        No images, several series and none chosen, not a CT volume (e.g. Secondary Capture),
        or pixel data that cannot be decoded.
    SeriesGeometryError
        Mixed orientation, sizes or pixel spacing; duplicate positions; gaps; non-uniform
        spacing; tilt where ``allow_tilt`` is False; missing geometry attributes.

    Notes
    -----
    Anonymisation damage: empty SOPClassUID/SOPInstanceUID are taken from the File Meta
    Information (PS3.10 7.1); empty Series/Study/Frame of Reference UIDs stay empty in the
    header (never invented) and are reported in ``warnings`` as "missing UIDs"; the encoder
    refuses to write a SEG for such a series.

    A one-slice volume's slice step is the slice normal times SliceThickness (or
    :data:`DEFAULT_SINGLE_SLICE_STEP_MM` where absent), so its voxel volume is physical.
    """
    ordered, geometry, warnings = _read_ordered(source, series_instance_uid, allow_tilt, workers)
    uid = ordered[0].file.series_instance_uid
    hu, more = decode_volume(ordered, uid, workers=workers)
    warnings += more
    header, refs, unique = _finish(ordered, warnings)
    return CTVolume(
        hu=hu,
        geometry=geometry,
        source_refs=refs,
        header=header,
        files=tuple(r.file.path for r in ordered),
        warnings=unique,
        datasets=_headers_only(ordered),
    )


@dataclass(frozen=True, eq=False)
class SeriesHeaders:
    """A CT series read and checked without its pixels: what derived objects need.

    Everything a :class:`~omas_idc.volume.CTVolume` holds except the HU array, so that no
    stage can mistake it for image data. The encoder (SEG) needs only this: the grid, the
    source references and the source headers.

    Attributes
    ----------
    geometry, source_refs, header, files, warnings
        As in :class:`~omas_idc.volume.CTVolume` (the same checks and the same order).
    datasets
        The source header of each slice, in slice order (for multi-frame sources the one
        dataset, repeated), without pixel data, as ``pydicom.dcmread(path,
        stop_before_pixels=True)`` would give it (values over 4 KiB are read on access).
    """

    geometry: VolumeGeometry
    source_refs: tuple[SourceReference, ...]
    header: SeriesHeader
    files: tuple[str, ...]
    datasets: tuple[Dataset, ...]
    warnings: tuple[str, ...] = ()

    @property
    def series_instance_uid(self) -> str:
        """The source SeriesInstanceUID (may be empty for anonymisation-damaged series)."""
        return self.header.series_instance_uid

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (slices, rows, columns) of the series' volume."""
        return self.geometry.shape


def _read_ordered(
    source: Source,
    series_instance_uid: str | None,
    allow_tilt: bool,
    workers: int | None,
) -> tuple[list[SliceRecord], VolumeGeometry, list[str]]:
    """Select the series, drop localizers, order the slices and check the geometry."""
    series = list_series(source, workers=workers)
    chosen = _select(series, series_instance_uid, source)
    uid = chosen.series_instance_uid
    warnings: list[str] = []
    records, more = _ct_files(chosen)
    warnings += more
    records, more = drop_localizers(records, uid)
    warnings += more
    thickness = records[0].slice_thickness
    step = thickness if thickness and thickness > 0 else DEFAULT_SINGLE_SLICE_STEP_MM
    ordered, geometry, more = build_geometry(
        records, uid, allow_tilt=allow_tilt, single_slice_step_mm=step
    )
    warnings += more
    return ordered, geometry, warnings


def _headers_only(ordered: list[SliceRecord]) -> tuple[Dataset, ...]:
    """The parsed header of each slice without its (deferred) pixel data, as
    ``stop_before_pixels`` would give it: what derived objects copy from their sources."""
    datasets = []
    for r in ordered:
        ds = r.file.dataset
        if "PixelData" in ds:
            del ds.PixelData
        datasets.append(ds)
    return tuple(datasets)


def _finish(
    ordered: list[SliceRecord], warnings: list[str]
) -> tuple[SeriesHeader, tuple[SourceReference, ...], tuple[str, ...]]:
    """Header, source references and the de-duplicated warnings (logged)."""
    first = ordered[0].file
    try:
        header = _header(first.dataset)
    except PARSE_ERRORS as err:
        raise UnsupportedSeriesError(
            f"the patient/study/series attributes of {first.path} cannot be read "
            f"({type(err).__name__}: {err}); the file is damaged. Fetch the series again; if "
            "the copy in the archive is damaged, exclude the series.",
            series_instance_uid=first.series_instance_uid,
            reason="damaged-header",
        ) from err
    warnings += [w for w in _uid_warnings(header, ordered) if w not in warnings]
    unique = tuple(dict.fromkeys(warnings))
    refs = tuple(
        SourceReference(r.file.sop_class_uid, r.file.sop_instance_uid, r.frame_number)
        for r in ordered
    )
    for w in unique:
        logger.info("series %s: %s", header.series_instance_uid or "(empty SeriesInstanceUID)", w)
    return header, refs, unique


def read_series_headers(
    source: Source,
    *,
    series_instance_uid: str | None = None,
    allow_tilt: bool = True,
    workers: int | None = None,
) -> SeriesHeaders:
    """Read and check one DICOM CT series like :func:`read_series`, without decoding pixels.

    For stages that need the grid and the source headers but not the HU values, such as
    encoding an existing label map as DICOM SEG. The same checks refuse the same series
    (except undecodable pixel data, which is not looked at).

    Parameters
    ----------
    source, series_instance_uid, allow_tilt, workers
        As for :func:`read_series`.

    Returns
    -------
    SeriesHeaders
        Geometry, source references, header fields, files, source datasets and warnings.

    Raises
    ------
    UnsupportedSeriesError, SeriesGeometryError
        As for :func:`read_series`.
    """
    ordered, geometry, warnings = _read_ordered(source, series_instance_uid, allow_tilt, workers)
    datasets = _headers_only(ordered)
    header, refs, unique = _finish(ordered, warnings)
    return SeriesHeaders(
        geometry=geometry,
        source_refs=refs,
        header=header,
        files=tuple(r.file.path for r in ordered),
        datasets=datasets,
        warnings=unique,
    )

"""``SeriesRef``: one selected IDC series, the contract between the select and fetch stages.

A selection is a list of :class:`SeriesRef`, saved as a parquet table (one row per series, one
column per field, plus the IDC data version in the file's metadata) by
:func:`write_selection` and read back by :func:`read_selection`. This module imports neither
duckdb nor idc-index, so that every stage can use it; pyarrow is imported inside the two
functions.

Values in a selection come from outside the program (the IDC index, BigQuery, a file someone
edited): before any of them becomes part of a path or a request, :func:`check_ref` checks the
identifiers (:func:`check_uid`: the DICOM UID grammar; :func:`check_uuid`: IDC's
``crdc_series_uuid``; the bucket name), and :meth:`SeriesRef.relative_dir` encodes the other
values with :func:`omas_idc.paths.path_part`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from omas_idc.errors import SelectionError
from omas_idc.paths import path_part

__all__ = [
    "GCS_BUCKETS",
    "SeriesRef",
    "check_bucket",
    "check_ref",
    "check_uid",
    "check_uuid",
    "read_selection",
    "selection_provenance",
    "unique_series",
    "write_selection",
]

#: IDC's AWS bucket -> the GCS bucket holding the same objects (as idc-index maps them).
GCS_BUCKETS: dict[str, str] = {
    "idc-open-data": "idc-open-data",
    "idc-open-data-two": "idc-open-idc1",
    "idc-open-data-cr": "idc-open-cr",
}

_METADATA_KEY = b"omas_idc.selection"

#: PS3.5 9.1: components of digits separated by '.', no leading zero in a multi-digit one.
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_UID_MAX_LENGTH = 64
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: S3 bucket names: 3 to 63 lower-case letters, digits, '.' and '-', starting and ending with
#: a letter or digit.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def check_uid(value: str, what: str) -> str:
    """``value`` if it is a DICOM UID (PS3.5 9.1); a :class:`SelectionError` otherwise.

    A UID is made of numeric components separated by ``.``, none with a leading zero unless
    it is ``0`` itself, at most 64 characters in all. Only such a value may become part of a
    path or a request.

    Parameters
    ----------
    value
        The value to check (from a selection, the IDC index, a command line).
    what
        What it is and where it comes from, for the message
        (``"SeriesInstanceUID in row 3 of sel.parquet"``).

    Returns
    -------
    str
        ``value`` unchanged.

    Raises
    ------
    SelectionError
        ``reason="invalid-uid"``, naming ``what`` and the value.
    """
    if isinstance(value, str) and len(value) <= _UID_MAX_LENGTH and _UID.fullmatch(value):
        return value
    raise SelectionError(
        f"{what} is {value!r}, which is not a DICOM UID (PS3.5 9.1: digits in components "
        f"separated by '.', no leading zeros, at most {_UID_MAX_LENGTH} characters). Correct "
        "the selection (select again with `omas-idc select`) or leave the series out.",
        reason="invalid-uid",
    )


def check_uuid(value: str, what: str) -> str:
    """``value`` if it is a UUID (IDC's ``crdc_series_uuid``); a :class:`SelectionError` otherwise.

    Raises
    ------
    SelectionError
        ``reason="invalid-uuid"``, naming ``what`` and the value.
    """
    if isinstance(value, str) and _UUID.fullmatch(value):
        return value
    raise SelectionError(
        f"{what} is {value!r}, which is not a UUID (8-4-4-4-12 hexadecimal digits, the form of "
        "IDC's crdc_series_uuid). Correct the selection (select again with `omas-idc select`) "
        "or leave the series out.",
        reason="invalid-uuid",
    )


def check_bucket(value: str, what: str) -> str:
    """``value`` if it is a valid S3 bucket name; a :class:`SelectionError` otherwise.

    Raises
    ------
    SelectionError
        ``reason="invalid-bucket"``, naming ``what`` and the value.
    """
    if isinstance(value, str) and _BUCKET.fullmatch(value) and ".." not in value:
        return value
    raise SelectionError(
        f"{what} is {value!r}, which is not an S3 bucket name (3 to 63 lower-case letters, "
        "digits, '.' and '-'). Correct the selection (select again with `omas-idc select`).",
        reason="invalid-bucket",
    )


@dataclass(frozen=True)
class SeriesRef:
    """One IDC series to process.

    Attributes
    ----------
    series_instance_uid, study_instance_uid, patient_id
        The DICOM identifiers of the series.
    collection_id
        IDC's short collection name (``"nlst"``).
    modality
        DICOM Modality of the series (``"CT"``).
    crdc_series_uuid
        IDC's identifier of the series: the folder of its files in the bucket.
    instance_count
        Number of DICOM instances (files) in the series.
    size_bytes
        Total size of the files as the index records it (approximate: the index gives MB).
    aws_bucket
        The AWS S3 bucket of the files; the GCS bucket follows from :data:`GCS_BUCKETS`.
    idc_version
        The IDC data release the selection was made from (``25`` for v25).
    sop_class_uid
        SOP Class UID of the series' instances.
    license_short_name, body_part_examined, series_description
        As in the IDC index (``None`` where absent).
    convolution_kernel, slice_thickness_mm
        From ``ct_index`` where it was available, else ``None`` (used by the per-study ranking).
    regular_volume
        ``volume_geometry_index.regularly_spaced_3d_volume`` where it was available, else
        ``None`` (unknown: the read stage decides).
    """

    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    collection_id: str
    modality: str
    crdc_series_uuid: str
    instance_count: int
    size_bytes: int
    aws_bucket: str
    idc_version: int
    sop_class_uid: str = "1.2.840.10008.5.1.4.1.1.2"
    license_short_name: str | None = None
    body_part_examined: str | None = None
    series_description: str | None = None
    convolution_kernel: str | None = None
    slice_thickness_mm: float | None = None
    regular_volume: bool | None = None

    def __post_init__(self) -> None:
        for name in ("series_instance_uid", "crdc_series_uuid", "aws_bucket"):
            if not getattr(self, name):
                raise ValueError(f"SeriesRef.{name} must not be empty")
        if self.instance_count < 0 or self.size_bytes < 0:
            raise ValueError(
                f"series {self.series_instance_uid}: instance_count and size_bytes must not be "
                f"negative, got {self.instance_count} and {self.size_bytes}"
            )

    @property
    def gcs_bucket(self) -> str:
        """The GCS bucket holding this series (IDC mirrors every AWS bucket on GCS)."""
        return GCS_BUCKETS.get(self.aws_bucket, self.aws_bucket)

    @property
    def aws_url(self) -> str:
        """``s3://<bucket>/<crdc_series_uuid>/*``: the series' objects in AWS."""
        return f"s3://{self.aws_bucket}/{self.crdc_series_uuid}/*"

    @property
    def gcs_url(self) -> str:
        """The series' objects in GCS, addressed through its S3-compatible endpoint."""
        return f"s3://{self.gcs_bucket}/{self.crdc_series_uuid}/*"

    def bucket_url(self, source: str) -> str:
        """The series' objects in ``source`` (``"aws"`` or ``"gcs"``)."""
        if source == "aws":
            return self.aws_url
        if source == "gcs":
            return self.gcs_url
        raise ValueError(f"source must be 'aws' or 'gcs', got {source!r}")

    def relative_dir(self) -> PurePosixPath:
        """The series' folder below the download root, as idc-index lays it out by default.

        idc-index's ``DOWNLOAD_HIERARCHY_DEFAULT`` is
        ``%collection_id/%PatientID/%StudyInstanceUID/%Modality_%SeriesInstanceUID``. Each
        part goes through :func:`omas_idc.paths.path_part`: ordinary values are unchanged,
        and a value such as ``../../x`` stays one folder name inside the download root.
        """
        return self.study_dir() / path_part(f"{self.modality}_{self.series_instance_uid}")

    def study_dir(self) -> PurePosixPath:
        """``<collection>/<PatientID>/<StudyInstanceUID>``, each part through
        :func:`omas_idc.paths.path_part`: the study's folder in the download and output layouts."""
        return PurePosixPath(
            path_part(self.collection_id, "unknown-collection"),
            path_part(self.patient_id, "unknown-patient"),
            path_part(self.study_instance_uid, "unknown-study"),
        )

    def to_record(self) -> dict[str, Any]:
        """The fields as a plain dict (one parquet row)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> SeriesRef:
        """Build a ``SeriesRef`` from :meth:`to_record`'s dict, ignoring unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


def check_ref(ref: SeriesRef, where: str = "") -> SeriesRef:
    """``ref`` if its identifiers may become paths and requests; a :class:`SelectionError` if not.

    Checks the SeriesInstanceUID, StudyInstanceUID and SOP Class UID (:func:`check_uid`), the
    ``crdc_series_uuid`` (:func:`check_uuid`) and the bucket name (:func:`check_bucket`).
    The other values (collection, PatientID, modality) are free text that
    :meth:`SeriesRef.relative_dir` encodes.

    Parameters
    ----------
    ref
        The series.
    where
        Where it comes from, for the message (``"row 3 of sel.parquet"``).

    Raises
    ------
    SelectionError
        Naming the field, its value and ``where``; ``reason`` is ``"invalid-uid"``,
        ``"invalid-uuid"`` or ``"invalid-bucket"``.
    """
    suffix = f" in {where}" if where else ""
    check_uid(ref.series_instance_uid, f"SeriesInstanceUID{suffix}")
    check_uid(
        ref.study_instance_uid, f"StudyInstanceUID{suffix} (series {ref.series_instance_uid})"
    )
    check_uid(ref.sop_class_uid, f"SOPClassUID{suffix} (series {ref.series_instance_uid})")
    check_uuid(ref.crdc_series_uuid, f"crdc_series_uuid{suffix} (series {ref.series_instance_uid})")
    check_bucket(ref.aws_bucket, f"aws_bucket{suffix} (series {ref.series_instance_uid})")
    return ref


def _schema() -> Any:
    import pyarrow as pa

    types = {
        "instance_count": pa.int64(),
        "size_bytes": pa.int64(),
        "idc_version": pa.int32(),
        "slice_thickness_mm": pa.float64(),
        "regular_volume": pa.bool_(),
    }
    return pa.schema(
        [pa.field(f.name, types.get(f.name, pa.string())) for f in dataclasses.fields(SeriesRef)]
    )


def write_selection(
    refs: Sequence[SeriesRef], path: Path, *, provenance: dict[str, str] | None = None
) -> None:
    """Write a selection as a parquet table, atomically (temporary name, then rename).

    Parameters
    ----------
    refs
        The selected series, in the order they should be processed.
    path
        The parquet file to write.
    provenance
        Extra text stored in the file's metadata (the filters, the source); the IDC version
        is also a column of every row.
    """
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema()
    columns = {name: [getattr(r, name) for r in refs] for name in schema.names}
    metadata = {_METADATA_KEY: json.dumps(provenance or {}, sort_keys=True).encode()}
    table = pa.table(columns, schema=schema.with_metadata(metadata))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def read_selection(path: Path) -> list[SeriesRef]:
    """Read a selection written by :func:`write_selection`.

    The rows' identifiers are not checked here, so that one bad row does not hide the others:
    each stage checks a series before its values become paths or requests (:func:`check_ref`;
    the fetch stage reports a bad row as a failed series and goes on with the others).

    Raises
    ------
    ValueError
        If the file lacks a column a ``SeriesRef`` needs, or a row lacks a required value
        (the message names the row).
    """
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    required = {f.name for f in dataclasses.fields(SeriesRef) if f.default is dataclasses.MISSING}
    missing = required - set(table.column_names)
    if missing:
        raise ValueError(
            f"{path} is not an omas-idc selection: columns {sorted(missing)} are missing. "
            "Write it with `omas-idc select ... --out FILE`."
        )
    refs = []
    for number, row in enumerate(table.to_pylist()):
        try:
            refs.append(SeriesRef.from_record(row))
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{path} row {number} is not a valid series: {err}. Write the selection with "
                "`omas-idc select ... --out FILE`."
            ) from err
    return refs


def selection_provenance(path: Path) -> dict[str, str]:
    """The provenance dict stored by :func:`write_selection` (empty if there is none)."""
    import json

    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(_METADATA_KEY)
    return dict(json.loads(raw)) if raw else {}


def unique_series(refs: Iterable[SeriesRef]) -> list[SeriesRef]:
    """``refs`` without repeated SeriesInstanceUIDs (first occurrence kept, order kept)."""
    seen: set[str] = set()
    out = []
    for ref in refs:
        if ref.series_instance_uid not in seen:
            seen.add(ref.series_instance_uid)
            out.append(ref)
    return out

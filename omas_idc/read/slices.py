"""One record per slice: where it lies, how its stored values map to HU, where its pixels are.

A single-frame CT image gives one record (:func:`single_frame_record`); an Enhanced or Legacy
Converted Enhanced CT image gives one per frame (:mod:`omas_idc.read.multiframe`);
:func:`omas_idc.read.records.slices_of` picks the one that applies.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from omas_idc.errors import SeriesGeometryError
from omas_idc.read.files import DicomFile

__all__ = [
    "SliceRecord",
    "decimals",
    "float_tuple",
    "image_type_of",
    "optional_float",
    "single_frame_record",
]


@dataclass(frozen=True)
class SliceRecord:
    """One slice of a series, before sorting.

    Attributes
    ----------
    file
        The file holding the slice.
    frame_index
        0-based frame index in a multi-frame file, ``None`` for single-frame images.
    orientation, position, pixel_spacing
        ImageOrientationPatient, ImagePositionPatient and PixelSpacing (PS3.3 C.7.6.2,
        C.7.6.16.2.1/.3/.4 for the functional groups of multi-frame images).
    rescale_slope, rescale_intercept
        Modality LUT of this slice (PS3.3 C.11.1.1.2; C.7.6.16.2.9 for multi-frame).
    image_type
        ImageType, or the FrameType of the frame (PS3.3 C.8.15.3.1).
    slice_thickness
        SliceThickness in mm where present.
    """

    file: DicomFile
    frame_index: int | None
    orientation: tuple[float, float, float, float, float, float]
    position: tuple[float, float, float]
    pixel_spacing: tuple[float, float]
    rows: int
    columns: int
    rescale_slope: float
    rescale_intercept: float
    image_type: tuple[str, ...]
    slice_thickness: float | None

    @property
    def frame_number(self) -> int | None:
        """1-based frame number (as in DICOM references), ``None`` for single-frame images."""
        return None if self.frame_index is None else self.frame_index + 1

    @property
    def is_localizer(self) -> bool:
        """ImageType (or FrameType) value 3 is LOCALIZER (PS3.3 C.8.2.1.1.1)."""
        return "LOCALIZER" in self.image_type

    def where(self) -> str:
        """The file (and frame) for messages."""
        frame = f" frame {self.frame_number}" if self.frame_number is not None else ""
        return f"{self.file.path}{frame}"


def float_tuple(value: object, n: int, what: str, where: str, series_uid: str) -> tuple[float, ...]:
    """``n`` floats from a multi-valued DS, or a SeriesGeometryError naming what is missing."""
    try:
        values = tuple(float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as err:
        raise SeriesGeometryError(
            f"{what} is missing or not numeric in {where}; a volume cannot be placed in "
            "patient space without it. Check the export of this series.",
            series_instance_uid=series_uid,
            reason="missing-geometry",
        ) from err
    if len(values) != n:
        raise SeriesGeometryError(
            f"{what} has {len(values)} values instead of {n} in {where}.",
            series_instance_uid=series_uid,
            reason="missing-geometry",
        )
    return values


def decimals(ds: Dataset, keyword: str) -> object:
    """The value of a DS attribute: a list of floats, or what pydicom makes of it.

    Reading a series converts the same few decimal strings in every file; parsing them
    straight from the file's bytes (DS is ASCII in every character set, PS3.5 6.2) avoids
    pydicom's per-value objects. Anything that is not plain numbers (empty, padded with NULs,
    already converted) takes pydicom's conversion, so the result never depends on the path.
    """
    tag = tag_for_keyword(keyword)
    element = ds.get_item(tag) if tag is not None else None
    if isinstance(element, RawDataElement) and element.value:
        try:
            return [float(v) for v in element.value.split(b"\\")]
        except ValueError:
            pass
    return ds.get(keyword)


def optional_float(ds: Dataset, keyword: str) -> float | None:
    """A numeric attribute, or None where absent or empty."""
    value = decimals(ds, keyword)
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    if value is None or value == "":
        return None
    return float(value)  # type: ignore[arg-type]


def image_type_of(value: object) -> tuple[str, ...]:
    """ImageType/FrameType as an upper-case tuple."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value.upper(),)
    return tuple(str(v).upper() for v in value)  # type: ignore[attr-defined]


def single_frame_record(f: DicomFile) -> SliceRecord:
    """The slice record of a single-frame CT image (PS3.3 C.7.6.2, C.11.1.1.2)."""
    ds = f.dataset
    uid = f.series_instance_uid
    slope = optional_float(ds, "RescaleSlope")
    intercept = optional_float(ds, "RescaleIntercept")
    return SliceRecord(
        file=f,
        frame_index=None,
        orientation=float_tuple(  # type: ignore[arg-type]
            decimals(ds, "ImageOrientationPatient"), 6, "ImageOrientationPatient", f.path, uid
        ),
        position=float_tuple(  # type: ignore[arg-type]
            decimals(ds, "ImagePositionPatient"), 3, "ImagePositionPatient", f.path, uid
        ),
        pixel_spacing=float_tuple(  # type: ignore[arg-type]
            decimals(ds, "PixelSpacing"), 2, "PixelSpacing", f.path, uid
        ),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        rescale_slope=1.0 if slope is None else slope,
        rescale_intercept=0.0 if intercept is None else intercept,
        image_type=f.image_type,
        slice_thickness=optional_float(ds, "SliceThickness"),
    )

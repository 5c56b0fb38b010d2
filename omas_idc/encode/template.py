"""One highdicom Segmentation per series as the template of every SEG of that series.

highdicom builds and checks what all SEGs of a series share: patient, study, equipment and
frame of reference copied from the sources, the references to every source image, the shared
functional groups (orientation, pixel measures, slice spacing), the dimension index, and the
per-frame functional group item of a plane (plane position, derivation reference). It does so
once, for a stub pixel array with one plane labelled; the other planes' items are
that item with their source reference and position put in (:func:`build_template`). A task's
SEG then takes the template's header and, for the frames it holds, the per-plane items encoded
once as bytes, with only the dimension index values and segment number patched in
(:meth:`SegTemplate.functional_groups`). The result is what highdicom writes for the same
input (``tests/encode/test_fast_path.py`` compares both), at a fraction of the cost: no
per-frame Python datasets, no full-volume checks that the TaskLabelMap contract makes moot.

The template is kept with its series object (:func:`series_template`), so the SEGs of every
model of a series (CADS and TotalSegmentator outputs, released annotations) share it; the
values that name a SEG's maker are set per SEG (:func:`equipment`), and
``tests/encode/test_write.py`` shows a second model's SEGs equal those of a fresh template.
"""

from __future__ import annotations

import copy
import struct
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import highdicom as hd
import numpy as np
import numpy.typing as npt
from highdicom.spatial import VOLUME_INDEX_CONVENTION, get_normal_vector, get_volume_positions
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr, write_data_element
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian

from omas_idc.encode.provenance import Provenance
from omas_idc.encode.sources import SourceSeries
from omas_idc.errors import EncodingError

__all__ = [
    "SegTemplate",
    "build_template",
    "equipment",
    "highdicom_segmentation",
    "plane_slices",
    "series_template",
]

_PER_FRAME = Tag(0x52009230)
_SHARED = Tag(0x52009229)
_DERIVATION = Tag(0x00089124)
_FRAME_CONTENT = Tag(0x00209111)
_PLANE_POSITION = Tag(0x00209113)
_SEGMENT_IDENTIFICATION = Tag(0x0062000A)
_REFERENCED_SOP_INSTANCE_UID = Tag(0x00081155)
_ITEM = b"\xfe\xff\x00\xe0"
# Elements that differ between the SEGs of a series: set per task, never from the template.
_PER_TASK = {
    _PER_FRAME,
    Tag(0x7FE00010),  # PixelData
    Tag(0x00620002),  # SegmentSequence
    Tag(0x00280008),  # NumberOfFrames
    Tag(0x00209311),  # DimensionOrganizationType
    Tag(0x00620013),  # SegmentsOverlap
}
# Large reference sequences shared by every SEG of the series: encoded once.
_PRE_ENCODED = (Tag(0x00081115), Tag(0x00082112))  # ReferencedSeries, SourceImage
# What highdicom's frame look-up tables (Image._build_luts) set: built on first use.
_LUT_ATTRIBUTES = frozenset(
    {
        "_coordinate_system",
        "_db_con",
        "_dim_ind_col_names",
        "_dim_ind_pointers",
        "_file_reader",
        "_has_frame_references",
        "_is_tiled_full",
        "_missing_reference_instances",
    }
)
_SENTINEL_UL = 0xA1B2C3D4
_SENTINEL_US = 0xA1B2


class LazySegmentation(hd.seg.Segmentation):
    """A highdicom Segmentation whose frame look-up tables are built when first needed.

    highdicom builds them from the per-frame functional groups, which our SEGs hold as
    encoded bytes until something reads them: writing a file never does, while
    ``get_pixels_by_source_instance`` and friends work as on any highdicom Segmentation.
    """

    def __getattr__(self, name: str) -> Any:
        if name in _LUT_ATTRIBUTES and not self.__dict__.get("_omas_luts_built", False):
            self.__dict__["_omas_luts_built"] = True
            self._build_luts()
            return object.__getattribute__(self, name)
        return super().__getattr__(name)


def equipment(provenance: Provenance) -> dict[str, str]:
    """The header values that name who made a SEG: the same in every SEG of one provenance."""
    return {
        "Manufacturer": provenance.manufacturer,
        "ManufacturerModelName": f"omas-idc {provenance.model}"[:64],
        "SoftwareVersions": provenance.omas_idc_version,
        "DeviceSerialNumber": "0",
        "ContentCreatorName": provenance.content_creator_name,
        "ContentLabel": "SEGMENTATION",
        "ContentDescription": f"{provenance.name} {provenance.model_version}"[:64],
    }


def highdicom_segmentation(
    sources: Sequence[Dataset],
    pixel_array: npt.NDArray[np.generic],
    segmentation_type: str,
    descriptions: Sequence[hd.seg.SegmentDescription],
    series_uid: str,
    instance_uid: str,
    series_number: int,
    provenance: Provenance,
    transfer_syntax: str,
    volume: SourceSeries,
) -> hd.seg.Segmentation:
    """highdicom's own Segmentation of ``pixel_array`` with our header values."""
    made_by = equipment(provenance)
    try:
        return hd.seg.Segmentation(
            source_images=sources,
            pixel_array=pixel_array,
            segmentation_type=segmentation_type,
            segment_descriptions=descriptions,
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=instance_uid,
            instance_number=1,
            manufacturer=made_by["Manufacturer"],
            manufacturer_model_name=made_by["ManufacturerModelName"],
            software_versions=made_by["SoftwareVersions"],
            device_serial_number=made_by["DeviceSerialNumber"],
            content_creator_name=made_by["ContentCreatorName"],
            content_label=made_by["ContentLabel"],
            content_description=made_by["ContentDescription"],
            transfer_syntax_uid=transfer_syntax,
            omit_empty_frames=True,
        )
    except (ValueError, TypeError, AttributeError) as err:
        raise EncodingError(
            f"highdicom refused to build the {segmentation_type} SEG: {err}",
            series_instance_uid=volume.series_instance_uid,
            reason="highdicom",
        ) from err


def plane_slices(volume: SourceSeries) -> npt.NDArray[np.intp]:
    """For each plane as highdicom numbers the sources' planes, the volume's slice index.

    Single-frame sources are given in slice order; a multi-frame source's planes are its
    frames in frame order.
    """
    if len(set(volume.files)) == len(volume.files):
        return np.arange(len(volume.files), dtype=np.intp)
    frame_numbers = [ref.frame_number or 0 for ref in volume.source_refs]
    return np.argsort(frame_numbers, kind="stable").astype(np.intp)


_UNDEFINED_LENGTH = b"\xff\xff\xff\xff"
_ITEM_START = b"\xfe\xff\x00\xe0" + _UNDEFINED_LENGTH
_ITEM_END = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _encode_value(element: DataElement, encoding: str | list[str]) -> bytes:
    """The items of a sequence element, or a whole non-sequence element, as pydicom writes them.

    Sequences and items are written with undefined length (PS3.5 7.5.1), so that an item's
    bytes do not depend on the lengths of what it holds; only the leaf elements go through
    pydicom, which is what keeps encoding thousands of small items cheap.
    """
    if element.VR != "SQ":
        buffer = DicomBytesIO()
        buffer.is_little_endian = True
        buffer.is_implicit_VR = False
        write_data_element(buffer, element, encoding)
        return bytes(buffer.getvalue())
    parts = []
    for item in element.value:
        parts.append(_ITEM_START)
        parts.extend(_encode(item[tag], encoding) for tag in sorted(item.keys()))
        parts.append(_ITEM_END)
    return b"".join(parts)


def _encode(element: DataElement, encoding: str | list[str]) -> bytes:
    """One element as explicit VR little endian bytes (sequences of undefined length)."""
    if element.VR != "SQ":
        return _encode_value(element, encoding)
    header = struct.pack("<HH", element.tag.group, element.tag.element) + b"SQ\x00\x00"
    return header + _UNDEFINED_LENGTH + _encode_value(element, encoding) + _SEQUENCE_END


def _raw_sequence(element: DataElement, encoding: str | list[str]) -> RawDataElement:
    """A sequence element kept as its encoded items: written as is, parsed if read."""
    value = _encode_value(element, encoding)
    return RawDataElement(element.tag, "SQ", len(value), value, 0, False, True, True, False)


def _split_at(encoded: bytes, sentinel: bytes) -> tuple[bytes, bytes]:
    at = encoded.index(sentinel)
    return encoded[:at], encoded[at + len(sentinel) :]


@dataclass(frozen=True, eq=False)
class SegTemplate:
    """What all SEGs of one layout share for a series (see the module docstring).

    Attributes
    ----------
    header
        highdicom's dataset-level elements, without the per-task ones (:data:`_PER_TASK`).
    frame_order
        Volume slice indices in highdicom's frame order (ascending along its slice normal).
    derivation, position
        Per volume slice: the encoded Derivation Image and Plane Position Sequences.
    positions
        Per volume slice: ImagePositionPatient.
    orientation
        ImageOrientationPatient of the planes.
    slice_planes
        Per volume slice: highdicom's plane index (the order of the source planes).
    """

    header: Dataset
    segmentation_type: str
    frame_order: npt.NDArray[np.intp]
    derivation: tuple[bytes, ...]
    position: tuple[bytes, ...]
    positions: npt.NDArray[np.float64]
    orientation: tuple[float, ...]
    slice_planes: npt.NDArray[np.intp]
    encoding: str | list[str]

    def functional_groups(
        self,
        frame_slices: npt.NDArray[np.intp],
        dimension_values: npt.NDArray[np.int64],
        segment_numbers: npt.NDArray[np.int64] | None,
    ) -> RawDataElement:
        """The Per-Frame Functional Groups Sequence of the given frames, encoded.

        ``frame_slices`` gives each frame's volume slice, ``dimension_values`` its Dimension
        Index Values (one row per frame) and ``segment_numbers`` its Referenced Segment
        Number (``None`` where the SEG does not identify segments per frame).
        """
        count = dimension_values.shape[1]
        content = Dataset()
        content.add(DataElement(0x00209157, "UL", [_SENTINEL_UL] * count))
        content_head, content_tail = _split_at(
            _encode(DataElement(_FRAME_CONTENT, "SQ", [content]), self.encoding),
            struct.pack(f"<{count}I", *([_SENTINEL_UL] * count)),
        )
        identification_head = identification_tail = b""
        if segment_numbers is not None:
            identification = Dataset()
            identification.add(DataElement(0x0062000B, "US", _SENTINEL_US))
            identification_head, identification_tail = _split_at(
                _encode(
                    DataElement(_SEGMENT_IDENTIFICATION, "SQ", [identification]), self.encoding
                ),
                struct.pack("<H", _SENTINEL_US),
            )
        values = struct.Struct(f"<{count}I")
        items = []
        for index, slice_index in enumerate(frame_slices.tolist()):
            body = [
                self.derivation[slice_index],
                content_head,
                values.pack(*dimension_values[index].tolist()),
                content_tail,
                self.position[slice_index],
            ]
            if segment_numbers is not None:
                body += [
                    identification_head,
                    struct.pack("<H", int(segment_numbers[index])),
                    identification_tail,
                ]
            encoded = b"".join(body)
            items.append(_ITEM + struct.pack("<I", len(encoded)) + encoded)
        value = b"".join(items)
        return RawDataElement(_PER_FRAME, "SQ", len(value), value, 0, False, True, True, False)

    def dimension_organization_type(self, included_slices: npt.NDArray[np.intp]) -> str | None:
        """``"3D"`` where the included planes are regularly spaced, as highdicom decides."""
        if len(included_slices) < 2:
            return None
        planes = np.sort(self.slice_planes[included_slices])
        slice_of_plane = np.empty_like(self.slice_planes)
        slice_of_plane[self.slice_planes] = np.arange(len(self.slice_planes))
        spacing, _ = get_volume_positions(
            image_positions=self.positions[slice_of_plane[planes]].tolist(),
            image_orientation=list(self.orientation),
            sort=False,
        )
        return "3D" if spacing is not None and spacing > 0.0 else None

    def new_dataset(self, provenance: Provenance) -> Dataset:
        """A fresh copy of the header (file meta included) for one SEG made by ``provenance``.

        The template may have been built for another provenance of the same series (another
        model's SEGs): the values that name the maker are set here (:func:`equipment`); UIDs,
        dates and times are set per SEG by the caller.
        """
        dataset = copy.deepcopy(self.header)
        dataset.file_meta = copy.deepcopy(self.header.file_meta)
        for keyword, value in equipment(provenance).items():
            setattr(dataset, keyword, value)
        return dataset


# Templates by source series and layout. A template depends on the source headers only (the
# values naming its maker are set per SEG), so the SEGs of every model of one series share it;
# series objects are immutable, and an entry goes when its series object does.
_TEMPLATES: weakref.WeakKeyDictionary[SourceSeries, dict[str, SegTemplate | None]] = (
    weakref.WeakKeyDictionary()
)


def series_template(
    volume: SourceSeries,
    sources: Sequence[Dataset],
    segmentation_type: str,
    description: hd.seg.SegmentDescription,
    provenance: Provenance,
) -> SegTemplate | None:
    """:func:`build_template`, once per series object and segmentation type."""
    known = _TEMPLATES.setdefault(volume, {})
    if segmentation_type not in known:
        known[segmentation_type] = build_template(
            volume, sources, segmentation_type, description, provenance
        )
    return known[segmentation_type]


def build_template(
    volume: SourceSeries,
    sources: Sequence[Dataset],
    segmentation_type: str,
    description: hd.seg.SegmentDescription,
    provenance: Provenance,
) -> SegTemplate | None:
    """The template of ``segmentation_type`` SEGs of ``volume``.

    highdicom builds the SEG of a stub with only the first plane labelled: the header (made
    from all sources) and that plane's per-frame item. The other planes' items are that item
    with the plane's source reference and position (highdicom's own, from
    ``get_plane_positions_of_series``) put in; frames are ordered along highdicom's slice normal.

    Returns ``None`` where the sources are not single-frame images of one SOP class in patient
    coordinates, or highdicom's item does not have the expected content: the caller then uses
    highdicom directly.
    """
    planes = volume.shape[0]
    if len(set(volume.files)) != len(volume.files) or len(sources) != planes:
        return None  # a multi-frame source
    if len({str(ds.SOPClassUID) for ds in sources}) != 1:
        return None
    stub = np.zeros(volume.shape, dtype=np.uint8)
    stub[0] = 1
    seg = highdicom_segmentation(
        sources,
        stub,
        segmentation_type,
        [description],
        provenance.uid(volume.series_instance_uid, "template", "series"),
        provenance.uid(volume.series_instance_uid, "template", "instance"),
        1,
        provenance,
        ExplicitVRLittleEndian,
        volume,
    )
    items = seg.get("PerFrameFunctionalGroupsSequence", [])
    if len(items) != 1 or set(items[0].keys()) != {_DERIVATION, _FRAME_CONTENT, _PLANE_POSITION}:
        return None
    shared = seg.SharedFunctionalGroupsSequence[0]
    if "PlaneOrientationSequence" not in shared:
        return None
    encoding: str | list[str] = seg.get("SpecificCharacterSet", "iso8859") or "iso8859"
    item = items[0]
    source = item.DerivationImageSequence[0].SourceImageSequence[0]
    if str(source.ReferencedSOPInstanceUID) != str(sources[0].SOPInstanceUID):
        return None
    derivation = _encode(item[_DERIVATION], encoding)
    uid_element = _encode(source[_REFERENCED_SOP_INSTANCE_UID], encoding)
    if derivation.count(uid_element) != 1:
        return None
    before, after = derivation.split(uid_element)
    # As highdicom.utils.get_plane_positions_of_series makes them (without its per-image checks)
    plane_positions = [
        hd.PlanePositionSequence(
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            image_position=ds.ImagePositionPatient,
        )
        for ds in sources
    ]
    position = [_encode(DataElement(_PLANE_POSITION, "SQ", p), encoding) for p in plane_positions]
    if position[0] != _encode(item[_PLANE_POSITION], encoding):
        return None
    orientation = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    positions = np.array(
        [[float(v) for v in p[0].ImagePositionPatient] for p in plane_positions], dtype=np.float64
    )
    # highdicom's frame order: ascending distance along its normal (Image._prepare_spatial_metadata)
    normal = get_normal_vector(orientation, index_convention=VOLUME_INDEX_CONVENTION)
    _, frame_order = np.unique(positions @ normal, return_index=True)
    if len(frame_order) != planes:
        return None
    header = Dataset()
    for tag in seg.keys():
        if tag not in _PER_TASK:
            header[tag] = seg[tag]  # the template is discarded: no copy
    header.file_meta = seg.file_meta
    header_shared = header.SharedFunctionalGroupsSequence[0]
    if "SegmentIdentificationSequence" in header_shared:
        del header_shared.SegmentIdentificationSequence
    correct_ambiguous_vr(header, True)
    for tag in _PRE_ENCODED:
        if tag in header:
            header[tag] = _raw_sequence(header[tag], encoding)
    return SegTemplate(
        header=header,
        segmentation_type=segmentation_type,
        frame_order=frame_order.astype(np.intp),
        derivation=tuple(
            before
            + _encode(DataElement(_REFERENCED_SOP_INSTANCE_UID, "UI", ds.SOPInstanceUID), encoding)
            + after
            for ds in sources
        ),
        position=tuple(position),
        positions=positions,
        orientation=tuple(orientation),
        slice_planes=np.arange(planes, dtype=np.intp),
        encoding=encoding,
    )

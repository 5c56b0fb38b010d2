"""Task label maps -> DICOM Segmentation objects (highdicom).

Two layouts (PS3.3 A.51, Segmentation IOD; LABELMAP: DICOM Supplement 243):

``labelmap`` (default)
    One LABELMAP Segmentation per model task, each in its own series (as IDC's MOOSE release
    does), RLE Lossless so that DCMTK-based tools (dcmqi) decode it. The segment number is the
    task's label value (gaps allowed), 0 is background. Labels are exclusive within a task but
    overlap across tasks, which is why one LABELMAP cannot hold all tasks.
``binary``
    One BINARY Segmentation holding the segments of all tasks, empty frames omitted, Explicit
    VR Little Endian. The Segmentation IOD requires BINARY segment numbers to run 1..N without
    gaps, so segments are numbered 1..N in catalog order over the structures present in the
    series: their order is the same in every series of a release, and a segment is identified
    across series by its codes (type + modifier), never by its number or label text.

In both layouts a structure that is empty in the series has no segment: it is recorded as
*absent* by the QA stage, which keeps "absent" distinguishable from "not segmented".

Series numbering rule: a derived series takes ``100 * source SeriesNumber + k`` where ``k`` is
the task's position in its model (1-based; 0 for the binary layout's single series) and, where
the source has no SeriesNumber, ``9900 + k``. SeriesDescription is
``"<MODEL> <task> segmentation"`` (``"<MODEL> segmentation"`` for binary), at most 64 chars.

How: highdicom builds one template SEG per series and layout (:mod:`omas_idc.encode.template`);
each SEG takes its header and the per-plane functional groups of the slices that hold labels
(:mod:`omas_idc.encode.runs`), with pixels RLE-encoded (:mod:`omas_idc.encode.rle`) or
bit-packed (:mod:`omas_idc.encode.binary_frames`) in numpy. Sources that do not fit the
template (not a stack of planes in patient coordinates) go through highdicom directly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.charset import convert_encodings
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, RLELossless

from omas_idc.catalog.model import Catalog, Structure
from omas_idc.choices import StrEnum
from omas_idc.encode.binary_frames import SegmentFrames, pack_binary_frames
from omas_idc.encode.binary_merge import merge_binary_segmentations
from omas_idc.encode.provenance import Provenance
from omas_idc.encode.rle import encode_rle_frames
from omas_idc.encode.runs import LabelLayout, label_layout
from omas_idc.encode.segments import algorithm_identification, segment_description
from omas_idc.encode.sources import SourceSeries, load_source_datasets
from omas_idc.encode.template import (
    LazySegmentation,
    SegTemplate,
    highdicom_segmentation,
    plane_slices,
    series_template,
)
from omas_idc.errors import CatalogError, EncodingError
from omas_idc.labelmap import TaskLabelMap

__all__ = [
    "LAYOUTS",
    "EncodedSeg",
    "SegLayout",
    "encode_binary",
    "encode_labelmaps",
    "series_number_for",
]

logger = logging.getLogger(__name__)


class SegLayout(StrEnum):
    """How a series' structures are stored in DICOM SEG (PS3.3 C.8.20.2, Segmentation Type)."""

    #: One LABELMAP SEG per task (Label Map Segmentation Storage): a label value per pixel.
    LABELMAP = "labelmap"
    #: One BINARY SEG for all tasks: a bit plane per segment and slice.
    BINARY = "binary"


LAYOUTS: tuple[str, ...] = tuple(layout.value for layout in SegLayout)
_MAX_IS = 2**31 - 1


@dataclass(frozen=True, eq=False)
class EncodedSeg:
    """One SEG dataset and what it holds.

    ``segments`` maps segment number -> catalog structure; ``tasks`` names the tasks encoded.
    """

    dataset: hd.seg.Segmentation
    segments: Mapping[int, Structure]
    tasks: tuple[str, ...]
    layout: SegLayout


def series_number_for(source: int | None, position: int) -> int:
    """The SeriesNumber of a derived series (see the module docstring for the rule)."""
    if source is None or source < 0 or 100 * source + position > _MAX_IS:
        return 9900 + position
    return 100 * source + position


def _resolve(catalog: Catalog, labelmap: TaskLabelMap, series_uid: str) -> dict[int, Structure]:
    try:
        return catalog.resolve_labels(labelmap.model, labelmap.task, labelmap.labels)
    except CatalogError as err:
        raise EncodingError(
            f"{labelmap.model} task {labelmap.task}: a label is not in the structure catalog: "
            f"{err.message}",
            series_instance_uid=series_uid,
            reason="unmapped-label",
        ) from err


def _check_grid(volume: SourceSeries, array: npt.NDArray[np.generic], task: str) -> None:
    if array.shape != volume.shape:
        raise EncodingError(
            f"task {task} label map has shape {array.shape} but the source volume is "
            f"{volume.shape}: label maps must lie on the source grid (resample them first)",
            series_instance_uid=volume.series_instance_uid,
            reason="grid-mismatch",
        )


def _checked_layout(
    volume: SourceSeries, labelmap: TaskLabelMap, catalog: Catalog, series_uid: str
) -> tuple[dict[int, Structure], LabelLayout]:
    """The task's label -> structure table and where its labels lie, after checking that the
    map is on the source grid and holds no value its label table does not name."""
    _check_grid(volume, labelmap.array, labelmap.task)
    structures = _resolve(catalog, labelmap, series_uid)
    layout = label_layout(labelmap.array)
    unknown = sorted(set(layout.labels) - set(structures))
    if unknown:
        raise EncodingError(
            f"task {labelmap.task} label map holds values {unknown} that its label table "
            "does not name",
            series_instance_uid=series_uid,
            reason="unnamed-label",
        )
    return structures, layout


def _finish(
    seg: hd.seg.Segmentation,
    provenance: Provenance,
    series_description: str,
    dimension_uid: str,
) -> hd.seg.Segmentation:
    """Replace everything highdicom takes from the clock or a random source."""
    for keyword in ("ContentDate", "SeriesDate", "InstanceCreationDate"):
        if keyword in seg:
            setattr(seg, keyword, provenance.date)
    for keyword in ("ContentTime", "SeriesTime", "InstanceCreationTime"):
        if keyword in seg:
            setattr(seg, keyword, provenance.time)
    for item in seg.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = provenance.date + provenance.time
    seg.SeriesDescription = series_description[:64]
    for item in seg.get("DimensionOrganizationSequence", []):
        item.DimensionOrganizationUID = dimension_uid
    for item in seg.get("DimensionIndexSequence", []):
        if "DimensionOrganizationUID" in item:
            item.DimensionOrganizationUID = dimension_uid
    return seg


def _frames(volume: SourceSeries, array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    """The label array in highdicom's plane order (a multi-frame source's frame order)."""
    order = plane_slices(volume)
    return array if np.array_equal(order, np.arange(len(order))) else array[order]


def _labelmap_segments(
    descriptions: Sequence[hd.seg.SegmentDescription],
) -> list[hd.seg.SegmentDescription]:
    """The LABELMAP Segment Sequence: highdicom's background segment 0, then ``descriptions``."""
    first = descriptions[0]
    algorithm = first.get("SegmentationAlgorithmIdentificationSequence")
    background = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Background",
        segmented_property_category=hd.sr.CodedConcept("125040", "DCM", "Background"),
        segmented_property_type=hd.sr.CodedConcept("125040", "DCM", "Background"),
        algorithm_type=first.SegmentAlgorithmType,
        algorithm_identification=algorithm,
        display_color=(
            hd.color.CIELabColor(0.0, 0.0, 0.0)
            if any("RecommendedDisplayCIELabValue" in d for d in descriptions)
            else None
        ),
    )
    background.SegmentNumber = 0
    if algorithm is not None:
        del background.SegmentationAlgorithmIdentificationSequence
    return [background, *descriptions]


def _from_template(
    template: SegTemplate,
    provenance: Provenance,
    *,
    segments: list[hd.seg.SegmentDescription],
    series_uid: str,
    instance_uid: str,
    series_number: int,
    frame_slices: npt.NDArray[np.intp],
    dimension_values: npt.NDArray[np.int64],
    segment_numbers: npt.NDArray[np.int64] | None,
    dimension_organization_type: str | None,
    pixel_data: bytes,
    transfer_syntax: str,
    bits_allocated: int,
    segments_overlap: str,
) -> hd.seg.Segmentation:
    """One SEG: the template's header with this SEG's segments, frames and pixels."""
    ds = template.new_dataset(provenance)
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = instance_uid
    ds.file_meta.MediaStorageSOPInstanceUID = UID(instance_uid)
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.SeriesNumber = series_number
    ds.SegmentSequence = DicomSequence(segments)
    ds.SegmentsOverlap = segments_overlap
    ds.BitsAllocated = ds.BitsStored = bits_allocated
    ds.HighBit = bits_allocated - 1
    ds.NumberOfFrames = len(frame_slices)
    if dimension_organization_type is not None:
        ds.DimensionOrganizationType = dimension_organization_type
    ds[0x52009230] = template.functional_groups(frame_slices, dimension_values, segment_numbers)
    ds.add_new(0x7FE00010, "OB", pixel_data)
    # Written as encoded, not re-encoded: the pre-encoded sequences go out as they are.
    ds.set_original_encoding(
        False, True, convert_encodings(ds.get("SpecificCharacterSet") or "ISO_IR 6")
    )
    ds.__class__ = LazySegmentation
    return ds  # type: ignore[return-value]


def encode_labelmaps(
    volume: SourceSeries,
    labelmaps: Sequence[TaskLabelMap],
    catalog: Catalog,
    provenance: Provenance,
    *,
    task_order: Sequence[str] | None = None,
) -> list[EncodedSeg]:
    """One LABELMAP SEG per task, RLE Lossless; tasks with no present structure are skipped.

    Parameters
    ----------
    volume
        The source series (its files are referenced, its grid is the SEG's grid): a
        ``CTVolume``, or the ``SeriesHeaders`` of ``read_series_headers`` where the HU values
        are not needed otherwise (its source headers are then not read again).
    labelmaps
        One label map per task, on the source grid.
    catalog
        Resolves each model label to its coded structure.
    provenance
        Algorithm, version and timestamp: all UIDs and dates follow from it.
    task_order
        The model's tasks in order, for the series-number rule; defaults to ``labelmaps``.

    Raises
    ------
    EncodingError
        For empty source UIDs, unmapped labels, off-grid label maps, or what highdicom refuses.
    """
    sources = load_source_datasets(volume)
    series_uid = volume.series_instance_uid
    order = list(task_order or [lm.task for lm in labelmaps])
    algorithm = algorithm_identification(provenance)
    template: SegTemplate | None = None
    template_built = False
    results: list[EncodedSeg] = []
    for labelmap in labelmaps:
        structures, layout = _checked_layout(volume, labelmap, catalog, series_uid)
        present = [v for v in layout.labels if v in structures]
        if not present:
            logger.info(
                "series %s task %s: no structure present, no SEG", series_uid, labelmap.task
            )
            continue
        descriptions = [
            segment_description(v, structures[v], provenance, algorithm) for v in present
        ]
        if not template_built:
            template = series_template(
                volume,
                sources,
                "LABELMAP",
                segment_description(1, structures[present[0]], provenance, algorithm),
                provenance,
            )
            template_built = True
        position = order.index(labelmap.task) + 1 if labelmap.task in order else len(order) + 1
        series_number = series_number_for(volume.header.series_number, position)
        dtype = np.uint16 if max(present) > 255 else np.uint8
        if template is not None:
            seg = _labelmap_from_template(
                template,
                provenance,
                labelmap.array.astype(dtype, copy=False),
                layout,
                descriptions,
                provenance.uid(series_uid, labelmap.task, "series"),
                provenance.uid(series_uid, labelmap.task, "instance"),
                series_number,
            )
        else:
            seg = highdicom_segmentation(
                sources,
                _frames(volume, labelmap.array.astype(dtype, copy=False)),
                "LABELMAP",
                descriptions,
                provenance.uid(series_uid, labelmap.task, "series"),
                provenance.uid(series_uid, labelmap.task, "instance"),
                series_number,
                provenance,
                RLELossless,
                volume,
            )
        title = f"{provenance.model.upper()} {labelmap.task} segmentation"
        results.append(
            EncodedSeg(
                dataset=_finish(
                    seg,
                    provenance,
                    title,
                    provenance.uid(series_uid, labelmap.task, "dimension-organization"),
                ),
                segments={v: structures[v] for v in present},
                tasks=(labelmap.task,),
                layout=SegLayout.LABELMAP,
            )
        )
    return results


def _labelmap_from_template(
    template: SegTemplate,
    provenance: Provenance,
    array: npt.NDArray[np.unsignedinteger],
    layout: LabelLayout,
    descriptions: list[hd.seg.SegmentDescription],
    series_uid: str,
    instance_uid: str,
    series_number: int,
) -> hd.seg.Segmentation:
    """A LABELMAP SEG of the slices that hold labels, in the template's frame order."""
    labelled = layout.labelled_slices
    frame_slices = template.frame_order[np.isin(template.frame_order, labelled)]
    return _from_template(
        template,
        provenance,
        segments=_labelmap_segments(descriptions),
        series_uid=series_uid,
        instance_uid=instance_uid,
        series_number=series_number,
        frame_slices=frame_slices,
        dimension_values=np.arange(1, len(frame_slices) + 1, dtype=np.int64)[:, None],
        segment_numbers=None,
        dimension_organization_type=template.dimension_organization_type(labelled),
        pixel_data=encapsulate(encode_rle_frames(array[frame_slices])),
        transfer_syntax=RLELossless,
        bits_allocated=8 * array.dtype.itemsize,
        segments_overlap="NO",
    )


def _disjoint_layers(labelmaps: Sequence[TaskLabelMap]) -> list[set[str]]:
    """Group tasks into layers whose label maps do not overlap (greedy, in task order).

    Within a task labels are exclusive; across tasks they may overlap (CADS: 18 classes). A
    layer is encoded from one integer label map; several layers are merged afterwards.
    """
    layers: list[tuple[set[str], npt.NDArray[np.bool_]]] = []
    for labelmap in labelmaps:
        mask = labelmap.array != 0
        for tasks, occupied in layers:
            if not np.any(occupied & mask):
                tasks.add(labelmap.task)
                occupied |= mask
                break
        else:
            layers.append(({labelmap.task}, mask))
    return [tasks for tasks, _ in layers]


def encode_binary(
    volume: SourceSeries,
    labelmaps: Sequence[TaskLabelMap],
    catalog: Catalog,
    provenance: Provenance,
) -> EncodedSeg | None:
    """One BINARY SEG with the present segments of all tasks, numbered in catalog order.

    Returns ``None`` where no structure is present at all.
    """
    sources = load_source_datasets(volume)
    series_uid = volume.series_instance_uid
    rank = {s.name: i for i, s in enumerate(catalog.structures)}
    members: list[tuple[Structure, TaskLabelMap, int]] = []
    layouts: dict[int, LabelLayout] = {}
    for labelmap in labelmaps:
        structures, layout = _checked_layout(volume, labelmap, catalog, series_uid)
        layouts[id(labelmap)] = layout
        members.extend((structures[v], labelmap, v) for v in layout.labels)
    if not members:
        return None
    members.sort(key=lambda m: (rank[m[0].name], m[1].task, m[2]))
    algorithm = algorithm_identification(provenance)
    descriptions = [
        segment_description(number, structure, provenance, algorithm)
        for number, (structure, _, _) in enumerate(members, start=1)
    ]
    series_number = series_number_for(volume.header.series_number, 0)
    template = series_template(
        volume,
        sources,
        "BINARY",
        segment_description(1, members[0][0], provenance, algorithm),
        provenance,
    )
    if template is not None:
        seg = _binary_from_template(
            template,
            provenance,
            members,
            layouts,
            descriptions,
            provenance.uid(series_uid, "binary", "series"),
            provenance.uid(series_uid, "binary", "instance"),
            series_number,
        )
    else:
        seg = _binary_by_layers(volume, sources, labelmaps, members, provenance, series_number)
    return EncodedSeg(
        dataset=_finish(
            seg,
            provenance,
            f"{provenance.model.upper()} segmentation",
            provenance.uid(series_uid, "binary", "dimension-organization"),
        ),
        segments={n: m[0] for n, m in enumerate(members, start=1)},
        tasks=tuple(dict.fromkeys(lm.task for lm in labelmaps)),
        layout=SegLayout.BINARY,
    )


def _binary_from_template(
    template: SegTemplate,
    provenance: Provenance,
    members: Sequence[tuple[Structure, TaskLabelMap, int]],
    layouts: Mapping[int, LabelLayout],
    descriptions: list[hd.seg.SegmentDescription],
    series_uid: str,
    instance_uid: str,
    series_number: int,
) -> hd.seg.Segmentation:
    """The BINARY SEG: frames by segment, then along the slice normal, as highdicom orders them.

    A frame's spatial dimension index is the rank of its plane among the planes that hold any
    segment; Segments Overlap is NO for one task (labels are exclusive within a task) and
    UNDEFINED across tasks, which may overlap (CADS: heart and its chambers).
    """
    rank = np.empty(len(template.frame_order), dtype=np.intp)
    rank[template.frame_order] = np.arange(len(template.frame_order))
    segments = []
    for _, labelmap, value in members:
        layout = layouts[id(labelmap)]
        slices = layout.slices[value]
        segments.append(
            SegmentFrames(
                labelmap.array, value, slices[np.argsort(rank[slices])], layout.boxes[value]
            )
        )
    included = np.unique(np.concatenate([s.slices for s in segments]))
    spatial = np.zeros(len(rank), dtype=np.int64)
    spatial[included[np.argsort(rank[included])]] = np.arange(1, len(included) + 1)
    frame_slices = np.concatenate([s.slices for s in segments])
    numbers = np.repeat(np.arange(1, len(segments) + 1), [len(s.slices) for s in segments])
    single = len(segments) == 1
    _, rows, columns = members[0][1].array.shape
    seg = _from_template(
        template,
        provenance,
        segments=descriptions,
        series_uid=series_uid,
        instance_uid=instance_uid,
        series_number=series_number,
        frame_slices=frame_slices,
        dimension_values=np.stack([numbers, spatial[frame_slices]], axis=1),
        segment_numbers=None if single else numbers,
        dimension_organization_type=(
            template.dimension_organization_type(included) if single else None
        ),
        pixel_data=pack_binary_frames(segments, rows, columns),
        transfer_syntax=ExplicitVRLittleEndian,
        bits_allocated=1,
        segments_overlap="NO" if len({id(m[1]) for m in members}) == 1 else "UNDEFINED",
    )
    if single:
        identification = Dataset()
        identification.add_new(0x0062000B, "US", 1)
        seg.SharedFunctionalGroupsSequence[0].SegmentIdentificationSequence = [identification]
    return seg


def _binary_by_layers(
    volume: SourceSeries,
    sources: Sequence[Dataset],
    labelmaps: Sequence[TaskLabelMap],
    members: Sequence[tuple[Structure, TaskLabelMap, int]],
    provenance: Provenance,
    series_number: int,
) -> hd.seg.Segmentation:
    """highdicom on each layer of non-overlapping tasks, then merged (sources of other shapes)."""
    series_uid = volume.series_instance_uid
    algorithm = algorithm_identification(provenance)
    layers = _disjoint_layers(labelmaps)
    parts: list[hd.seg.Segmentation] = []
    local_numbers: dict[tuple[str, int], tuple[int, int]] = {}
    for part_index, layer in enumerate(layers):
        layer_members = [m for m in members if m[1].task in layer]
        dtype = np.uint8 if len(layer_members) < 256 else np.uint16
        layer_array = np.zeros(volume.shape, dtype=dtype)
        descriptions = []
        for local, (structure, labelmap, value) in enumerate(layer_members, start=1):
            layer_array[labelmap.array == value] = local
            local_numbers[(labelmap.task, value)] = (part_index, local)
            descriptions.append(segment_description(local, structure, provenance, algorithm))
        parts.append(
            highdicom_segmentation(
                sources,
                _frames(volume, layer_array),
                "BINARY",
                descriptions,
                provenance.uid(series_uid, "binary", "series"),
                provenance.uid(series_uid, "binary", "instance"),
                series_number,
                provenance,
                ExplicitVRLittleEndian,
                volume,
            )
        )
    order = [local_numbers[(m[1].task, m[2])] for m in members]
    return parts[0] if len(parts) == 1 else merge_binary_segmentations(parts, order)

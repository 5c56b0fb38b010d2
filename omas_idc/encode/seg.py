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
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from omas_idc.catalog.model import Catalog, Structure
from omas_idc.encode.binary_merge import merge_binary_segmentations
from omas_idc.encode.provenance import Provenance
from omas_idc.encode.segments import algorithm_identification, segment_description
from omas_idc.encode.sources import load_source_datasets
from omas_idc.errors import CatalogError, EncodingError
from omas_idc.labelmap import TaskLabelMap
from omas_idc.volume import CTVolume

__all__ = ["LAYOUTS", "EncodedSeg", "encode_binary", "encode_labelmaps", "series_number_for"]

logger = logging.getLogger(__name__)

LAYOUTS = ("labelmap", "binary")
_MAX_IS = 2**31 - 1


@dataclass(frozen=True, eq=False)
class EncodedSeg:
    """One SEG dataset and what it holds.

    ``segments`` maps segment number -> catalog structure; ``tasks`` names the tasks encoded.
    """

    dataset: hd.seg.Segmentation
    segments: Mapping[int, Structure]
    tasks: tuple[str, ...]
    layout: str


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


def _check_grid(volume: CTVolume, array: npt.NDArray[np.generic], task: str) -> None:
    if array.shape != volume.shape:
        raise EncodingError(
            f"task {task} label map has shape {array.shape} but the source volume is "
            f"{volume.shape}: label maps must lie on the source grid (resample them first)",
            series_instance_uid=volume.series_instance_uid,
            reason="grid-mismatch",
        )


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


def _segmentation(
    sources: Sequence[Dataset],
    pixel_array: npt.NDArray[np.generic],
    segmentation_type: str,
    descriptions: Sequence[hd.seg.SegmentDescription],
    series_uid: str,
    instance_uid: str,
    series_number: int,
    provenance: Provenance,
    transfer_syntax: str,
    volume: CTVolume,
) -> hd.seg.Segmentation:
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
            manufacturer=provenance.manufacturer,
            manufacturer_model_name=f"omas-idc {provenance.model}"[:64],
            software_versions=provenance.omas_idc_version,
            device_serial_number="0",
            content_creator_name=provenance.content_creator_name,
            content_label="SEGMENTATION",
            content_description=f"{provenance.name} {provenance.model_version}"[:64],
            transfer_syntax_uid=transfer_syntax,
            omit_empty_frames=True,
        )
    except (ValueError, TypeError, AttributeError) as err:
        raise EncodingError(
            f"highdicom refused to build the {segmentation_type} SEG: {err}",
            series_instance_uid=volume.series_instance_uid,
            reason="highdicom",
        ) from err


def _frames(volume: CTVolume, array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    """The label array in the order of the distinct source files (multi-frame: one file)."""
    if len(set(volume.files)) == len(volume.files):
        return array
    # A multi-frame source: highdicom takes frames in the source's frame order.
    frame_numbers = [ref.frame_number or 0 for ref in volume.source_refs]
    order = np.argsort(frame_numbers, kind="stable")
    return array[order]


def encode_labelmaps(
    volume: CTVolume,
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
        The source series (its files are referenced, its grid is the SEG's grid).
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
    results: list[EncodedSeg] = []
    for labelmap in labelmaps:
        _check_grid(volume, labelmap.array, labelmap.task)
        structures = _resolve(catalog, labelmap, series_uid)
        present_labels = labelmap.present_labels()
        present = [v for v in present_labels if v in structures]
        unknown = sorted(set(present_labels) - set(structures))
        if unknown:
            raise EncodingError(
                f"task {labelmap.task} label map holds values {unknown} that its label table "
                "does not name",
                series_instance_uid=series_uid,
                reason="unnamed-label",
            )
        if not present:
            logger.info(
                "series %s task %s: no structure present, no SEG", series_uid, labelmap.task
            )
            continue
        descriptions = [
            segment_description(v, structures[v], provenance, algorithm) for v in present
        ]
        position = order.index(labelmap.task) + 1 if labelmap.task in order else len(order) + 1
        seg = _segmentation(
            sources,
            _frames(volume, labelmap.array.astype(np.uint16 if max(present) > 255 else np.uint8)),
            "LABELMAP",
            descriptions,
            provenance.uid(series_uid, labelmap.task, "series"),
            provenance.uid(series_uid, labelmap.task, "instance"),
            series_number_for(volume.header.series_number, position),
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
                layout="labelmap",
            )
        )
    return results


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
    volume: CTVolume,
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
    for labelmap in labelmaps:
        _check_grid(volume, labelmap.array, labelmap.task)
        structures = _resolve(catalog, labelmap, series_uid)
        members.extend((structures[v], labelmap, v) for v in labelmap.present_labels())
    if not members:
        return None
    members.sort(key=lambda m: (rank[m[0].name], m[1].task, m[2]))
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
            _segmentation(
                sources,
                _frames(volume, layer_array),
                "BINARY",
                descriptions,
                provenance.uid(series_uid, "binary", "series"),
                provenance.uid(series_uid, "binary", "instance"),
                series_number_for(volume.header.series_number, 0),
                provenance,
                ExplicitVRLittleEndian,
                volume,
            )
        )
    order = [local_numbers[(m[1].task, m[2])] for m in members]
    seg = parts[0] if len(parts) == 1 else merge_binary_segmentations(parts, order)
    return EncodedSeg(
        dataset=_finish(
            seg,
            provenance,
            f"{provenance.model.upper()} segmentation",
            provenance.uid(series_uid, "binary", "dimension-organization"),
        ),
        segments={n: m[0] for n, m in enumerate(members, start=1)},
        tasks=tuple(dict.fromkeys(lm.task for lm in labelmaps)),
        layout="binary",
    )

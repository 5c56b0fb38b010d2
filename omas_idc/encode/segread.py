"""DICOM SEG read back (the SEG writer's inverse): segments to structures, task label maps.

:func:`segment_references` finds which segment of which SEG holds each structure (the SR
writers reference segments by it, training reads annotated SEGs by it);
:func:`labelmaps_from_segs` rebuilds the task label maps, for QA of SEGs written earlier (the
CLI). Segments are matched to catalog structures by their codes (never by label text), and
grouped into the tasks of the model that produced them, so LABELMAP SEGs (one per task) and
a BINARY SEG (all tasks) give the same label maps. The model is the SEG's algorithm name, and
each label map's model version the algorithm version of the SEG its segments come from.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
from pydicom.dataset import Dataset

from omas_idc.catalog.model import Catalog, Code
from omas_idc.errors import CatalogError, EncodingError, QAError
from omas_idc.labelmap import TaskLabelMap
from omas_idc.volume import CTVolume

__all__ = ["labelmaps_from_segs", "seg_algorithm", "seg_timestamp", "segment_references"]


def segment_references(
    segs: Sequence[Dataset], catalog: Catalog, series_uid: str = ""
) -> dict[str, tuple[Dataset, int]]:
    """Structure name -> (SEG dataset, segment number), matched by the segments' codes.

    A segment is identified by its type, type modifier, region and region modifier codes
    (never by its label text). Where several SEGs hold the same structure the first wins.

    Raises
    ------
    EncodingError
        If a segment's codes match no catalog structure.
    """
    found: dict[str, tuple[Dataset, int]] = {}
    for seg in segs:
        for item in seg.SegmentSequence:
            if int(item.SegmentNumber) == 0:  # LABELMAP background (DCM 125040)
                continue
            type_item = item.SegmentedPropertyTypeCodeSequence[0]
            modifier = type_item.get("SegmentedPropertyTypeModifierCodeSequence")
            region = item.get("AnatomicRegionSequence")
            region_modifier = region[0].get("AnatomicRegionModifierSequence") if region else None
            try:
                structure = catalog.by_codes(
                    Code(
                        str(type_item.CodeValue),
                        str(type_item.CodingSchemeDesignator),
                        str(type_item.CodeMeaning),
                    ),
                    str(modifier[0].CodeValue) if modifier else None,
                    region=str(region[0].CodeValue) if region else None,
                    region_modifier=str(region_modifier[0].CodeValue) if region_modifier else None,
                )
            except CatalogError as err:
                raise EncodingError(
                    f"SEG {seg.SOPInstanceUID} segment {item.SegmentNumber}: {err.message}",
                    series_instance_uid=series_uid or None,
                    reason="unknown-segment",
                ) from err
            found.setdefault(structure.name, (seg, int(item.SegmentNumber)))
    return found


def seg_algorithm(seg: Dataset) -> tuple[str, str, dict[str, str]]:
    """(algorithm name, version, parameters) of a SEG's first non-background segment."""
    for item in seg.SegmentSequence:
        algorithms = item.get("SegmentationAlgorithmIdentificationSequence")
        if algorithms:
            algorithm = algorithms[0]
            parameters: dict[str, str] = {}
            text = str(algorithm.get("AlgorithmParameters", "") or "")
            for part in text.split(","):
                key, _, value = part.partition("=")
                if key.strip():
                    parameters[key.strip()] = value.strip()
            return str(algorithm.AlgorithmName), str(algorithm.AlgorithmVersion), parameters
    return "", "", {}


def seg_timestamp(seg: Dataset) -> datetime:
    """The SEG's ContentDate and ContentTime (whole seconds)."""
    time = str(seg.get("ContentTime", "000000") or "000000").split(".")[0].ljust(6, "0")
    return datetime.strptime(str(seg.ContentDate) + time[:6], "%Y%m%d%H%M%S")


def labelmaps_from_segs(
    volume: CTVolume, segs: Sequence[Dataset], catalog: Catalog, model: str | None = None
) -> list[TaskLabelMap]:
    """The task label maps that the SEGs of one series encode, on the volume's grid.

    Parameters
    ----------
    volume
        The source series the SEGs reference (frames are matched by source instance).
    segs
        highdicom Segmentation datasets (``highdicom.seg.segread``), LABELMAP or BINARY.
    catalog
        Matches segments to structures by codes and structures to task labels.
    model
        The model whose tasks to rebuild (``"cads"``, ``"totalseg"``); defaults to the SEGs'
        algorithm name.

    Raises
    ------
    QAError
        If a segment matches no structure, or the structure has no label in ``model``.
    """
    series_uid = volume.series_instance_uid
    if not model and segs:
        model = seg_algorithm(segs[0])[0]
    if not model:
        raise QAError(
            "the SEGs name no algorithm: give the model (--model cads)",
            series_instance_uid=series_uid or None,
            reason="unknown-model",
        )
    uids = [ref.sop_instance_uid for ref in volume.source_refs]
    references = segment_references(segs, catalog, series_uid)
    arrays: dict[str, np.ndarray] = {}
    names: dict[str, dict[int, str]] = {}
    versions: dict[str, str] = {}
    cache: dict[str, np.ndarray] = {}
    for name, (seg, number) in references.items():
        structure = catalog.by_name(name)
        label = catalog.label_of(structure.name, model)
        if label is None:
            raise QAError(
                f"{name} has no {model} label in the catalog",
                series_instance_uid=series_uid or None,
                reason="unmapped-label",
            )
        key = str(seg.SOPInstanceUID)
        if key not in cache:
            cache[key] = np.asarray(
                seg.get_pixels_by_source_instance(
                    source_sop_instance_uids=uids,
                    combine_segments=seg.SegmentationType == "LABELMAP",
                    skip_overlap_checks=True,
                )
            )
        pixels = cache[key]
        mask = pixels == number if pixels.ndim == 3 else pixels[..., number - 1] > 0
        task = str(label.task)
        if task not in arrays:
            arrays[task] = np.zeros(volume.shape, dtype=np.uint16)
            names[task] = {}
            versions[task] = seg_algorithm(seg)[1]
        arrays[task][mask] = label.label
        names[task][label.label] = label.label_name
    maps = []
    for task in sorted(arrays):
        array = arrays[task]
        dtype = np.uint8 if array.max() <= 255 else np.uint16
        maps.append(TaskLabelMap(model, task, array.astype(dtype), names[task], versions[task]))
    return maps

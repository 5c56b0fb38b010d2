"""DICOM SEG read back (the SEG writer's inverse): segments to structures, task label maps.

:func:`segment_references` finds which segment of which SEG holds each structure (the SR
writers reference segments by it, training reads annotated SEGs by it);
:func:`labelmaps_from_segs` rebuilds the task label maps, for QA of SEGs written earlier (the
CLI); :func:`read_seg` reads a SEG file and names the file where it is not a readable SEG.
Segments are matched to catalog structures by their codes (never by label text), and grouped
into the tasks of the model that produced them, so LABELMAP SEGs (one per task) and a BINARY
SEG (all tasks) give the same label maps. The model is the SEG's algorithm name, and each
label map's model version the algorithm version of the SEG its segments come from.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime

import numpy as np
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from omas_idc.catalog.model import Catalog, Code
from omas_idc.errors import CatalogError, EncodingError, QAError
from omas_idc.labelmap import TaskLabelMap
from omas_idc.volume import CTVolume

__all__ = [
    "labelmaps_from_segs",
    "read_seg",
    "seg_algorithm",
    "seg_timestamp",
    "segment_references",
]

#: SOP Class UID of Segmentation Storage (PS3.4 B.5) and its label-map variant (Sup 243).
_SEG_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation Storage",
    "1.2.840.10008.5.1.4.1.1.66.7": "Label Map Segmentation Storage",
}


def read_seg(path: str | os.PathLike[str]) -> Dataset:
    """Read a DICOM SEG file (``highdicom.seg.segread``), naming the file where it is not one.

    Raises
    ------
    QAError
        ``reason="unreadable-seg"`` where the file is empty, truncated or not DICOM;
        ``reason="not-a-seg"`` where it is DICOM but not a Segmentation (a CT slice, an SR).
    """
    import highdicom as hd
    import pydicom

    try:
        with open(path, "rb") as stream:
            header = pydicom.dcmread(stream, stop_before_pixels=True)
    except (OSError, EOFError, ValueError, InvalidDicomError) as err:
        raise QAError(
            f"{path} is not a readable DICOM file ({type(err).__name__}: {err}): give the SEG "
            "files the series' segmentation wrote, complete (copy or download them again)",
            reason="unreadable-seg",
        ) from err
    sop_class = str(header.get("SOPClassUID", ""))
    if sop_class not in _SEG_SOP_CLASSES:
        kind = f"Modality {header.get('Modality', 'unknown')}, SOP class {sop_class or 'none'}"
        raise QAError(
            f"{path} is not a DICOM Segmentation ({kind}): give the SEG files of the series, "
            "not its images or other objects",
            reason="not-a-seg",
        )
    try:
        return hd.seg.segread(path)
    except (OSError, EOFError, ValueError, KeyError, AttributeError, InvalidDicomError) as err:
        raise QAError(
            f"{path} is a damaged or truncated SEG ({type(err).__name__}: {err}): copy or "
            "download it again, or write it again with omas-idc encode",
            reason="unreadable-seg",
        ) from err


def _seg_name(seg: Dataset) -> str:
    """The SEG's file where it was read from one, else its SOP Instance UID."""
    filename = getattr(seg, "filename", None)
    return str(filename) if filename else f"SEG {seg.SOPInstanceUID}"


def _check_references_series(seg: Dataset, series_uid: str) -> None:
    """Raise a ``wrong-series`` QAError where ``seg`` does not segment series ``series_uid``."""
    referenced = [str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])]
    if series_uid and series_uid not in referenced:
        raise QAError(
            f"{_seg_name(seg)} segments series {', '.join(referenced) or '(none named)'}, not "
            "this one: give the SEGs written for this series (or the series the SEG was "
            "written for)",
            series_instance_uid=series_uid,
            reason="wrong-series",
        )


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
        If a segment matches no structure, or the structure has no label in ``model``
        (``reason="unmapped-label"``), or a SEG segments another series (``"wrong-series"``)
        or frames the series does not have (``"seg-mismatch"``).
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
    for seg in segs:
        _check_references_series(seg, series_uid)
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
            try:
                cache[key] = np.asarray(
                    seg.get_pixels_by_source_instance(
                        source_sop_instance_uids=uids,
                        combine_segments=seg.SegmentationType == "LABELMAP",
                        skip_overlap_checks=True,
                    )
                )
            except (KeyError, ValueError, IndexError) as err:
                raise QAError(
                    f"{_seg_name(seg)} does not match the slices of the series "
                    f"({type(err).__name__}: {err}): give the SEGs written for this version of "
                    "the series",
                    series_instance_uid=series_uid or None,
                    reason="seg-mismatch",
                ) from err
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

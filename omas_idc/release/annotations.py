"""Release annotated label maps of IDC series as DICOM SEG + SR, keeping "absent" apart from
"not annotated".

For each manifest case (:mod:`omas_idc.release.manifest`):

1. its dataset's label table (:mod:`omas_idc.release.labeltables`) says which label value is
   which catalog structure and which structures the dataset annotated (a case's
   ``structures`` column may narrow that);
2. its DICOM series is found and read, and the label map is put on that series' grid voxel
   for voxel, or refused (:mod:`omas_idc.release.matching`);
3. every label value in the map must be in the table (``unknown-label``) and among the
   structures the case annotated (``not-annotated-label``);
4. each structure of the release's *universe* gets a status
   (:class:`~omas_idc.encode.annotation_sr.AnnotationStatus`): annotated and present,
   annotated but absent, or not annotated. *Absent* is claimed only where the label map
   covers the whole series: a label map cropped to part of the series
   (:func:`~omas_idc.release.matching.annotated_region`) says nothing about the rest, so an
   annotated structure without voxels in it may lie outside the crop and is reported *not
   annotated* (with no label). Structures with voxels in the crop are present, with the
   voxels there;
5. the present structures are encoded in one SEG (BINARY by default, or one LABELMAP) whose
   segments carry the dataset's Segment Algorithm Type (PS3.3 C.8.20.2: MANUAL segments no
   algorithm identification; SEMIAUTOMATIC/AUTOMATIC ones the dataset's algorithm name and
   version) and whose ContentCreatorName is the annotator; the status of every structure
   goes into a TID 1500 report (:mod:`omas_idc.encode.annotation_sr`) and into the
   annotations table (:mod:`omas_idc.release.annotations_table`).

The universe is, by default, the union of the label tables of the datasets the manifest uses
(``"manifest"``); ``"cads"`` takes every structure CADS segments, ``"catalog"`` the whole
catalog; annotated structures are always in it. Structures are listed in catalog order.

Layouts: ``binary`` (default) is read by every DICOM viewer and its segment references in the
SR pass every validator; ``labelmap`` (DICOM Supplement 243) keeps the label values as segment
numbers, but dicom3tools does not know Label Map Segmentation Storage yet and reports the SR's
references to it.

Series numbers: the SEG takes ``100 * source SeriesNumber + 90`` and the SR ``+ 91`` (see
:func:`omas_idc.encode.seg.series_number_for`), apart from the model outputs' series.

Outputs under ``out``: ``cases/<case_id>/seg_<dataset>.dcm`` and ``sr_<dataset>.dcm``,
``annotations.parquet`` (released cases) and ``outcomes.json`` (every case: done or refused
with a reason code and message). Each file is written atomically; one refused case never
stops the others.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from omas_idc.atomic import atomic_write_text
from omas_idc.catalog.model import Catalog, Structure
from omas_idc.encode import EncodedSeg, SegLayout, encode_binary, encode_labelmaps, write_dataset
from omas_idc.encode.annotation_sr import (
    AnnotationStatus,
    StructureStatus,
    encode_annotation_sr,
)
from omas_idc.encode.seg import series_number_for
from omas_idc.errors import CatalogError, ConfigurationError, OmasIdcError
from omas_idc.labelmap import TaskLabelMap
from omas_idc.release.errors import ReleaseError
from omas_idc.release.labeltables import AnnotatedDataset, DatasetRegistry
from omas_idc.release.manifest import ManifestCase
from omas_idc.release.matching import (
    SeriesIndex,
    annotated_region,
    find_case_series,
    labels_on_grid,
    read_label_nifti,
)
from omas_idc.release.released import ReleasedCase
from omas_idc.volume import CTVolume

__all__ = [
    "ANNOTATION_SEG_POSITION",
    "TASK",
    "UNIVERSES",
    "CaseOutcome",
    "PreparedCase",
    "ReleaseOptions",
    "ReleasedCase",
    "annotation_statuses",
    "encode_case",
    "prepare_case",
    "release_annotations",
    "structure_universe",
]

logger = logging.getLogger(__name__)

#: The task name of every annotation label map (one map per case).
TASK = "annotations"
#: Structure universes (see the module docstring).
UNIVERSES = ("manifest", "cads", "catalog")
#: Series number position of the annotation SEG.
ANNOTATION_SEG_POSITION = 90


def structure_universe(
    catalog: Catalog, datasets: Iterable[AnnotatedDataset], mode: str = "manifest"
) -> tuple[Structure, ...]:
    """The structures whose status every case reports, in catalog order.

    Raises
    ------
    ConfigurationError
        For an unknown ``mode``.
    """
    if mode not in UNIVERSES:
        raise ConfigurationError(f"universe must be one of {UNIVERSES}, got {mode!r}")
    annotated = {s.name for d in datasets for s in d.labels.values()}
    if mode == "catalog":
        return catalog.structures
    return tuple(
        s
        for s in catalog.structures
        if s.name in annotated
        or (mode in catalog.models() and catalog.label_of(s.name, mode) is not None)
    )


@dataclass(frozen=True, eq=False)
class PreparedCase:
    """A case whose series is found and whose labels lie on its grid, ready to encode.

    ``annotated`` maps the label values the case annotated to their structures.
    ``annotated_region`` is the box (z, y, x slices) of the series' grid that a cropped label
    map covers, or ``None`` where it covers the whole series.
    """

    case: ManifestCase
    dataset: AnnotatedDataset
    volume: CTVolume
    labelmap: TaskLabelMap
    annotated: Mapping[int, Structure]
    match_method: str
    annotated_region: tuple[slice, slice, slice] | None = None

    @property
    def covers_series(self) -> bool:
        """Whether the label map covers the whole series (absence is then known)."""
        return self.annotated_region is None


@dataclass(frozen=True)
class CaseOutcome:
    """What happened to one case (a row of ``outcomes.json``).

    ``status`` is ``"done"`` or ``"refused"``; ``reason`` a code of
    :data:`omas_idc.release.errors.REASONS` or of the stage that refused (``"empty-uids"``
    from the encoder, ``"gap"`` from the reader, ...).
    """

    case_id: str
    dataset: str
    status: str
    reason: str = ""
    message: str = ""
    error_class: str = ""
    source_series_instance_uid: str = ""
    series_match: str = ""
    seg_path: str = ""
    sr_path: str = ""
    present: int = 0
    absent: int = 0
    not_annotated: int = 0


@dataclass(frozen=True)
class ReleaseOptions:
    """How to release.

    Attributes
    ----------
    out
        Output folder.
    timestamp
        Content date/time of all outputs (fixed for byte-identical re-runs).
    universe
        ``"manifest"``, ``"cads"`` or ``"catalog"`` (see the module docstring).
    layout
        ``"binary"`` or ``"labelmap"``.
    hu_tolerance
        Content matching: largest HU difference counted as equal.
    """

    out: Path
    timestamp: datetime
    universe: str = "manifest"
    layout: str = "binary"
    hu_tolerance: float = 0.0


def _annotated(case: ManifestCase, dataset: AnnotatedDataset) -> dict[int, Structure]:
    if case.structures is None:
        return dict(dataset.labels)
    by_name = {s.name: v for v, s in dataset.labels.items()}
    outside = [n for n in case.structures if n not in by_name]
    if outside:
        raise ReleaseError(
            f"the manifest says the case annotated {outside}, which dataset {dataset.name}'s "
            f"label table does not list (it lists {sorted(by_name)})",
            case_id=case.case_id,
            reason="unknown-structure",
        )
    return {by_name[n]: dataset.labels[by_name[n]] for n in case.structures}


def _integer_labels(array: npt.NDArray[np.generic], case: ManifestCase) -> npt.NDArray[np.generic]:
    values = np.asarray(array)
    if not np.issubdtype(values.dtype, np.integer):
        if not np.issubdtype(values.dtype, np.floating) or not np.all(
            np.equal(np.mod(values, 1), 0)
        ):
            raise ReleaseError(
                f"the label NIfTI {case.labels} holds non-integer values ({values.dtype}); a "
                "label map holds integer labels (was it resampled with interpolation?)",
                case_id=case.case_id,
                reason="bad-labels",
            )
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if low < 0 or high > 65535:
        raise ReleaseError(
            f"the label NIfTI {case.labels} holds values in [{low:g}, {high:g}]; labels are "
            "0 (background) to 65535",
            case_id=case.case_id,
            reason="bad-labels",
        )
    return values


def prepare_case(
    case: ManifestCase,
    registry: DatasetRegistry,
    index: SeriesIndex,
    *,
    hu_tolerance: float = 0.0,
) -> PreparedCase:
    """Steps 1-3 of the module docstring for one case.

    Raises
    ------
    ReleaseError
        With the reason that names why the case cannot be released.
    OmasIdcError
        From the read stage where the series cannot be read.
    """
    dataset = registry.get(case.dataset, case.case_id)
    annotated = _annotated(case, dataset)
    array, affine = read_label_nifti(case.labels, case.case_id)
    array = _integer_labels(array, case)
    image = read_label_nifti(case.image, case.case_id, what="image") if case.image else None
    match = find_case_series(case, index, image, hu_tolerance)
    volume = match.volume
    uid = volume.series_instance_uid
    on_grid = labels_on_grid(array, affine, volume.geometry, case.case_id, uid)
    region: tuple[slice, slice, slice] | None = annotated_region(
        array.shape, affine, volume.geometry
    )
    if region is not None and all(
        (r.start, r.stop) == (0, n) for r, n in zip(region, volume.shape, strict=True)
    ):
        region = None
    values = {int(v) for v in np.unique(on_grid) if v}
    unknown = sorted(values - set(dataset.labels))
    if unknown:
        raise ReleaseError(
            f"the label map holds values {unknown} that dataset {dataset.name}'s label table "
            "does not list; add them to the table (with their catalog structure) rather than "
            "dropping them",
            case_id=case.case_id,
            series_instance_uid=uid or None,
            reason="unknown-label",
        )
    unannotated = sorted(values - set(annotated))
    if unannotated:
        names = [dataset.labels[v].name for v in unannotated]
        raise ReleaseError(
            f"the label map holds {names} (values {unannotated}), which the manifest says "
            "this case did not annotate; correct its structures column",
            case_id=case.case_id,
            series_instance_uid=uid or None,
            reason="not-annotated-label",
        )
    dtype = np.uint16 if max(values, default=0) > 255 else np.uint8
    labelmap = TaskLabelMap(
        model=dataset.name,
        task=TASK,
        array=on_grid.astype(dtype),
        labels={v: s.name for v, s in sorted(annotated.items())},
        model_version=dataset.version,
    )
    logger.info(
        "case %s: series %s (%s), %d labels on the grid%s",
        case.case_id,
        uid or "(empty UID)",
        match.method,
        len(values),
        "" if region is None else f", annotated region (z, y, x) {_box_text(region)}",
    )
    return PreparedCase(case, dataset, volume, labelmap, annotated, match.method, region)


def _box_text(region: tuple[slice, slice, slice]) -> str:
    return " x ".join(f"{r.start}:{r.stop}" for r in region)


def annotation_statuses(
    labelmap: npt.NDArray[np.generic],
    annotated: Mapping[int, Structure],
    universe: Sequence[Structure],
    voxel_volume_mm3: float,
    *,
    covers_series: bool = True,
) -> list[StructureStatus]:
    """The status of every structure of ``universe`` (plus annotated ones outside it).

    An annotated structure with voxels is *present*. One without voxels is *absent* only
    where the label map covers the whole series; where it was cropped to part of the series
    the structure may lie outside the crop, so it is *not annotated* (label ``None``), never
    claimed absent.

    Parameters
    ----------
    labelmap
        The label map on the DICOM grid.
    annotated
        Label value -> structure, for the structures the case annotated.
    universe
        The release's structures, in report order.
    voxel_volume_mm3
        For the volumes of present structures.
    covers_series
        Whether the label map covers the whole series grid (``False`` for a cropped one:
        :attr:`PreparedCase.covers_series`).
    """
    values, counts = np.unique(labelmap[labelmap != 0], return_counts=True)
    voxels = {int(v): int(c) for v, c in zip(values, counts, strict=True)}
    label_of = {s.name: v for v, s in annotated.items()}
    names = [s.name for s in universe]
    extra = [s for s in annotated.values() if s.name not in names]
    statuses = []
    for structure in (*universe, *extra):
        label = label_of.get(structure.name)
        if label is None:
            statuses.append(StructureStatus(structure, AnnotationStatus.NOT_ANNOTATED))
        elif voxels.get(label, 0) == 0 and not covers_series:
            statuses.append(StructureStatus(structure, AnnotationStatus.NOT_ANNOTATED))
        elif voxels.get(label, 0) == 0:
            statuses.append(StructureStatus(structure, AnnotationStatus.ABSENT, label))
        else:
            count = voxels[label]
            statuses.append(
                StructureStatus(
                    structure,
                    AnnotationStatus.PRESENT,
                    label,
                    count,
                    count * voxel_volume_mm3 / 1000.0,
                )
            )
    return statuses


def _mark_seg(seg: EncodedSeg, dataset: AnnotatedDataset, volume: CTVolume) -> None:
    """Series description, number and algorithm version of an annotation SEG."""
    ds = seg.dataset
    ds.SeriesDescription = f"{dataset.name} {dataset.annotation_type.lower()} annotations"[:64]
    ds.SeriesNumber = series_number_for(volume.header.series_number, ANNOTATION_SEG_POSITION)
    if dataset.annotation_type != "MANUAL" and dataset.algorithm_version:
        # Provenance.model_version is the dataset version (it enters the UIDs); the
        # algorithm's own version belongs in Algorithm Version (PS3.3 C.8.20.2).
        for item in ds.SegmentSequence:
            for algorithm in item.get("SegmentationAlgorithmIdentificationSequence", []):
                algorithm.AlgorithmVersion = dataset.algorithm_version[:64]


def encode_case(
    prepared: PreparedCase,
    catalog: Catalog,
    universe: Sequence[Structure],
    timestamp: datetime,
    layout: str = "binary",
) -> ReleasedCase:
    """Step 4-5 of the module docstring: statuses, the SEG and the SR of one case.

    Raises
    ------
    EncodingError
        Where the encoder refuses (for example ``empty-uids`` for anonymisation-damaged
        source files).
    """
    chosen = SegLayout.parse(layout, "SEG layout")
    volume, dataset = prepared.volume, prepared.dataset
    provenance = dataset.provenance(timestamp)
    statuses = annotation_statuses(
        prepared.labelmap.array,
        prepared.annotated,
        universe,
        volume.geometry.voxel_volume_mm3,
        covers_series=prepared.covers_series,
    )
    if chosen is SegLayout.BINARY:
        seg = encode_binary(volume, [prepared.labelmap], catalog, provenance)
    else:
        seg = next(iter(encode_labelmaps(volume, [prepared.labelmap], catalog, provenance)), None)
    if seg is not None:
        _mark_seg(seg, dataset, volume)
    sr = encode_annotation_sr(
        volume,
        statuses,
        [seg.dataset] if seg is not None else [],
        catalog,
        provenance,
        annotator=dataset.annotator,
        algorithm_version=dataset.algorithm_version,
    )
    return ReleasedCase(
        prepared.case, dataset, volume, tuple(statuses), seg, sr, prepared.match_method
    )


def _write_json(data: object, path: Path) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def _refused(case: ManifestCase, err: Exception) -> CaseOutcome:
    if isinstance(err, OmasIdcError):
        reason, message, error_class = err.reason, str(err), err.error_class
        uid = err.series_instance_uid or ""
    else:
        reason, message, error_class, uid = "unexpected", repr(err), type(err).__name__, ""
    logger.warning("case %s refused (%s): %s", case.case_id, reason, message)
    return CaseOutcome(
        case_id=case.case_id,
        dataset=case.dataset,
        status="refused",
        reason=reason,
        message=message,
        error_class=error_class,
        source_series_instance_uid=uid,
    )


def release_annotations(
    cases: Sequence[ManifestCase],
    registry: DatasetRegistry,
    index: SeriesIndex,
    catalog: Catalog,
    options: ReleaseOptions,
) -> list[CaseOutcome]:
    """Release every case of a manifest; refuse the ones that cannot be released.

    Parameters
    ----------
    cases
        The manifest's cases.
    registry
        The datasets and their label tables.
    index
        The ``--dicom`` folder's series.
    catalog
        The structure catalog.
    options
        Output folder, timestamp, universe, layout, HU tolerance.

    Returns
    -------
    list of CaseOutcome
        One per case, in manifest order (also written to ``outcomes.json``).
    """
    from omas_idc.release.annotations_table import annotation_rows, write_annotations_table

    used = {c.dataset for c in cases}
    universe = structure_universe(
        catalog,
        (d for name, d in registry.datasets.items() if name in used),
        options.universe,
    )
    logger.info("releasing %d cases over %d structures", len(cases), len(universe))
    outcomes: list[CaseOutcome] = []
    rows: list[dict[str, object]] = []
    for case in cases:
        try:
            prepared = prepare_case(case, registry, index, hu_tolerance=options.hu_tolerance)
            released = encode_case(prepared, catalog, universe, options.timestamp, options.layout)
            folder = options.out / "cases" / case.case_id
            seg_path = (
                write_dataset(released.seg.dataset, folder / f"seg_{case.dataset}.dcm")
                if released.seg is not None
                else None
            )
            sr_path = write_dataset(released.sr, folder / f"sr_{case.dataset}.dcm")
        except (OmasIdcError, CatalogError, OSError, ValueError) as err:
            outcomes.append(_refused(case, err))
            continue
        except Exception as err:  # the one place that isolates a failing case
            logger.exception("case %s failed unexpectedly", case.case_id)
            outcomes.append(_refused(case, err))
            continue
        rows.extend(annotation_rows(released))
        counts = {s: 0 for s in AnnotationStatus}
        for item in released.statuses:
            counts[item.status] += 1
        outcomes.append(
            CaseOutcome(
                case_id=case.case_id,
                dataset=case.dataset,
                status="done",
                source_series_instance_uid=released.volume.series_instance_uid,
                series_match=released.match_method,
                seg_path=str(seg_path) if seg_path else "",
                sr_path=str(sr_path),
                present=counts[AnnotationStatus.PRESENT],
                absent=counts[AnnotationStatus.ABSENT],
                not_annotated=counts[AnnotationStatus.NOT_ANNOTATED],
            )
        )
    write_annotations_table(rows, options.out / "annotations.parquet")
    _write_json([asdict(o) for o in outcomes], options.out / "outcomes.json")
    done = sum(1 for o in outcomes if o.status == "done")
    logger.info("released %d of %d cases", done, len(outcomes))
    return outcomes

"""QA rules: each turns measurements into a :class:`~omas_idc.qa.records.Finding`.

The rules (their SR concepts, thresholds and plausibility columns are registered in
:data:`omas_idc.qa.rules.QA_RULES`):

Truncation
    A segment whose bounding box touches the first or last slice, or the first/last row or
    column, is cut by the field of view: its volume and statistics describe the imaged part
    only -> ``warn`` (reason ``truncated:<borders>``). The body outline always extends beyond
    the first and last slice, so for ``body`` only the in-plane borders count.
Connected components (26-connectivity)
    For a structure expected in one piece (``components`` = 1 in ``plausibility.csv``): one
    component -> pass; several with at least :data:`SPLIT_FRACTION` of the voxels in the
    largest -> ``warn`` (``fragments``); less -> ``fail`` (``split``).
Laterality
    For a structure coded Left or Right (type or region modifier, SCT 7771000 / 24028007):
    its centroid must lie on its own side of the body midline along the patient's LPS x axis
    (+x is the patient's left, whatever the patient position or image flips). Farther than
    :data:`LATERALITY_TOLERANCE_MM` on the wrong side -> ``fail`` (``wrong_side``); within the
    tolerance of the midline -> ``warn`` (``near_midline``). The midline comes from
    :func:`omas_idc.qa.measure.body_midline`.
Volume
    Outside a structure's cited adult range -> ``warn`` (``volume_below_range`` /
    ``volume_above_range``). Structures without a range, unless marked small, are held to
    IDC's floor of :data:`MINIMUM_VOLUME_ML` (configurable: ``[qa] min_volume_ml``) -> ``warn``
    (``volume_below_minimum``).
Status of expected structures
    The expected structures are all the labels the catalog gives the model's tasks present in
    the run. One with voxels is ``present``. An absent vertebra is ``outside_fov`` where its
    position, extrapolated from the nearest present vertebrae (one level per step of the
    mean spacing between present levels), falls outside the volume, and ``absent`` otherwise;
    an absent vertebra between present levels additionally warns
    (``absent_between_present``). Every other structure without voxels is ``absent``: a
    first version has no evidence for where it should have been.
Verdicts
    A segment's verdict is the worst of its findings; the series' is the worst of its
    records' and its own findings' (``fail`` > ``warn`` > ``pass``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from omas_idc.catalog.model import Catalog, Structure
from omas_idc.errors import CatalogError, QAError
from omas_idc.labelmap import TaskLabelMap
from omas_idc.qa.measure import body_midline, measure_labelmap
from omas_idc.qa.plausibility import StructureExpectation
from omas_idc.qa.records import (
    Finding,
    QARecord,
    SegmentMetrics,
    SeriesQA,
    Status,
    Verdict,
    worst,
)
from omas_idc.qa.rules import QA_RULES, Check
from omas_idc.volume import CTVolume

__all__ = [
    "LATERALITY_TOLERANCE_MM",
    "MINIMUM_VOLUME_ML",
    "SPLIT_FRACTION",
    "VERTEBRA_LEVELS",
    "assess_series",
    "check_components",
    "check_laterality",
    "check_truncation",
    "check_volume",
    "laterality_of",
    "measure_series",
]

logger = logging.getLogger(__name__)

LATERALITY_TOLERANCE_MM = QA_RULES.rule(Check.LATERALITY).threshold("tolerance_mm")
MINIMUM_VOLUME_ML = QA_RULES.rule(Check.MINIMUM_VOLUME).threshold("min_volume_ml")
SPLIT_FRACTION = QA_RULES.rule(Check.COMPONENTS).threshold("split_fraction")
_LEFT, _RIGHT = "7771000", "24028007"
#: Vertebral levels from cranial to caudal, as in the catalog names ``vertebrae_<level>``.
VERTEBRA_LEVELS: tuple[str, ...] = (
    *(f"C{i}" for i in range(1, 8)),
    *(f"T{i}" for i in range(1, 13)),
    *(f"L{i}" for i in range(1, 6)),
    "S1",
)


def laterality_of(structure: Structure) -> str | None:
    """``"left"``/``"right"`` from the type (or region) laterality modifier, else ``None``."""
    for modifier in (structure.type_modifier, structure.region_modifier):
        if modifier is not None and modifier.scheme == "SCT":
            if modifier.value == _LEFT:
                return "left"
            if modifier.value == _RIGHT:
                return "right"
    return None


def check_truncation(structure: Structure, metrics: SegmentMetrics) -> Finding:
    """Whether the field of view cuts the segment (see the module docstring)."""
    borders = metrics.truncated_at
    if structure.name == "body":
        borders = tuple(b for b in borders if b not in ("first_slice", "last_slice"))
    if not borders:
        return Finding(Check.TRUNCATION, Verdict.PASS)
    return Finding(
        Check.TRUNCATION,
        Verdict.WARN,
        "truncated:" + "+".join(borders),
        f"touches the {', '.join(b.replace('_', ' ') for b in borders)} of the field of view",
    )


def check_components(expectation: StructureExpectation, metrics: SegmentMetrics) -> Finding | None:
    """One piece expected: fragments warn, a split fails; ``None`` for multi-part structures."""
    if not expectation.single_component:
        return None
    n, fraction = metrics.components, metrics.largest_component_fraction
    if n <= 1:
        return Finding(Check.COMPONENTS, Verdict.PASS)
    message = f"{n} connected components, {100 * fraction:.1f}% of the voxels in the largest"
    if fraction >= SPLIT_FRACTION:
        return Finding(Check.COMPONENTS, Verdict.WARN, "fragments", message)
    return Finding(Check.COMPONENTS, Verdict.FAIL, "split", message)


def check_laterality(
    side: str, metrics: SegmentMetrics, midline_x_mm: float
) -> tuple[Finding, float]:
    """The centroid's side of the midline; returns the finding and the signed distance (mm).

    The distance is positive on the structure's own side (LPS +x is the patient's left).
    """
    sign = 1.0 if side == "left" else -1.0
    distance = sign * (metrics.centroid_lps[0] - midline_x_mm)
    if distance > LATERALITY_TOLERANCE_MM:
        return Finding(Check.LATERALITY, Verdict.PASS), distance
    if distance < -LATERALITY_TOLERANCE_MM:
        return (
            Finding(
                Check.LATERALITY,
                Verdict.FAIL,
                "wrong_side",
                f"a {side} structure {abs(distance):.1f} mm on the patient's other side of "
                "the midline",
            ),
            distance,
        )
    return (
        Finding(
            Check.LATERALITY,
            Verdict.WARN,
            "near_midline",
            f"centroid {distance:+.1f} mm from the midline: side undecidable",
        ),
        distance,
    )


def check_volume(
    expectation: StructureExpectation,
    metrics: SegmentMetrics,
    min_volume_ml: float = MINIMUM_VOLUME_ML,
) -> list[Finding]:
    """Volume against the cited range, or against the ``min_volume_ml`` floor (module docstring)."""
    volume = metrics.volume_ml
    volume_range = expectation.volume_range
    if volume_range is not None:
        low, high = volume_range
        if volume < low:
            return [
                Finding(
                    Check.PLAUSIBILITY,
                    Verdict.WARN,
                    "volume_below_range",
                    f"{volume:.1f} mL < {low:g} mL ({expectation.source})",
                )
            ]
        if volume > high:
            return [
                Finding(
                    Check.PLAUSIBILITY,
                    Verdict.WARN,
                    "volume_above_range",
                    f"{volume:.1f} mL > {high:g} mL ({expectation.source})",
                )
            ]
        return [Finding(Check.PLAUSIBILITY, Verdict.PASS)]
    if expectation.small:
        return []
    if volume < min_volume_ml:
        return [
            Finding(
                Check.MINIMUM_VOLUME,
                Verdict.WARN,
                "volume_below_minimum",
                f"{volume:.2f} mL < {min_volume_ml:g} mL",
            )
        ]
    return [Finding(Check.MINIMUM_VOLUME, Verdict.PASS)]


def _vertebra_level(structure: Structure) -> int | None:
    prefix = "vertebrae_"
    if structure.name.startswith(prefix) and structure.name[len(prefix) :] in VERTEBRA_LEVELS:
        return VERTEBRA_LEVELS.index(structure.name[len(prefix) :])
    return None


def _inside(volume: CTVolume, point: np.ndarray) -> bool:
    zyx = volume.geometry.lps_to_voxel(point)
    upper = np.asarray(volume.shape, dtype=np.float64) - 0.5
    return bool(np.all(zyx >= -0.5) and np.all(zyx <= upper))


def _vertebra_status(
    volume: CTVolume, level: int, present: Mapping[int, tuple[float, float, float]]
) -> tuple[Status, Finding | None]:
    """Status of an absent vertebra from the present ones (see the module docstring)."""
    if not present:
        return Status.ABSENT, None
    levels = sorted(present)
    low, high = levels[0], levels[-1]
    if low < level < high:
        return Status.ABSENT, Finding(
            Check.STATUS,
            Verdict.WARN,
            "absent_between_present",
            f"vertebra {VERTEBRA_LEVELS[level]} absent between "
            f"{VERTEBRA_LEVELS[low]} and {VERTEBRA_LEVELS[high]}",
        )
    if len(levels) < 2:
        return Status.ABSENT, None
    points = np.array([present[k] for k in levels])
    step = (points[-1] - points[0]) / (levels[-1] - levels[0])
    anchor = points[0] if level < low else points[-1]
    predicted = anchor + step * (level - (low if level < low else high))
    return (Status.ABSENT if _inside(volume, predicted) else Status.OUTSIDE_FOV), None


def _resolve(catalog: Catalog, labelmap: TaskLabelMap, series_uid: str) -> dict[int, Structure]:
    """All structures the task can produce (catalog) plus those the label map names."""
    try:
        structures = catalog.resolve_labels(labelmap.model, labelmap.task, labelmap.labels)
        if labelmap.model in catalog.models():  # a mapped family: every label of the task
            for value, structure in catalog.labels_for(labelmap.model, labelmap.task).items():
                structures.setdefault(value, structure)
    except CatalogError as err:
        raise QAError(
            f"{labelmap.model} task {labelmap.task}: {err.message}",
            series_instance_uid=series_uid or None,
            reason="unmapped-label",
        ) from err
    return dict(sorted(structures.items()))


def assess_series(
    volume: CTVolume,
    labelmaps: Sequence[TaskLabelMap],
    catalog: Catalog,
    *,
    expectations: Mapping[str, StructureExpectation] | None = None,
    min_volume_ml: float = MINIMUM_VOLUME_ML,
) -> SeriesQA:
    """Measure and check every expected structure of one series.

    Parameters
    ----------
    volume
        The source CT series.
    labelmaps
        One label map per task, on the source grid.
    catalog
        Maps each model label to its structure (name, codes, laterality).
    expectations
        Per-structure ranges and expectations; defaults to the registry's plausibility data
        (:meth:`omas_idc.qa.rules.QARegistry.expectations`, ``plausibility.csv``).
    min_volume_ml
        The floor under which a structure without a cited range is flagged
        (``volume_below_minimum``); IDC's 5 mL by default.

    Returns
    -------
    SeriesQA
        A record per expected structure, with findings and verdicts, and the series verdict.

    Raises
    ------
    QAError
        If a label map is off the grid, a label is not in the catalog, or two label maps
        produce the same structure.
    """
    if not min_volume_ml >= 0:
        raise QAError(
            f"min_volume_ml must be a volume >= 0 mL, not {min_volume_ml!r}",
            series_instance_uid=volume.series_instance_uid or None,
            reason="configuration",
        )
    table = QA_RULES.expectations() if expectations is None else expectations
    series_uid = volume.series_instance_uid
    measured: list[tuple[TaskLabelMap, int, Structure, SegmentMetrics | None]] = []
    seen: dict[str, str] = {}
    for labelmap in labelmaps:
        structures = _resolve(catalog, labelmap, series_uid)
        by_label = measure_labelmap(volume, labelmap)
        unknown = sorted(set(by_label) - set(structures))
        if unknown:
            raise QAError(
                f"task {labelmap.task} label map holds values {unknown} that neither the "
                "catalog nor its label table names",
                series_instance_uid=series_uid or None,
                reason="unnamed-label",
            )
        for value, structure in structures.items():
            if structure.name in seen:
                raise QAError(
                    f"{structure.name} comes from both task {seen[structure.name]} and task "
                    f"{labelmap.task}: pass each task's label map once",
                    series_instance_uid=series_uid or None,
                    reason="duplicate-structure",
                )
            seen[structure.name] = labelmap.task
            measured.append((labelmap, value, structure, by_label.get(value)))

    vertebrae = {
        level: m.centroid_lps
        for _, _, s, m in measured
        if m is not None and (level := _vertebra_level(s)) is not None
    }
    body_mask = None
    if any(s.name == "body" and m is not None for _, _, s, m in measured):
        body_mask = np.zeros(volume.shape, dtype=np.bool_)
        for labelmap in labelmaps:
            body_mask |= labelmap.array > 0
    midline_x, midline_source = body_midline(
        volume, {VERTEBRA_LEVELS[k]: v for k, v in vertebrae.items()}, body_mask
    )

    records: list[QARecord] = []
    for labelmap, value, structure, metrics in measured:
        expectation = table.get(structure.name, StructureExpectation(structure.name))
        side = laterality_of(structure)
        base = QARecord(
            series_instance_uid=series_uid,
            model=labelmap.model,
            model_version=labelmap.model_version,
            task=labelmap.task,
            label=value,
            structure=structure,
            status=Status.ABSENT,
            laterality=side,
            plausible_range_ml=expectation.volume_range,
        )
        if metrics is None:
            level = _vertebra_level(structure)
            status, finding = (
                _vertebra_status(volume, level, vertebrae)
                if level is not None
                else (Status.ABSENT, None)
            )
            findings = (finding,) if finding else ()
            records.append(
                replace(
                    base,
                    status=status,
                    findings=findings,
                    verdict=worst([f.verdict for f in findings]),
                )
            )
            continue
        found: list[Finding] = [check_truncation(structure, metrics)]
        components = check_components(expectation, metrics)
        if components is not None:
            found.append(components)
        distance = None
        if side is not None:
            laterality, distance = check_laterality(side, metrics, midline_x)
            found.append(laterality)
        found.extend(check_volume(expectation, metrics, min_volume_ml))
        records.append(
            replace(
                base,
                status=Status.PRESENT,
                metrics=metrics,
                findings=tuple(found),
                verdict=worst([f.verdict for f in found]),
                midline_distance_mm=distance,
            )
        )
    series_findings: list[Finding] = []
    if not any(r.status is Status.PRESENT for r in records):
        series_findings.append(
            Finding(Check.STATUS, Verdict.WARN, "no_structure", "no structure is present")
        )
    verdict = worst([r.verdict for r in records] + [f.verdict for f in series_findings])
    logger.info(
        "series %s: QA %s (%d present of %d expected)",
        series_uid,
        verdict.value,
        sum(r.status is Status.PRESENT for r in records),
        len(records),
    )
    return SeriesQA(
        series_instance_uid=series_uid,
        records=tuple(records),
        verdict=verdict,
        findings=tuple(series_findings),
        midline_x_mm=midline_x,
        midline_source=midline_source,
    )


def measure_series(
    volume: CTVolume, labelmaps: Sequence[TaskLabelMap], catalog: Catalog
) -> list[QARecord]:
    """The records of :func:`assess_series` (measurements, findings and verdict per segment)."""
    return list(assess_series(volume, labelmaps, catalog).records)

"""The QA stage's contract: per series and segment metrics, findings and a verdict.

A :class:`QARecord` is one (series, structure) pair: a structure the model's tasks can produce,
present in the label map or not. Its :class:`SegmentMetrics` exist only where it is present.
:class:`SeriesQA` gathers the records of one series with the series verdict.

Verdicts (see :mod:`omas_idc.qa.checks` for the rules that produce them):

``pass``
    Every applicable check passed: the measurements describe the whole structure.
``warn``
    Usable with care (truncated by the field of view, a few stray fragments, a volume outside
    the adult reference range, a centroid close to the midline, ...).
``fail``
    The segment should not be used as the structure it claims to be (on the wrong side of the
    body, split into pieces).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omas_idc.catalog.model import Structure
from omas_idc.choices import StrEnum

__all__ = [
    "Finding",
    "HUStatistics",
    "QARecord",
    "SegmentMetrics",
    "SeriesQA",
    "Status",
    "Verdict",
    "worst",
]


class Verdict(StrEnum):
    """The outcome of a check, of a segment, or of a series (ordered pass < warn < fail)."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        """0 for pass, 1 for warn, 2 for fail."""
        return ("pass", "warn", "fail").index(self.value)


def worst(verdicts: list[Verdict] | tuple[Verdict, ...]) -> Verdict:
    """The most severe of ``verdicts`` (``pass`` for none)."""
    return max(verdicts, key=lambda v: v.rank, default=Verdict.PASS)


class Status(StrEnum):
    """Whether an expected structure is in the label map (see :mod:`omas_idc.qa.checks`)."""

    PRESENT = "present"
    ABSENT = "absent"
    OUTSIDE_FOV = "outside_fov"


@dataclass(frozen=True)
class Finding:
    """The result of one check on one segment (or on the series).

    Attributes
    ----------
    check
        The check's identifier (:class:`omas_idc.qa.rules.Check`): ``"truncation"``,
        ``"components"``, ``"laterality"``, ``"plausibility"``, ``"minimum_volume"``,
        ``"status"``.
    verdict
        Its outcome.
    reason
        A short machine-readable reason (``"truncated:first_slice"``, ``"wrong_side"``, ...)
        for warn and fail, empty for pass.
    message
        What was found, in words.
    """

    check: str
    verdict: Verdict
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class HUStatistics:
    """Attenuation statistics of a segment's voxels in Hounsfield units.

    ``std`` is the population standard deviation; percentiles interpolate linearly between
    order statistics (numpy's default), computed exactly from integer-HU histograms.
    """

    mean: float
    std: float
    minimum: float
    maximum: float
    median: float
    p10: float
    p25: float
    p75: float
    p90: float


@dataclass(frozen=True)
class SegmentMetrics:
    """Measurements of one present segment.

    Attributes
    ----------
    voxel_count
        Number of voxels with the segment's label.
    volume_ml
        ``voxel_count * |det(affine)| / 1000`` (right for sheared and oblique grids).
    hu
        Attenuation statistics.
    centroid_lps
        Centroid in patient coordinates (LPS, mm).
    bbox_start, bbox_stop
        Bounding box in array indices (z, y, x): start inclusive, stop exclusive.
    components
        Number of 26-connected components.
    largest_component_fraction
        Fraction of the voxels in the largest component.
    truncated_at
        The borders of the field of view the segment touches: ``"first_slice"``,
        ``"last_slice"``, ``"row_border"`` (first/last row), ``"column_border"``.
    """

    voxel_count: int
    volume_ml: float
    hu: HUStatistics
    centroid_lps: tuple[float, float, float]
    bbox_start: tuple[int, int, int]
    bbox_stop: tuple[int, int, int]
    components: int
    largest_component_fraction: float
    truncated_at: tuple[str, ...] = ()


@dataclass(frozen=True)
class QARecord:
    """QA of one expected structure in one series.

    Attributes
    ----------
    series_instance_uid
        The source CT series.
    model, model_version, task, label
        Which model task and label value produced (or would produce) the structure.
    structure
        The catalog structure (name, codes, colour).
    status
        Present, absent, or outside the field of view.
    metrics
        Measurements, for present structures only.
    findings
        The checks' results (including passes).
    verdict
        The worst verdict of the findings.
    laterality
        ``"left"`` or ``"right"`` for lateral structures, ``None`` otherwise.
    midline_distance_mm
        Signed distance of the centroid from the body midline along the patient's left-right
        axis, positive towards the structure's own side; ``None`` where not applicable.
    plausible_range_ml
        The (min, max) volume range the structure was checked against, if any.
    """

    series_instance_uid: str
    model: str
    model_version: str
    task: str
    label: int
    structure: Structure
    status: Status
    metrics: SegmentMetrics | None = None
    findings: tuple[Finding, ...] = ()
    verdict: Verdict = Verdict.PASS
    laterality: str | None = None
    midline_distance_mm: float | None = None
    plausible_range_ml: tuple[float, float] | None = None

    @property
    def name(self) -> str:
        """The structure's catalog name."""
        return self.structure.name

    @property
    def reasons(self) -> tuple[str, ...]:
        """The reasons of the warn and fail findings, in check order."""
        return tuple(f.reason for f in self.findings if f.verdict is not Verdict.PASS)

    def finding(self, check: str) -> Finding | None:
        """The finding of ``check``, or ``None`` where the check did not apply."""
        for item in self.findings:
            if item.check == check:
                return item
        return None


@dataclass(frozen=True, eq=False)
class SeriesQA:
    """The QA of one series: a record per expected structure and the series verdict.

    Attributes
    ----------
    series_instance_uid
        The source CT series.
    records
        One record per expected structure, present ones first (in label map order).
    verdict
        ``fail`` if a segment fails, ``warn`` if a segment or a series finding warns,
        ``pass`` otherwise.
    findings
        Series-level findings (absent vertebrae between present ones, no structure at all).
    midline_x_mm
        The LPS x of the body midline used by the laterality check.
    midline_source
        ``"vertebrae"``, ``"body"`` or ``"threshold"`` (see :func:`omas_idc.qa.body_midline`).
    """

    series_instance_uid: str
    records: tuple[QARecord, ...]
    verdict: Verdict
    findings: tuple[Finding, ...] = ()
    midline_x_mm: float | None = None
    midline_source: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def present(self) -> tuple[QARecord, ...]:
        """The records of the structures present in the series."""
        return tuple(r for r in self.records if r.status is Status.PRESENT)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the series verdict is not pass: ``"<structure>:<reason>"`` and series reasons."""
        out = [f"{r.name}:{reason}" for r in self.records for reason in r.reasons]
        out.extend(f.reason for f in self.findings if f.verdict is not Verdict.PASS)
        return tuple(out)

    def record(self, name: str) -> QARecord:
        """The record of the structure called ``name``."""
        for item in self.records:
            if item.name == name:
                return item
        raise KeyError(f"series {self.series_instance_uid} has no QA record for {name!r}")

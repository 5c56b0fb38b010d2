"""Geometry validation: from unordered slice records to a regular (possibly sheared) grid.

The rules (DESIGN.md, "Geometry rules"), each either handled by an explicit, recorded rule or
refused with a :class:`~omas_idc.errors.SeriesGeometryError` whose ``reason`` names it:

- localizers (ImageType value 3 LOCALIZER, PS3.3 C.8.2.1.1.1) and small groups of images whose
  orientation differs from the majority by at least 10 degrees are dropped, with a warning; a
  series whose images split into several large orientation groups, or with images nearly
  (not exactly) parallel to the others, is refused (``mixed-orientation``);
- slices are ordered by ImagePositionPatient projected on the slice normal (row cosine x column
  cosine, PS3.3 C.7.6.2.1.1), never by file name or InstanceNumber;
- the same SOP instance twice is dropped with a warning; two different slices at the same
  position are refused (``duplicate-position``);
- rows/columns and PixelSpacing must agree (``mixed-size``, ``mixed-pixel-spacing``);
- steps along the normal must be uniform: larger steps that are whole multiples of the usual
  step are missing slices (``gap``), any other deviation is ``nonuniform-spacing``;
- gantry tilt (slice step not parallel to the normal) is carried in a sheared affine, with a
  warning, or refused (``tilt``) when the caller asks for orthogonal grids only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from omas_idc.errors import SeriesGeometryError
from omas_idc.geometry import VolumeGeometry, affine_from_slices, slice_normal
from omas_idc.read.slices import SliceRecord

__all__ = [
    "DUPLICATE_POSITION_TOLERANCE_MM",
    "GAP_FACTOR",
    "LOCALIZER_MIN_ANGLE_DEGREES",
    "MAX_STRAY_ORIENTATION_IMAGES",
    "ORIENTATION_TOLERANCE",
    "PIXEL_SPACING_TOLERANCE_MM",
    "POSITION_TOLERANCE_FRACTION",
    "SLICE_STEP_ABSOLUTE_TOLERANCE_MM",
    "SLICE_STEP_RELATIVE_TOLERANCE",
    "TILT_TOLERANCE_DEGREES",
    "build_geometry",
    "drop_localizers",
]

logger = logging.getLogger(__name__)

#: Two ImageOrientationPatient values are the same orientation when no direction cosine differs
#: by more than this (1e-3 is 0.06 degrees; scanners write cosines with 5-6 decimals).
ORIENTATION_TOLERANCE = 1e-3
#: Images in an orientation other than the majority's are dropped as localizers only where each
#: such orientation holds at most this many images (scouts come alone or in pairs).
MAX_STRAY_ORIENTATION_IMAGES = 3
#: Images whose slice normal is within this angle of the majority's are no localizers (scouts
#: are projections at right angles to the slices): a few such images are refused, not dropped.
LOCALIZER_MIN_ANGLE_DEGREES = 10.0
#: Two slices closer than this along the normal sit at the same position.
DUPLICATE_POSITION_TOLERANCE_MM = 0.01
#: A slice step equals the median step when it differs by at most this fraction of it (1 %) ...
SLICE_STEP_RELATIVE_TOLERANCE = 0.01
#: ... or by at most this many mm (positions are often written with 2 decimals).
SLICE_STEP_ABSOLUTE_TOLERANCE_MM = 0.02
#: A step larger than GAP_FACTOR x the median step, and within a quarter of the median from a
#: whole multiple of it, is a gap of missing slices (DESIGN.md: gap > 1.5x median).
GAP_FACTOR = 1.5
#: Every ImagePositionPatient must lie within this fraction of the slice spacing (10 %) from the
#: voxel centre that the affine puts there (catches drift that per-step checks let through).
POSITION_TOLERANCE_FRACTION = 0.1
#: Rows of different images are equally spaced when PixelSpacing agrees within this.
PIXEL_SPACING_TOLERANCE_MM = 1e-3
#: The slice step departing from the normal by more than this is gantry tilt (as in
#: :attr:`omas_idc.geometry.VolumeGeometry.is_sheared`).
TILT_TOLERANCE_DEGREES = 0.01


def _angle_degrees(a: np.ndarray, b: np.ndarray) -> float:
    """The angle between two lines (unit vectors; either direction), in degrees."""
    return float(np.degrees(np.arccos(np.clip(abs(float(a @ b)), 0.0, 1.0))))


def _same_orientation(a: Sequence[float], b: Sequence[float]) -> bool:
    return bool(np.max(np.abs(np.subtract(a, b))) <= ORIENTATION_TOLERANCE)


def drop_localizers(
    records: Sequence[SliceRecord], series_uid: str
) -> tuple[list[SliceRecord], list[str]]:
    """Remove localizers and stray orientations; return the kept records and warnings.

    Raises
    ------
    SeriesGeometryError
        ``mixed-orientation`` where no single orientation clearly dominates;
        ``too-few-slices`` where nothing but localizers is left.
    """
    warnings: list[str] = []
    kept = [r for r in records if not r.is_localizer]
    dropped = [r for r in records if r.is_localizer]
    if dropped:
        warnings.append(
            f"dropped {len(dropped)} localizer image(s) (ImageType LOCALIZER): "
            + ", ".join(r.where() for r in dropped[:5])
        )
    if not kept:
        raise SeriesGeometryError(
            "the series holds only localizer (scout) images, no axial/coronal/sagittal volume. "
            "Select the series with the reconstructed slices.",
            series_instance_uid=series_uid,
            reason="too-few-slices",
        )
    groups: list[list[SliceRecord]] = []
    for r in kept:
        for g in groups:
            if _same_orientation(g[0].orientation, r.orientation):
                g.append(r)
                break
        else:
            groups.append([r])
    groups.sort(key=len, reverse=True)
    if len(groups) > 1:
        major, others = groups[0], groups[1:]
        stray = sum(len(g) for g in others)
        normal = slice_normal(major[0].orientation)
        near = [
            g
            for g in others
            if _angle_degrees(normal, slice_normal(g[0].orientation)) < LOCALIZER_MIN_ANGLE_DEGREES
        ]
        if near and len(major) > stray:
            listed = ", ".join(f"{g[0].where()} {list(g[0].orientation)}" for g in near[:3])
            raise SeriesGeometryError(
                f"{sum(len(g) for g in near)} image(s) are tilted by less than "
                f"{LOCALIZER_MIN_ANGLE_DEGREES:g} degrees against the other {len(major)} "
                f"({list(major[0].orientation)}): {listed}. That is no localizer (those are "
                "projections at right angles) but a damaged ImageOrientationPatient or a "
                "second reconstruction. Fetch the series again, or select the intended images.",
                series_instance_uid=series_uid,
                reason="mixed-orientation",
            )
        if all(len(g) <= MAX_STRAY_ORIENTATION_IMAGES for g in others) and len(major) > stray:
            warnings.append(
                f"dropped {stray} image(s) whose orientation differs from the other "
                f"{len(major)} (treated as localizers): "
                + ", ".join(f"{g[0].where()} {list(g[0].orientation)}" for g in others)
            )
            kept = major
        else:
            sizes = ", ".join(f"{len(g)} x {list(np.round(g[0].orientation, 4))}" for g in groups)
            raise SeriesGeometryError(
                f"the images have several orientations ({sizes}); a volume needs one. "
                "Split the series by ImageOrientationPatient, or select the intended images.",
                series_instance_uid=series_uid,
                reason="mixed-orientation",
            )
    return kept, warnings


def _odd_ones(records: Sequence[SliceRecord], key: Callable[[SliceRecord], object]) -> str:
    """Name the slices whose ``key`` differs from the most common one (for messages)."""
    values = [key(r) for r in records]
    usual = max(set(values), key=values.count)
    odd = [r for r, v in zip(records, values, strict=True) if v != usual]
    named = ", ".join(f"{r.where()} has {key(r)}" for r in odd[:3])
    more = f" and {len(odd) - 3} more" if len(odd) > 3 else ""
    return f"{len(values) - len(odd)} slice(s) have {usual}; {named}{more}"


def _check_sizes(records: Sequence[SliceRecord], series_uid: str) -> None:
    sizes = {(r.rows, r.columns) for r in records}
    if len(sizes) > 1:
        raise SeriesGeometryError(
            f"the slices have different sizes (rows x columns: {sorted(sizes)}; "
            f"{_odd_ones(records, lambda r: (r.rows, r.columns))}); a volume needs one. "
            "Select the images of one reconstruction (a single odd file may be damaged: "
            "fetch it again).",
            series_instance_uid=series_uid,
            reason="mixed-size",
        )
    spacing = np.array([r.pixel_spacing for r in records])
    if np.ptp(spacing, axis=0).max() > PIXEL_SPACING_TOLERANCE_MM:
        found = sorted({tuple(np.round(s, 4)) for s in spacing})
        odd = _odd_ones(records, lambda r: tuple(np.round(r.pixel_spacing, 3)))
        raise SeriesGeometryError(
            f"the slices have different PixelSpacing ({found}; {odd}); a volume needs one. "
            "Select the images of one reconstruction (a single odd file may be damaged: fetch "
            "it again).",
            series_instance_uid=series_uid,
            reason="mixed-pixel-spacing",
        )


def _dedupe(
    ordered: list[SliceRecord], distances: np.ndarray, series_uid: str
) -> tuple[list[SliceRecord], np.ndarray, list[str]]:
    warnings: list[str] = []
    keep = [0]
    for i in range(1, len(ordered)):
        j = keep[-1]
        if distances[i] - distances[j] > DUPLICATE_POSITION_TOLERANCE_MM:
            keep.append(i)
            continue
        a, b = ordered[j], ordered[i]
        same = (a.file.sop_instance_uid, a.frame_index) == (b.file.sop_instance_uid, b.frame_index)
        if same and a.file.sop_instance_uid:
            warnings.append(f"the same image is present twice ({a.where()}, {b.where()}); kept one")
            continue
        raise SeriesGeometryError(
            f"two slices lie at the same position {distances[i]:.3f} mm along the slice normal "
            f"({a.where()} and {b.where()}); this is not one regular volume (several "
            "acquisitions or phases in one series?). Split the series, e.g. by AcquisitionNumber "
            "or TemporalPositionIdentifier.",
            series_instance_uid=series_uid,
            reason="duplicate-position",
        )
    return [ordered[i] for i in keep], distances[keep], warnings


def _between(ordered: Sequence[SliceRecord], index: int) -> str:
    """The files of slices ``index`` and ``index + 1`` (for messages)."""
    return f"between {ordered[index].where()} and {ordered[index + 1].where()}"


def _check_steps(
    steps: np.ndarray, tilt: float, series_uid: str, ordered: Sequence[SliceRecord]
) -> None:
    median = float(np.median(steps))
    tolerance = max(SLICE_STEP_ABSOLUTE_TOLERANCE_MM, SLICE_STEP_RELATIVE_TOLERANCE * median)
    irregular = np.abs(steps - median) > tolerance
    if not irregular.any():
        return
    odd = steps[irregular]
    multiples = odd / median
    tilt_note = f" The series is also gantry-tilted by {tilt:.1f} degrees." if tilt else ""
    is_gap = bool(
        np.all(odd > GAP_FACTOR * median)
        and np.all(np.abs(multiples - np.round(multiples)) * median <= 0.25 * median)
    )
    if is_gap:
        missing = int(np.sum(np.round(multiples) - 1))
        where = ", ".join(
            f"{s:.2f} mm after slice {i} ({_between(ordered, int(i))})"
            for i, s in zip(np.flatnonzero(irregular), odd, strict=True)
        )
        raise SeriesGeometryError(
            f"slices are missing: the usual step is {median:.3f} mm but there is a gap of "
            f"{where} (about {missing} missing slice(s)).{tilt_note} Fetch the complete series "
            "(check the instance count), or read the parts separately.",
            series_instance_uid=series_uid,
            reason="gap",
        )
    found = ", ".join(f"{s:.3f}" for s in sorted(set(np.round(steps, 3)))[:8])
    first = int(np.flatnonzero(irregular)[0])
    raise SeriesGeometryError(
        f"non-uniform slice spacing: steps along the slice normal of {found} mm (tolerance "
        f"{tolerance:.3f} mm around the median {median:.3f} mm; the first odd step is "
        f"{_between(ordered, first)}).{tilt_note} A regular volume "
        "cannot hold these slices without resampling, which would move the SEG off the source "
        "slices. Split the series into its uniformly spaced parts.",
        series_instance_uid=series_uid,
        reason="nonuniform-spacing",
    )


def build_geometry(
    records: Sequence[SliceRecord],
    series_uid: str,
    *,
    allow_tilt: bool = True,
    single_slice_step_mm: float = 1.0,
) -> tuple[list[SliceRecord], VolumeGeometry, list[str]]:
    """Order slices along the normal, check them, and build the volume geometry.

    Parameters
    ----------
    records
        Slices of one orientation (after :func:`drop_localizers`).
    series_uid
        For error messages.
    allow_tilt
        Carry gantry tilt in a sheared affine (default); ``False`` refuses tilted series.
    single_slice_step_mm
        Length of the slice step (along the normal) of a one-slice volume.

    Returns
    -------
    tuple
        The records in slice order, the geometry, and warnings.
    """
    warnings: list[str] = []
    if not records:
        raise SeriesGeometryError(
            "the series has no slices.", series_instance_uid=series_uid, reason="too-few-slices"
        )
    _check_sizes(records, series_uid)
    first = records[0]
    normal = slice_normal(first.orientation)
    positions = np.array([r.position for r in records], dtype=np.float64)
    distances = positions @ normal
    order = np.argsort(distances, kind="stable")
    ordered = [records[i] for i in order]
    ordered, distances, dup_warnings = _dedupe(ordered, distances[order], series_uid)
    warnings += dup_warnings
    positions = np.array([r.position for r in ordered], dtype=np.float64)
    orientation = first.orientation
    pixel_spacing = first.pixel_spacing
    rows, columns = first.rows, first.columns
    if len(ordered) == 1:
        affine = affine_from_slices(orientation, pixel_spacing, positions)
        affine[:3, 2] = normal * single_slice_step_mm
        geometry = VolumeGeometry(
            affine=affine,
            shape=(1, rows, columns),
            slice_positions=positions.copy(),
            orientation=orientation,
            pixel_spacing=(float(pixel_spacing[0]), float(pixel_spacing[1])),
        )
        return ordered, geometry, warnings

    geometry = VolumeGeometry.from_slices(orientation, pixel_spacing, positions, rows, columns)
    tilt = geometry.tilt_degrees
    tilted = tilt > TILT_TOLERANCE_DEGREES
    _check_steps(np.diff(distances), tilt if tilted else 0.0, series_uid, ordered)
    if tilted and not allow_tilt:
        raise SeriesGeometryError(
            f"the gantry is tilted by {tilt:.2f} degrees (slice step not parallel to the slice "
            "normal); orthogonal grids were requested. Read with allow_tilt=True to carry the "
            "tilt in a sheared affine.",
            series_instance_uid=series_uid,
            reason="tilt",
        )
    # Per-step checks cannot see slow drift: every slice must sit where the affine puts it.
    expected = geometry.voxel_to_lps(
        np.stack([np.arange(len(ordered)), np.zeros(len(ordered)), np.zeros(len(ordered))], -1)
    )
    residuals = np.linalg.norm(expected - positions, axis=1)
    residual = float(np.max(residuals))
    limit = POSITION_TOLERANCE_FRACTION * geometry.slice_spacing
    if residual > limit:
        worst = ordered[int(np.argmax(residuals))].where()
        raise SeriesGeometryError(
            f"the slice positions do not lie on one straight, evenly spaced line: a slice "
            f"({worst}) is {residual:.3f} mm from where a regular grid puts it (tolerance "
            f"{limit:.3f} mm; the first and last slices, {ordered[0].where()} and "
            f"{ordered[-1].where()}, set the grid). "
            "Split the series into regular parts.",
            series_instance_uid=series_uid,
            reason="nonuniform-spacing",
        )
    if tilted:
        warnings.append(
            f"gantry tilt of {tilt:.2f} degrees carried in a sheared affine (voxel centres are "
            "the DICOM slice positions; tools that assume orthogonal grids will misplace it)"
        )
    return ordered, geometry, warnings

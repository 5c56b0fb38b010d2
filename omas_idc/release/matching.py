"""Find the DICOM series of an annotated case and put its labels on that series' grid.

Which series (in this order):

1. ``series_instance_uid`` given: the series with that UID, in ``series_dir`` where given,
   else in the ``--dicom`` folder (a folder named ``*_<UID>`` as ``omas-idc fetch`` writes it
   is tried first, then every series found below the folder). Not found: ``no-series``.
2. No UID but a ``series_dir`` that holds exactly one CT series: that series (the manifest
   names it).
3. Otherwise, by content, among the CT series of ``series_dir`` (or of ``--dicom``): the
   candidates are the series whose grid the case's image NIfTI maps onto exactly
   (:func:`omas_idc.gridmatch.find_grid_mapping`, from headers only); of those, the ones whose
   HU agree with the image on up to :data:`SAMPLED_SLICES` slices (the first, middle and last
   slice the image covers; every covered voxel, image values rounded to integers, equal
   within ``hu_tolerance``, 0 by default: equality of int16 HU). One match: that series;
   none: ``no-series``; several (copies of a series): ``ambiguous-series``. Without an image
   there is no content to compare: ``no-image``.

Where an image is given it is also checked against a series chosen by rules 1 and 2
(``content-mismatch`` where it differs), so that a wrong UID in a manifest is caught.

The labels are then moved onto the series' grid by axis permutations, flips and crops only
(:func:`omas_idc.gridmatch.map_onto_grid`, 1e-3 mm); a grid that would need resampling is
refused as ``grid-rotation``, ``grid-spacing``, ``grid-offset`` or ``grid-outside``.
:func:`annotated_region` says which box of the series' grid a (cropped) label map covers:
outside it nothing was annotated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from nibabel.filebasedimages import ImageFileError

from omas_idc.errors import OmasIdcError
from omas_idc.geometry import VolumeGeometry
from omas_idc.gridmatch import GridMismatch, find_grid_mapping, map_onto_grid
from omas_idc.nifti import read_nifti
from omas_idc.read import SeriesFiles, list_series, read_series
from omas_idc.read.checks import build_geometry, drop_localizers
from omas_idc.read.records import slices_of
from omas_idc.release.errors import ReleaseError
from omas_idc.release.manifest import ManifestCase
from omas_idc.volume import CTVolume

__all__ = [
    "SAMPLED_SLICES",
    "SeriesIndex",
    "SeriesMatch",
    "annotated_region",
    "content_agrees",
    "find_case_series",
    "header_geometry",
    "labels_on_grid",
    "read_label_nifti",
]

logger = logging.getLogger(__name__)

#: How many slices of the image are compared with a candidate series' HU.
SAMPLED_SLICES = 3


@dataclass(frozen=True, eq=False)
class SeriesMatch:
    """The series of a case and how it was found (``"uid"``, ``"series-dir"``, ``"content"``)."""

    volume: CTVolume
    method: str


class SeriesIndex:
    """The DICOM series below a folder, listed once (lazily) and shared by all cases."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root is not None else None
        self._series: list[SeriesFiles] | None = None

    def series(self) -> list[SeriesFiles]:
        """Every image series below the root (empty without a root)."""
        if self._series is None:
            self._series = list_series(self.root) if self.root is not None else []
            logger.info("found %d series below %s", len(self._series), self.root)
        return self._series

    def find(self, series_instance_uid: str) -> SeriesFiles | None:
        """The series with this UID, or ``None``."""
        if self.root is None:
            return None
        if self._series is None:
            # The fetch layout names folders <Modality>_<SeriesInstanceUID>: no full scan.
            for folder in self.root.rglob(f"*_{series_instance_uid}"):
                if folder.is_dir():
                    for found in list_series(folder):
                        if found.series_instance_uid == series_instance_uid:
                            return found
        for found in self.series():
            if found.series_instance_uid == series_instance_uid:
                return found
        return None


def header_geometry(series: SeriesFiles) -> VolumeGeometry:
    """The grid of a CT series from its headers alone (no pixel decoding).

    Raises
    ------
    OmasIdcError
        Where the series is not a regular CT volume (as :func:`omas_idc.read.read_series`).
    """
    uid = series.series_instance_uid
    records = [r for f in series.files if f.is_ct_volume_class for r in slices_of(f)]
    kept, _ = drop_localizers(records, uid)
    _, geometry, _ = build_geometry(kept, uid)
    return geometry


def read_label_nifti(
    path: Path, case_id: str, *, what: str = "labels"
) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.float64]]:
    """A NIfTI file as a ``[z, y, x]`` array and its LPS affine, or a ``bad-<what>`` refusal."""
    reason = "bad-labels" if what == "labels" else "bad-image"
    try:
        return read_nifti(path)
    except (OSError, ValueError, EOFError, ImageFileError) as err:
        raise ReleaseError(
            f"cannot read the {what} NIfTI {path}: {err}", case_id=case_id, reason=reason
        ) from err


def _sample_slices(covered: npt.NDArray[np.bool_]) -> list[int]:
    slices = np.flatnonzero(covered.any(axis=(1, 2)))
    if len(slices) == 0:
        return []
    picks = {int(slices[0]), int(slices[len(slices) // 2]), int(slices[-1])}
    return sorted(picks)[:SAMPLED_SLICES]


def content_agrees(
    image: npt.NDArray[np.generic],
    image_affine: npt.NDArray[np.float64],
    volume: CTVolume,
    hu_tolerance: float = 0.0,
) -> tuple[bool, str]:
    """Whether the image NIfTI is this series' pixel data (see the module docstring).

    Returns
    -------
    tuple
        The verdict and a sentence saying what was compared (for logs and refusals).
    """
    try:
        covered = map_onto_grid(np.ones(image.shape, np.uint8), image_affine, volume.geometry)
        on_grid = map_onto_grid(np.asarray(image), image_affine, volume.geometry)
    except GridMismatch as err:
        return False, f"the image does not lie on the series' grid ({err.reason}: {err})"
    mask = covered.astype(bool)
    slices = _sample_slices(mask)
    if not slices:
        return False, "the image covers no voxel of the series"
    compared = differing = 0
    for z in slices:
        values = np.rint(on_grid[z][mask[z]].astype(np.float64))
        hu = volume.hu[z][mask[z]].astype(np.float64)
        compared += values.size
        differing += int(np.count_nonzero(np.abs(values - hu) > hu_tolerance))
    verdict = differing == 0
    return verdict, (
        f"{differing} of {compared} voxels on slices {slices} differ by more than "
        f"{hu_tolerance:g} HU"
    )


def _read(files: SeriesFiles, case_id: str) -> CTVolume:
    try:
        return read_series([f.path for f in files.files])
    except OmasIdcError as err:
        raise ReleaseError(
            f"series {files.label()} cannot be read: {err}",
            case_id=case_id,
            series_instance_uid=files.series_instance_uid or None,
            reason=err.reason,
        ) from err


def _by_content(
    case: ManifestCase,
    candidates: list[SeriesFiles],
    image: tuple[npt.NDArray[np.generic], npt.NDArray[np.float64]] | None,
    hu_tolerance: float,
    where: str,
) -> CTVolume:
    if image is None:
        raise ReleaseError(
            f"no series_instance_uid and {len(candidates)} candidate series in {where}: "
            "without the image NIfTI the labels were drawn on, the series cannot be chosen "
            "(series on one grid differ only in content). Add the image or the UID to the "
            "manifest.",
            case_id=case.case_id,
            reason="no-image",
        )
    array, affine = image
    matches: list[CTVolume] = []
    notes: list[str] = []
    for candidate in candidates:
        label = candidate.label()
        try:
            find_grid_mapping(affine, array.shape, header_geometry(candidate))
        except (GridMismatch, OmasIdcError) as err:
            notes.append(f"{label}: grid differs ({err})")
            continue
        volume = _read(candidate, case.case_id)
        agrees, detail = content_agrees(array, affine, volume, hu_tolerance)
        notes.append(f"{label}: {detail}")
        if agrees:
            matches.append(volume)
    if len(matches) == 1:
        return matches[0]
    listing = "\n  ".join(notes) or "(no CT series)"
    if not matches:
        raise ReleaseError(
            f"no series in {where} has the image's grid and content:\n  {listing}\n"
            "Fetch the series first (omas-idc fetch) or give its series_instance_uid.",
            case_id=case.case_id,
            reason="no-series",
        )
    uids = [v.series_instance_uid or "(empty)" for v in matches]
    raise ReleaseError(
        f"{len(matches)} series in {where} match the image's grid and content ({uids}): "
        "give the case's series_instance_uid in the manifest",
        case_id=case.case_id,
        reason="ambiguous-series",
    )


def _ct_series(series: list[SeriesFiles]) -> list[SeriesFiles]:
    return [s for s in series if s.kind == "ct"]


def find_case_series(
    case: ManifestCase,
    index: SeriesIndex,
    image: tuple[npt.NDArray[np.generic], npt.NDArray[np.float64]] | None = None,
    hu_tolerance: float = 0.0,
) -> SeriesMatch:
    """The DICOM series of ``case`` by the rules of the module docstring.

    Parameters
    ----------
    case
        The manifest row.
    index
        The ``--dicom`` folder's series (may have no root).
    image
        The case's image NIfTI (array, LPS affine), for content matching and verification.
    hu_tolerance
        Largest HU difference between image and series counted as equal.

    Raises
    ------
    ReleaseError
        ``no-series``, ``ambiguous-series``, ``no-image``, ``content-mismatch``, or the read
        stage's reason where the series cannot be read.
    """
    uid = case.series_instance_uid
    if case.series_dir is not None:
        if not case.series_dir.is_dir():
            raise ReleaseError(
                f"series_dir {case.series_dir} is not a folder",
                case_id=case.case_id,
                reason="no-series",
            )
        local = _ct_series(list_series(case.series_dir))
        where = str(case.series_dir)
    else:
        local = []
        where = str(index.root) if index.root is not None else "(no --dicom folder)"
    if uid is not None:
        found = next((s for s in local if s.series_instance_uid == uid), None)
        if found is None and case.series_dir is None:
            found = index.find(uid)
        if found is None:
            raise ReleaseError(
                f"series {uid} is not in {where}; fetch it first (omas-idc fetch --uid {uid}) "
                "or correct the manifest",
                case_id=case.case_id,
                series_instance_uid=uid,
                reason="no-series",
            )
        match = SeriesMatch(_read(found, case.case_id), "uid")
    elif case.series_dir is not None and len(local) == 1:
        match = SeriesMatch(_read(local[0], case.case_id), "series-dir")
    else:
        candidates = local if case.series_dir is not None else _ct_series(index.series())
        if not candidates:
            raise ReleaseError(
                f"no CT series in {where}: give series_dir or series_instance_uid in the "
                "manifest, or --dicom with the downloaded series",
                case_id=case.case_id,
                reason="no-series",
            )
        return SeriesMatch(_by_content(case, candidates, image, hu_tolerance, where), "content")
    if image is not None:
        agrees, detail = content_agrees(image[0], image[1], match.volume, hu_tolerance)
        if not agrees:
            raise ReleaseError(
                f"the image NIfTI {case.image} is not series "
                f"{match.volume.series_instance_uid or '(empty UID)'}: {detail}. Check the "
                "manifest's series for this case.",
                case_id=case.case_id,
                series_instance_uid=match.volume.series_instance_uid or None,
                reason="content-mismatch",
            )
    return match


def labels_on_grid(
    array: npt.NDArray[np.generic],
    affine: npt.NDArray[np.float64],
    geometry: VolumeGeometry,
    case_id: str,
    series_instance_uid: str = "",
) -> npt.NDArray[np.generic]:
    """The label map on the series' grid, voxel for voxel, or a ``grid-<reason>`` refusal."""
    try:
        return map_onto_grid(array, affine, geometry)
    except GridMismatch as err:
        raise ReleaseError(
            f"the label map does not lie on the DICOM grid ({err}); it would have to be "
            "resampled, which changes labels, so it is refused. Re-export the labels on the "
            "series' grid (any axis order, flips or crop are fine).",
            case_id=case_id,
            series_instance_uid=series_instance_uid or None,
            reason=f"grid-{err.reason}",
        ) from err


def annotated_region(
    shape_zyx: tuple[int, ...], affine: npt.NDArray[np.float64], geometry: VolumeGeometry
) -> tuple[slice, slice, slice]:
    """The box of the series' grid (z, y, x slices) that a label map's own grid covers.

    A label map cropped to part of the series covers less than the whole grid; voxels
    outside the box were never annotated (they are 0 on the grid only because nothing was
    there to read). A label map padded beyond the series covers it all.

    Parameters
    ----------
    shape_zyx
        The label map's shape, in the (z, y, x) order of :func:`read_label_nifti`.
    affine
        Its LPS affine.
    geometry
        The series' grid.

    Raises
    ------
    omas_idc.gridmatch.GridMismatch
        Where the grids do not correspond (call :func:`labels_on_grid` first: it refuses
        such label maps with a named reason).
    """
    mapping = find_grid_mapping(affine, shape_zyx, geometry)
    source_xyz = (shape_zyx[2], shape_zyx[1], shape_zyx[0])
    target_xyz = (geometry.shape[2], geometry.shape[1], geometry.shape[0])
    box = []
    for axis in range(3):
        size = source_xyz[mapping.permutation[axis]]
        offset = mapping.offset[axis]
        low = offset - (size - 1) if mapping.signs[axis] < 0 else offset
        start = min(max(low, 0), target_xyz[axis])
        stop = max(min(low + size, target_xyz[axis]), start)
        box.append(slice(start, stop))
    return (box[2], box[1], box[0])

"""The error of the release-labels stage: one case refused, with a named reason."""

from __future__ import annotations

from omas_idc.errors import OmasIdcError

__all__ = ["REASONS", "ReleaseError"]

#: The reason codes a refused case can carry (recorded in the outcome table), and what they mean.
REASONS: dict[str, str] = {
    "unknown-dataset": "the manifest names a dataset that datasets.toml does not describe",
    "unknown-structure": "the dataset's label table names a structure the catalog lacks",
    "bad-label-table": "the dataset's label table is malformed (labels, columns, duplicates)",
    "unknown-label": "the label map holds a value that the dataset's label table does not list",
    "not-annotated-label": "the label map holds a structure the case is declared not to annotate",
    "bad-labels": "the label NIfTI cannot be read, is not 3-D or holds non-integer values",
    "bad-image": "the image NIfTI cannot be read or is not 3-D",
    "no-series": "no DICOM series matches the case (UID not found, no content match)",
    "ambiguous-series": "several DICOM series match the case's content and grid",
    "no-image": "no UID and several candidate series: an image NIfTI is needed to choose",
    "content-mismatch": "the image NIfTI differs from the chosen DICOM series' HU",
    "grid-rotation": "the label grid's axes are not parallel to the DICOM grid's",
    "grid-spacing": "the label grid's voxel sizes differ from the DICOM grid's",
    "grid-offset": "the label grid is shifted by a fraction of a voxel",
    "grid-outside": "labelled voxels fall outside the DICOM grid",
    "grid-dimensions": "the label map is not a 3-D array",
    "unexpected": "an unexpected error (a bug in omas-idc: please report the message)",
}


class ReleaseError(OmasIdcError):
    """A case of an annotation release cannot be released.

    Parameters
    ----------
    message
        What went wrong, why, and how to fix it.
    case_id
        The manifest case concerned.
    series_instance_uid
        The DICOM series concerned, where one was found.
    reason
        One of :data:`REASONS` (recorded in the outcome table).
    """

    default_reason = "release"

    def __init__(
        self,
        message: str,
        *,
        case_id: str | None = None,
        series_instance_uid: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.case_id = case_id
        super().__init__(message, series_instance_uid=series_instance_uid, reason=reason)

    def __str__(self) -> str:
        where = f"case {self.case_id}: " if self.case_id else ""
        return f"{where}{super().__str__()}"

"""The omas-idc error hierarchy.

Every error names the series it concerns (where there is one), says what went wrong, why,
and how to fix it. Stages raise the most specific class; the one place in the run that
isolates a failing series records ``type(err).__name__`` as the error class.
"""

from __future__ import annotations

__all__ = [
    "CatalogError",
    "ConfigurationError",
    "EncodingError",
    "FetchError",
    "InferenceError",
    "ModelError",
    "OmasIdcError",
    "PublishError",
    "QAError",
    "SelectionError",
    "SeriesGeometryError",
    "TrainingError",
    "UnsupportedSeriesError",
]


class OmasIdcError(Exception):
    """Base class of all errors raised by omas-idc.

    Parameters
    ----------
    message
        What went wrong, why, and how to fix it.
    series_instance_uid
        The series concerned, or ``None`` where the error is not about one series.
    reason
        A short machine-readable reason code (for example ``"gap"`` or ``"tilt"``), recorded
        in the run state and the release table.
    """

    default_reason: str = "error"

    def __init__(
        self,
        message: str,
        *,
        series_instance_uid: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.message = message
        self.series_instance_uid = series_instance_uid
        self.reason = reason or self.default_reason
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"series {self.series_instance_uid}: " if self.series_instance_uid else ""
        return f"{where}{self.message}"

    @property
    def error_class(self) -> str:
        """The name recorded for this error in the run state (``'SeriesGeometryError'`` ...)."""
        return type(self).__name__


class ConfigurationError(OmasIdcError):
    """An option, configuration file or model card is invalid."""

    default_reason = "configuration"


class SelectionError(OmasIdcError):
    """Series could not be selected from the IDC index or BigQuery."""

    default_reason = "selection"


class FetchError(OmasIdcError):
    """A series could not be downloaded or did not verify."""

    default_reason = "fetch"


class SeriesGeometryError(OmasIdcError):
    """A series' geometry is not a regular volume (gap, tilt, mixed orientation, ...).

    ``reason`` names the problem: one of ``"gap"``, ``"tilt"``, ``"mixed-orientation"``,
    ``"duplicate-position"``, ``"nonuniform-spacing"``, ``"mixed-size"``,
    ``"mixed-pixel-spacing"``, ``"too-few-slices"``, ``"missing-geometry"``,
    ``"invalid-spacing"`` (zero, negative or not finite), ``"non-finite-position"``,
    ``"invalid-orientation"`` (not finite, not unit length or not orthogonal).
    """

    default_reason = "geometry"


class UnsupportedSeriesError(OmasIdcError):
    """The series is not a CT volume omas-idc can read (not CT, not an image, undecodable).

    ``reason`` names the problem, e.g. ``"not-ct-volume"``, ``"undecodable"``, ``"no-images"``,
    ``"several-series"``, ``"series-not-found"``, and for damaged files (each named in the
    message) ``"truncated-file"``, ``"unreadable-file"``, ``"damaged-header"``,
    ``"inconsistent-bits"`` (BitsAllocated/BitsStored/HighBit/PixelRepresentation against the
    pixel data), ``"zero-slope"``, ``"invalid-rescale"``.
    """

    default_reason = "unsupported"


class ModelError(OmasIdcError):
    """A model folder, card, checkpoint or weight download is invalid."""

    default_reason = "model"


class InferenceError(OmasIdcError):
    """Segmentation of a series failed (for example it does not fit in the memory budget)."""

    default_reason = "inference"


class EncodingError(OmasIdcError):
    """A DICOM SEG or SR could not be written for a series."""

    default_reason = "encoding"


class QAError(OmasIdcError):
    """Quality-control measurements could not be computed."""

    default_reason = "qa"


class PublishError(OmasIdcError):
    """Outputs could not be put into the output location."""

    default_reason = "publish"


class CatalogError(OmasIdcError):
    """The structure catalog is invalid or a model label is not mapped."""

    default_reason = "catalog"


class TrainingError(OmasIdcError):
    """Training could not start or continue."""

    default_reason = "training"

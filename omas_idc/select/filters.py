"""What to select: ``SelectionFilters`` (compiled to SQL by each source) and ``Shard``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from omas_idc.errors import SelectionError

__all__ = [
    "CT_SOP_CLASSES",
    "MULTIFRAME_CT_SOP_CLASSES",
    "SelectionFilters",
    "Shard",
    "sql_in",
    "sql_string",
]

#: CT Image Storage (single-frame: one file per slice).
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
#: Enhanced CT Image Storage and Legacy Converted Enhanced CT Image Storage (multi-frame).
MULTIFRAME_CT_SOP_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.2.1",
    "1.2.840.10008.5.1.4.1.1.2.2",
)
#: The SOP classes of CT image volumes; other objects with Modality CT (Raw Data, Secondary
#: Capture screenshots) are never selected.
CT_SOP_CLASSES: tuple[str, ...] = (CT_IMAGE_STORAGE, *MULTIFRAME_CT_SOP_CLASSES)


def sql_string(value: str) -> str:
    """``value`` as a single-quoted SQL string literal (quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def sql_in(column: str, values: Sequence[str]) -> str:
    """``column IN ('a', 'b')`` for a non-empty ``values``."""
    return f"{column} IN ({', '.join(sql_string(v) for v in values)})"


def _as_tuple(value: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class SelectionFilters:
    """Which series of the IDC index to select. Empty tuples mean "no filter".

    Every filter is applied per series; values are compared case-insensitively for
    ``collections``, ``modality``, ``body_parts`` and ``licenses``.

    Attributes
    ----------
    collections
        IDC ``collection_id`` values (``"nlst"``).
    modality
        DICOM Modality; for ``"CT"`` only CT image SOP classes (:data:`CT_SOP_CLASSES`) count.
    min_slices
        Least number of slices. Applied to single-frame series through ``instanceCount``
        (one file per slice). Multi-frame CT (Enhanced and Legacy Converted Enhanced CT) holds
        all slices in one or a few files, so the index cannot tell its slice count: such
        series are kept by this filter and the read stage checks their frame count.
    body_parts
        ``BodyPartExamined`` values (``"CHEST"``); series without one are dropped when set.
    licenses
        ``license_short_name`` values (``"CC BY 4.0"``).
    series_uids
        Explicit SeriesInstanceUIDs; the other filters still apply.
    original_only
        Drop series that belong to an analysis result (``analysis_result_id`` set), keeping
        the original acquisitions only.
    """

    collections: tuple[str, ...] = ()
    modality: str | None = "CT"
    min_slices: int | None = None
    body_parts: tuple[str, ...] = ()
    licenses: tuple[str, ...] = ()
    series_uids: tuple[str, ...] = ()
    original_only: bool = True

    def __post_init__(self) -> None:
        for name in ("collections", "body_parts", "licenses", "series_uids"):
            object.__setattr__(self, name, _as_tuple(getattr(self, name)))
        if self.min_slices is not None and self.min_slices < 1:
            raise SelectionError(
                f"min_slices must be at least 1, got {self.min_slices}; leave it unset to keep "
                "series of any length"
            )

    def describe(self) -> dict[str, str]:
        """The filters as text, for the selection's provenance."""
        return {
            "collections": ",".join(self.collections),
            "modality": self.modality or "",
            "min_slices": "" if self.min_slices is None else str(self.min_slices),
            "body_parts": ",".join(self.body_parts),
            "licenses": ",".join(self.licenses),
            "series_uids": str(len(self.series_uids)),
            "original_only": str(self.original_only),
        }

    def where_clauses(
        self,
        *,
        instance_count: str = "instanceCount",
        sop_class: str = "SOPClassUID",
    ) -> list[str]:
        """The filters as SQL conditions over IDC index column names (ANSI SQL).

        Parameters
        ----------
        instance_count
            The expression counting a series' instances (a column in the index, an
            aggregate in BigQuery's ``dicom_all``).
        sop_class
            The SOP Class UID expression.
        """
        clauses: list[str] = []
        if self.collections:
            clauses.append(sql_in("LOWER(collection_id)", [c.lower() for c in self.collections]))
        if self.modality:
            clauses.append(f"UPPER(Modality) = {sql_string(self.modality.upper())}")
            if self.modality.upper() == "CT":
                clauses.append(sql_in(sop_class, CT_SOP_CLASSES))
        if self.min_slices is not None:
            clauses.append(
                f"({instance_count} >= {int(self.min_slices)} OR "
                f"{sql_in(sop_class, MULTIFRAME_CT_SOP_CLASSES)})"
            )
        if self.body_parts:
            clauses.append(sql_in("UPPER(BodyPartExamined)", [b.upper() for b in self.body_parts]))
        if self.licenses:
            clauses.append(sql_in("LOWER(license_short_name)", [x.lower() for x in self.licenses]))
        if self.series_uids:
            clauses.append(sql_in("SeriesInstanceUID", self.series_uids))
        if self.original_only:
            clauses.append("analysis_result_id IS NULL")
        return clauses


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: every ``count``-th series of the sorted selection.

    The selection is sorted by SeriesInstanceUID and shard ``i`` takes positions
    ``i, i + n, i + 2n, ...``. Shards are therefore disjoint, cover the selection, differ in
    size by at most one series, and are the same on every machine that runs the same
    selection against the same IDC version.
    """

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise SelectionError(
                f"shard {self.index}/{self.count} does not exist: use i/n with 0 <= i < n "
                "(for example 0/4 ... 3/4)"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Parse ``"i/n"`` (``"3/10"``)."""
        index, sep, count = text.partition("/")
        try:
            if not sep:
                raise ValueError(text)
            return cls(int(index), int(count))
        except ValueError as err:
            raise SelectionError(f"shard {text!r} is not of the form i/n, for example 0/4") from err

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def take(self, uids_sorted: Sequence[str]) -> list[str]:
        """This shard's members of an already sorted UID list."""
        return list(uids_sorted[self.index :: self.count])

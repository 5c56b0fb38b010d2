"""What to select: ``SelectionFilters`` (compiled to SQL by each source) and ``Shard``.

The filter values come from the user (the command line, a configuration file) and are never
written into the SQL text: each becomes a named query parameter (:class:`SqlParameters`), sent
beside the text. Quoting cannot replace that: BigQuery reads a backslash in a string literal as
an escape, so a quoted ``\\') OR TRUE --`` would end the literal and rewrite the query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from omas_idc.errors import SelectionError

__all__ = [
    "CT_SOP_CLASSES",
    "MULTIFRAME_CT_SOP_CLASSES",
    "SelectionFilters",
    "Shard",
    "SqlParameters",
    "SqlQuery",
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
    """``value`` as a single-quoted SQL string literal (quotes doubled).

    For the program's own constants and local file paths in duckdb only; a value from the
    user is a parameter (:class:`SqlParameters`).
    """
    return "'" + value.replace("'", "''") + "'"


def sql_in(column: str, values: Sequence[str]) -> str:
    """``column IN ('a', 'b')`` for a non-empty ``values`` (the program's constants only)."""
    return f"{column} IN ({', '.join(sql_string(v) for v in values)})"


@dataclass(frozen=True)
class SqlQuery:
    """A query's text and the values of its named parameters, sent separately.

    Attributes
    ----------
    text
        The SQL, naming each value by its parameter (``@collections`` in BigQuery,
        ``$collections`` in duckdb).
    parameters
        Parameter name -> a string or a list of strings.
    """

    text: str
    parameters: Mapping[str, str | list[str]] = field(default_factory=dict)


class SqlParameters:
    """Collects the named parameters of one query in one dialect.

    Parameters
    ----------
    dialect
        ``"bigquery"`` (``@name``, arrays through ``IN UNNEST(@name)``) or ``"duckdb"``
        (``$name``, arrays through ``list_contains($name, ...)``).
    """

    def __init__(self, dialect: str) -> None:
        if dialect not in ("bigquery", "duckdb"):
            raise ValueError(f"dialect must be 'bigquery' or 'duckdb', got {dialect!r}")
        self.dialect = dialect
        self.values: dict[str, str | list[str]] = {}

    def _name(self, name: str, value: str | list[str]) -> str:
        if name in self.values:
            raise ValueError(f"query parameter {name!r} is given twice")
        self.values[name] = value
        return ("@" if self.dialect == "bigquery" else "$") + name

    def equals(self, expression: str, name: str, value: str) -> str:
        """``expression = <parameter name>``, with ``value`` as the parameter."""
        return f"{expression} = {self._name(name, value)}"

    def one_of(self, expression: str, name: str, values: Sequence[str]) -> str:
        """``expression`` is one of ``values`` (an array parameter)."""
        parameter = self._name(name, [str(v) for v in values])
        if self.dialect == "bigquery":
            return f"{expression} IN UNNEST({parameter})"
        return f"list_contains({parameter}, {expression})"

    def query(self, text: str) -> SqlQuery:
        """``text`` with the parameters collected so far."""
        return SqlQuery(text, dict(self.values))


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
        parameters: SqlParameters,
        *,
        instance_count: str = "instanceCount",
        sop_class: str = "SOPClassUID",
    ) -> list[str]:
        """The filters as SQL conditions over IDC index column names.

        Every value of the filters becomes a parameter in ``parameters``; the conditions hold
        only column names, parameter names and the program's constants.

        Parameters
        ----------
        parameters
            Collects the values (and fixes the dialect).
        instance_count
            The expression counting a series' instances (a column in the index, an
            aggregate in BigQuery's ``dicom_all``).
        sop_class
            The SOP Class UID expression.
        """
        p = parameters
        clauses: list[str] = []
        if self.collections:
            lowered = [c.lower() for c in self.collections]
            clauses.append(p.one_of("LOWER(collection_id)", "collections", lowered))
        if self.modality:
            clauses.append(p.equals("UPPER(Modality)", "modality", self.modality.upper()))
            if self.modality.upper() == "CT":
                clauses.append(sql_in(sop_class, CT_SOP_CLASSES))
        if self.min_slices is not None:
            clauses.append(
                f"({instance_count} >= {int(self.min_slices)} OR "
                f"{sql_in(sop_class, MULTIFRAME_CT_SOP_CLASSES)})"
            )
        if self.body_parts:
            upper = [b.upper() for b in self.body_parts]
            clauses.append(p.one_of("UPPER(BodyPartExamined)", "body_parts", upper))
        if self.licenses:
            lowered = [x.lower() for x in self.licenses]
            clauses.append(p.one_of("LOWER(license_short_name)", "licenses", lowered))
        if self.series_uids:
            clauses.append(p.one_of("SeriesInstanceUID", "series_uids", self.series_uids))
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

"""What the release and annotations tables share: column types, code columns, atomic writes.

Both tables are flat parquet files that BigQuery loads as they are: their columns are declared
as ``(name, kind)`` pairs (kinds: ``string``, ``int32``, ``int64``, ``float64``, ``bool``,
``list<string>``), no cell may exceed :data:`MAX_CELL_BYTES` (BigQuery's limit on a row is far
higher, but a cell that large means a bug), and a table is written under a temporary name and
renamed, so that a reader never sees half a file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omas_idc.atomic import atomic_write_with
from omas_idc.catalog.model import Code, Structure
from omas_idc.errors import OmasIdcError

__all__ = [
    "MAX_CELL_BYTES",
    "STRUCTURE_CODE_FIELDS",
    "arrow_schema",
    "structure_code_columns",
    "write_rows",
]

MAX_CELL_BYTES = 1_000_000

_CODED = ("category", "type", "type_modifier", "region", "region_modifier")

#: A structure's coded attributes, each spread over ``_code``, ``_scheme`` and ``_meaning``.
STRUCTURE_CODE_FIELDS: tuple[tuple[str, str], ...] = tuple(
    (f"{field}_{part}", "string") for field in _CODED for part in ("code", "scheme", "meaning")
)


def structure_code_columns(structure: Structure) -> dict[str, str | None]:
    """The :data:`STRUCTURE_CODE_FIELDS` of ``structure`` (None where it has no such code)."""
    columns: dict[str, str | None] = {}
    for field in _CODED:
        code: Code | None = getattr(structure, field)
        columns[f"{field}_code"] = code.value if code else None
        columns[f"{field}_scheme"] = code.scheme if code else None
        columns[f"{field}_meaning"] = code.meaning if code else None
    return columns


def arrow_schema(fields: Sequence[tuple[str, str]]) -> Any:
    """The ``pyarrow.Schema`` of ``(name, kind)`` columns (pyarrow is imported on use)."""
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "list<string>": pa.list_(pa.string()),
    }
    return pa.schema([pa.field(name, types[kind]) for name, kind in fields])


def _cell_bytes(value: object) -> int:
    if isinstance(value, list):
        return sum(len(str(v).encode()) for v in value)
    return len(str(value).encode())


def write_rows(
    rows: Sequence[Mapping[str, Any]],
    fields: Sequence[tuple[str, str]],
    path: str | Path,
    *,
    table: str,
    error: type[OmasIdcError],
) -> Path:
    """Write ``rows`` as a zstd parquet file of ``fields``, atomically (temporary name, rename).

    ``table`` names the table in messages; ``error`` is the class raised (the stage's own).

    Raises
    ------
    OmasIdcError
        (of class ``error``) If a cell is larger than :data:`MAX_CELL_BYTES`
        (reason ``cell-too-large``) or a value does not fit its column (reason ``schema``).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    for row in rows:
        for key, value in row.items():
            size = _cell_bytes(value)
            if size > MAX_CELL_BYTES:
                raise error(
                    f"{table} cell {key} holds {size} bytes (> {MAX_CELL_BYTES}); a cell that "
                    "large cannot be loaded into BigQuery comfortably",
                    series_instance_uid=str(row.get("source_series_instance_uid") or "") or None,
                    reason="cell-too-large",
                )
    try:
        arrow_table = pa.Table.from_pylist([dict(r) for r in rows], schema=arrow_schema(fields))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise error(f"{table} rows do not fit the schema: {err}", reason="schema") from err
    return atomic_write_with(
        path, lambda temporary: pq.write_table(arrow_table, temporary, compression="zstd")
    )

"""``--format table|json|tsv`` of the listing commands (``catalog list``, ``models list``,
``status``): the rich table for people, JSON and TSV for scripts.

A rich table folds or cuts long cells to the terminal's width (structure names, UIDs, paths in
an 80-column terminal or a pipe); JSON and TSV never do, and carry no colour and no markup:

- ``json``: one JSON array of objects, every object with the same keys (a value that does not
  apply is ``null``), indented, UTF-8.
- ``tsv``: a header row with the same keys, then one row per item, tab-separated. An empty cell
  is a ``null``; a list is its items joined by ``,``, an object its values joined by ``/``
  (a model label ``cads/551/3/kidney_left``); booleans are ``true``/``false``. A tab,
  newline, carriage return or backslash inside a value is written ``\\t``, ``\\n``, ``\\r``,
  ``\\\\`` (PostgreSQL's text format), so each item stays one line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import typer

from omas_idc.choices import StrEnum
from omas_idc.errors import ConfigurationError

__all__ = ["ListFormat", "format_option", "render_rows", "tsv_cell"]


class ListFormat(StrEnum):
    """How a listing command prints its items."""

    TABLE = "table"
    JSON = "json"
    TSV = "tsv"


def _parse_format(value: str) -> ListFormat:
    try:
        return ListFormat.parse(value, "format")
    except ConfigurationError as err:
        raise typer.BadParameter(str(err)) from err


def format_option() -> Any:
    """The ``--format`` option: ``table`` (default), ``json`` or ``tsv``, checked with a
    "did you mean" suggestion (a usage error, exit 2)."""
    return typer.Option(
        ListFormat.TABLE.value,
        "--format",
        callback=_parse_format,
        help="table (for people), json or tsv (for scripts: full values, no colour, no "
        "truncation).",
    )


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def tsv_cell(value: object) -> str:
    """One TSV cell: ``None`` empty, booleans ``true``/``false``, lists joined by ``,``,
    objects' values by ``/``; tabs, newlines and backslashes escaped (see the module's
    docstring)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(tsv_cell(item) for item in value)
    if isinstance(value, Mapping):
        return "/".join(tsv_cell(item) for item in value.values())
    return str(value).translate(_ESCAPES)


def render_rows(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], output_format: ListFormat
) -> str:
    """``rows`` as the text of a JSON array or a TSV table (with a final newline).

    Parameters
    ----------
    rows
        The items; each has (at least) the keys ``columns``.
    columns
        The keys, in order: the JSON objects' keys and the TSV header.
    output_format
        ``json`` or ``tsv`` (a table is drawn by the command itself).

    Raises
    ------
    ValueError
        For ``table``, which this function does not draw.
    """
    if output_format is ListFormat.JSON:
        items = [{key: row[key] for key in columns} for row in rows]
        return json.dumps(items, indent=2, ensure_ascii=False) + "\n"
    if output_format is ListFormat.TSV:
        lines = ["\t".join(columns)]
        lines += ["\t".join(tsv_cell(row[key]) for key in columns) for row in rows]
        return "\n".join(lines) + "\n"
    raise ValueError(f"render_rows draws json or tsv, not {output_format}")

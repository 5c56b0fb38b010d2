"""The publish stage: release table (parquet) and preview PNGs of each series' QA."""

from __future__ import annotations

from omas_idc.publish.preview import to_lps_axes, write_previews
from omas_idc.publish.release_table import (
    MAX_CELL_BYTES,
    release_rows,
    release_schema,
    write_release_table,
)

__all__ = [
    "MAX_CELL_BYTES",
    "release_rows",
    "release_schema",
    "to_lps_axes",
    "write_previews",
    "write_release_table",
]

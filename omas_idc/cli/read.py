"""``omas-idc read``: read a DICOM CT series and summarise it."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``read`` command to ``app``."""

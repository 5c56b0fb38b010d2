"""``omas-idc catalog``: list and validate the structure catalog."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``catalog`` commands to ``app``."""

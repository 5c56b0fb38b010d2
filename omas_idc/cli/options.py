"""Option values the commands share, checked the same way everywhere.

The heavy packages behind a choice (highdicom behind the SEG layouts) are imported when a value
is checked, not when the command line is built, so that ``omas-idc --help`` stays fast.
"""

from __future__ import annotations

from datetime import datetime

import typer

__all__ = ["checked_layout", "checked_timestamp", "model_family_name"]


def checked_layout(value: str) -> str:
    """``value`` if it names a SEG layout; otherwise typer's usage error with a suggestion."""
    from omas_idc.choices import suggestion
    from omas_idc.encode import LAYOUTS

    if value not in LAYOUTS:
        raise typer.BadParameter(f"must be one of {list(LAYOUTS)}.{suggestion(value, LAYOUTS)}")
    return value


def checked_timestamp(value: str | None) -> datetime:
    """The content time of the outputs: ``value`` (ISO 8601) or now."""
    try:
        return datetime.fromisoformat(value) if value else datetime.now()
    except ValueError as err:
        raise typer.BadParameter(f"--timestamp {value!r} is not ISO 8601") from err


def model_family_name(value: str) -> str:
    """The model family name the catalog's label rows use for ``value``: a built-in card's
    alias (``demo``) becomes its card's name (``omas-demo``); any other value is kept."""
    from omas_idc.engine.card import builtin_card

    card = builtin_card(value)
    return value if card is None else card.name

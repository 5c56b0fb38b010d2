"""Where model families' files lie: the built-in cards and each card's label table.

A model family is data: a card (JSON: tasks, recipe, weights), its label table (CSV, see
:mod:`omas_idc.catalog.tables`) named by the card's ``labels`` field and lying beside it, and
the recipe the card names. The built-in families are the cards in ``omas_idc/engine/cards/``
(weights downloaded into the cache) and the packaged models ``omas_idc/models/<name>/card.json``
(result folders beside the card); a user's family is a card file or a folder holding
``card.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from omas_idc.errors import CatalogError, ConfigurationError

__all__ = [
    "CARD_FILE",
    "builtin_label_tables",
    "downloadable_card_files",
    "label_table_path",
    "packaged_card_files",
    "plain_name",
]

_PACKAGE = Path(__file__).resolve().parents[1]
#: The card's file name in a family folder.
CARD_FILE = "card.json"


def downloadable_card_files() -> tuple[Path, ...]:
    """The built-in cards whose weights are downloaded into the cache (``engine/cards``)."""
    return tuple(sorted((_PACKAGE / "engine" / "cards").glob("*.json")))


def packaged_card_files() -> tuple[Path, ...]:
    """The packaged models' cards (``models/<name>/card.json``), result folders beside them."""
    return tuple(sorted((_PACKAGE / "models").glob(f"*/{CARD_FILE}")))


def plain_name(value: object, what: str) -> str:
    """``value`` if it is a plain file or folder name: no separator, no ``..``, not absolute.

    A card names folders and files relative to itself or to the weights cache; a name that
    climbs out of that folder (``../x``, ``/etc``, ``C:\\x``) is refused rather than followed.

    Raises
    ------
    ConfigurationError
        If ``value`` is empty, not a string, or a path rather than a name.
    """
    text = value if isinstance(value, str) else ""
    if (
        not text
        or text in (".", "..")
        or "/" in text
        or "\\" in text
        or PurePosixPath(text).is_absolute()
        or PureWindowsPath(text).is_absolute()
        or PureWindowsPath(text).drive
    ):
        raise ConfigurationError(
            f"{what} must be a plain name (no '/', '\\', '..' or absolute path), got "
            f"{value!r}; name a file or folder that lies beside the model card"
        )
    return text


def label_table_path(card_file: Path, data: Mapping[str, Any]) -> Path | None:
    """The label table a card names (its ``labels`` field), beside the card; ``None`` if none.

    Raises
    ------
    ConfigurationError
        If the field is not a plain file name.
    CatalogError
        If the file does not exist.
    """
    if data.get("labels") is None:
        return None
    name = plain_name(data["labels"], f"model card {card_file}: 'labels'")
    path = card_file.parent / name
    if not path.is_file():
        raise CatalogError(
            f"model card {card_file} names the label table {name!r}, but {path} does not exist"
        )
    return path


def builtin_label_tables() -> tuple[Path, ...]:
    """The label tables of the built-in families, in card order.

    Raises
    ------
    CatalogError
        If a built-in card is not valid JSON or its label table is missing.
    """
    tables = []
    for card_file in (*downloadable_card_files(), *packaged_card_files()):
        try:
            data = json.loads(card_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise CatalogError(f"built-in model card {card_file} is unreadable: {err}") from err
        path = label_table_path(card_file, data)
        if path is not None:
            tables.append(path)
    return tuple(tables)

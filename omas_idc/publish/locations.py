"""The store for an output location given on the command line or in a configuration."""

from __future__ import annotations

from pathlib import Path

from omas_idc.errors import ConfigurationError
from omas_idc.publish.folder_store import FolderStore
from omas_idc.publish.object_store import ObjectStore
from omas_idc.publish.store import OutputStore

__all__ = ["open_store"]


def open_store(root: str | Path, endpoint_url: str | None = None) -> OutputStore:
    """The store for an output location: a bucket URL (``s3://``, ``gs://``) or a folder.

    Raises
    ------
    ConfigurationError
        For any other URL scheme.
    """
    text = str(root)
    if text.startswith(("s3://", "gs://")):
        return ObjectStore(text, endpoint_url=endpoint_url)
    if "://" in text:
        raise ConfigurationError(
            f"unsupported output location {text!r}: use a folder, s3://... or gs://...",
            reason="output-url",
        )
    return FolderStore(str(Path(text).resolve()))

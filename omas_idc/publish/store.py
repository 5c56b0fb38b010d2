"""The output stores: one interface for every target a run publishes to.

A run hands each finished series to a store as DICOM objects (SEG, SR) and side files (the
series' release rows, previews), then a small ``DONE.json`` marker, last; a series counts as
finished only where its marker exists, and a run on a fresh machine (a pre-empted Cloud Batch
task) rebuilds its state from the markers (:meth:`OutputStore.done_series`). The interface
speaks of series and names, never of paths, so a target without files (a DICOMweb server, a
Healthcare DICOM store) fits it as well as a folder or a bucket.

Implementations: :class:`~omas_idc.publish.folder_store.FolderStore` (local disk or a gcsfuse
mount) and :class:`~omas_idc.publish.object_store.ObjectStore` (``s3://``, ``gs://``);
:func:`omas_idc.publish.locations.open_store` picks one for an output location.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from omas_idc.choices import StrEnum
from omas_idc.errors import PublishError
from omas_idc.series_ref import SeriesRef

__all__ = [
    "DONE_MARKER",
    "OutputKind",
    "OutputStore",
    "PublishError",
    "SeriesOutput",
    "marker_bytes",
    "publish_series",
]

DONE_MARKER = "DONE.json"


class OutputKind(StrEnum):
    """What an output of a series is to a store."""

    #: A DICOM object for the archive (SEG, SR): a DICOM store keeps these.
    DICOM = "dicom"
    #: Anything else (release rows, previews): kept beside the objects.
    SIDE = "side"


@dataclass(frozen=True)
class SeriesOutput:
    """One finished output of a series: its name in the series' folder, the local file, kind."""

    name: str
    path: Path
    kind: OutputKind


class OutputStore(Protocol):
    """What the run needs from an output location."""

    @property
    def root(self) -> str:
        """The folder, bucket URL or service URL."""
        ...

    def put_object(self, ref: SeriesRef, output: SeriesOutput) -> str:
        """Store one DICOM object of a series; return where it went."""
        ...

    def put_side_file(self, ref: SeriesRef | None, name: str, source: Path) -> str:
        """Store a side file of a series (``ref``) or of the release (``ref`` ``None``, e.g.
        ``release/shard-0-of-1.parquet``); return where it went."""
        ...

    def get_side_file(self, ref: SeriesRef | None, name: str, target: Path) -> Path:
        """Copy a side file out of the store to the local ``target``."""
        ...

    def mark_done(self, ref: SeriesRef, marker: Mapping[str, Any]) -> str:
        """Write the series' marker: the last thing put for a series."""
        ...

    def done_series(self) -> dict[str, list[str]]:
        """SeriesInstanceUID -> output locations of every series with a marker."""
        ...


def marker_bytes(marker: Mapping[str, Any]) -> bytes:
    """The bytes of a ``DONE.json`` marker (sorted keys, so reruns write the same file)."""
    return (json.dumps(dict(marker), sort_keys=True, indent=1) + "\n").encode()


def publish_series(
    store: OutputStore,
    ref: SeriesRef,
    outputs: Sequence[SeriesOutput],
    marker: Mapping[str, Any],
) -> list[str]:
    """Put every output of a series into ``store``, then its marker; return the locations.

    The marker lists the outputs' names. A failure leaves no marker, so the series is redone.
    """
    locations = []
    for output in sorted(outputs, key=lambda o: o.name):
        if output.kind is OutputKind.DICOM:
            locations.append(store.put_object(ref, output))
        else:
            locations.append(store.put_side_file(ref, output.name, output.path))
    store.mark_done(ref, {**marker, "outputs": sorted(o.name for o in outputs)})
    return locations

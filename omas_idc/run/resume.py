"""What a resumed run takes as finished: only outputs made with its own structure selection.

A run restricted to some structures (``--structures``) writes other outputs than a run of the
whole model or of other structures: its SEGs hold only those segments, under other UIDs. Its
selection is therefore recorded wherever a run later decides that a series is done:

- in the run state, per series (:meth:`~omas_idc.run.state.RunState.reopen_other_selections`
  makes a series finished with another selection pending again);
- in the series' ``DONE.json`` marker (``structures`` and ``tasks``, present only where the run
  was restricted), which a run on a fresh machine reads before it trusts the marker
  (:func:`markers_of_selection`).

The selection's written form is :func:`selection_key`: ``""`` for the whole model, so states
and markers written before selections were recorded still count as the whole model's.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from omas_idc.errors import OmasIdcError
from omas_idc.publish.store import DONE_MARKER, OutputStore
from omas_idc.series_ref import SeriesRef

__all__ = ["marker_selection", "markers_of_selection", "selection_fields", "selection_key"]

logger = logging.getLogger(__name__)

#: Markers read at once on a fresh machine (each one a small download from a bucket).
_READERS = 8


def selection_key(structures: Iterable[str] = (), tasks: Iterable[str] = ()) -> str:
    """The written form of a run's selection: ``""`` for the whole model.

    Order and repetition do not matter (``liver,heart`` is ``heart,liver``): the outputs are
    the same.
    """
    parts = []
    chosen = sorted(set(structures))
    if chosen:
        parts.append("structures=" + " ".join(chosen))
    only = sorted(set(tasks))
    if only:
        parts.append("tasks=" + " ".join(only))
    return "; ".join(parts)


def selection_fields(structures: Sequence[str], tasks: Sequence[str]) -> dict[str, list[str]]:
    """The ``DONE.json`` fields of a selection: none for the whole model (so that its markers
    stay as they were), else ``structures`` and/or ``tasks``, sorted."""
    fields = {}
    if structures:
        fields["structures"] = sorted(set(structures))
    if tasks:
        fields["tasks"] = sorted(set(tasks))
    return fields


def marker_selection(marker: Mapping[str, Any]) -> str:
    """The :func:`selection_key` of the run that wrote a ``DONE.json`` marker."""
    return selection_key(
        [str(s) for s in marker.get("structures") or ()],
        [str(t) for t in marker.get("tasks") or ()],
    )


def markers_of_selection(
    store: OutputStore,
    refs: Mapping[str, SeriesRef],
    done: Mapping[str, list[str]],
    selection: str,
) -> dict[str, list[str]]:
    """The series of ``done`` (``store.done_series()``) that are in ``refs`` and whose marker
    was written by a run of ``selection``.

    Each candidate's marker is read from the store (a fresh machine only: a series the local
    state knows as done is not passed here). A marker that cannot be read counts as not done:
    the series is redone rather than skipped on a guess.
    """
    wanted = {uid: outputs for uid, outputs in done.items() if uid in refs}
    if not wanted:
        return {}

    def read(uid: str) -> str | None:
        with tempfile.TemporaryDirectory() as folder:
            local = Path(folder) / DONE_MARKER
            try:
                store.get_side_file(refs[uid], DONE_MARKER, local)
                return marker_selection(json.loads(local.read_text(encoding="utf-8")))
            except (OmasIdcError, OSError, ValueError, TypeError, AttributeError) as err:
                logger.warning("series %s: its DONE marker cannot be read (%s): redone", uid, err)
                return None

    with ThreadPoolExecutor(max_workers=_READERS) as pool:
        found = dict(zip(wanted, pool.map(read, wanted), strict=True))
    other = [uid for uid, key in found.items() if key is not None and key != selection]
    if other:
        logger.info(
            "%d series have DONE markers of another structure selection: they are redone",
            len(other),
        )
    return {uid: wanted[uid] for uid, key in found.items() if key == selection}

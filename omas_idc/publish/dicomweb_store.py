"""Outputs in a DICOMweb service: SEG and SR stored by STOW-RS, side files in a folder.

A DICOM store keeps DICOM objects only: the SEGs and the SR of a series go to the service
(``dicomweb+https://host/dicom-web``), stored as the files the encoder wrote (no re-encoding;
a WADO-RS retrieval returns the same bytes), while the release rows, previews, reports and
the ``DONE.json`` markers go to a local folder (:class:`~omas_idc.publish.folder_store.
FolderStore`: the run's work folder or ``--side-out``).

Done-detection: :func:`omas_idc.publish.store.publish_series` stores the SEGs, then the SR
(``sr.dcm`` comes last by name), then the marker, which records the Study, Series and SOP
Instance UID of every object stored. A series counts as done only where its marker exists
**and** QIDO-RS finds every recorded instance in the service: a series whose objects were
removed from the service is redone. The objects' UIDs are derived from the source series, the
model and the versions (:mod:`omas_idc.encode.provenance`), so a redone or resumed series
stores the same instances again: a service keeps one copy of an SOP Instance UID, never a
duplicate.

The bearer token is passed explicitly (:class:`~omas_idc.fetch.dicomweb.DicomwebService`) and
appears in no message, log line or ``repr``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from requests import RequestException

from omas_idc.errors import PublishError
from omas_idc.fetch.dicomweb import DicomwebService, service_error
from omas_idc.publish.folder_store import FolderStore
from omas_idc.publish.store import DONE_MARKER, SeriesOutput
from omas_idc.series_ref import SeriesRef, check_uid

__all__ = ["DicomwebStore"]

logger = logging.getLogger(__name__)

#: The key of a marker that lists the series' instances in the service.
MARKER_KEY = "dicomweb_instances"


@dataclass
class DicomwebStore:
    """SEG and SR in a DICOMweb service; side files and markers in a folder.

    Attributes
    ----------
    service
        The DICOMweb service (URL and bearer token).
    side
        The folder for everything that is not a DICOM object.
    """

    service: DicomwebService
    side: FolderStore
    _stored: dict[str, dict[str, dict[str, str]]] = field(
        default_factory=dict, repr=False, compare=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def root(self) -> str:
        """The service's location (``dicomweb+https://...``)."""
        return self.service.location

    def check(self) -> None:
        """One QIDO-RS request before any work: is the service there and the token good?

        Raises
        ------
        ConfigurationError
            ``reason="unauthorized"``: the service refused the token.
        PublishError
            ``reason="unreachable"`` or ``"http-error"``.
        """
        self.service.check(error=PublishError)

    def _instance_url(self, study: str, series: str, sop: str) -> str:
        return f"{self.service.url}/studies/{study}/series/{series}/instances/{sop}"

    def put_object(self, ref: SeriesRef, output: SeriesOutput) -> str:
        """Store one DICOM object by STOW-RS, as the bytes of ``output.path``."""
        import pydicom

        uid = ref.series_instance_uid
        try:
            dataset = pydicom.dcmread(output.path)
        except (OSError, ValueError) as err:
            raise PublishError(
                f"{output.path} cannot be read to be stored: {err}",
                series_instance_uid=uid,
                reason="io",
            ) from err
        record = {
            "study": check_uid(str(dataset.StudyInstanceUID), f"StudyInstanceUID of {output.name}"),
            "series": check_uid(
                str(dataset.SeriesInstanceUID), f"SeriesInstanceUID of {output.name}"
            ),
            "sop": check_uid(str(dataset.SOPInstanceUID), f"SOPInstanceUID of {output.name}"),
            "modality": str(dataset.get("Modality", "")),
        }
        what = f"storing {output.name} (STOW-RS)"
        try:
            response = self.service.client().store_instances(
                [dataset], study_instance_uid=record["study"]
            )
        except RequestException as err:
            raise service_error(
                err, self.service, what, error=PublishError, series_instance_uid=uid
            ) from err
        failed = list(getattr(response, "FailedSOPSequence", []))
        stored = {
            str(item.get("ReferencedSOPInstanceUID", ""))
            for item in getattr(response, "ReferencedSOPSequence", [])
        }
        if failed or (stored and record["sop"] not in stored):
            reasons = [str(item.get("FailureReason", "?")) for item in failed]
            raise PublishError(
                f"the DICOMweb service {self.service.url} refused {output.name} (failure "
                f"reasons {reasons}, PS3.18 Table I.2-3). Check that the service accepts SOP "
                f"Class {dataset.SOPClassUID}, then run again.",
                series_instance_uid=uid,
                reason="stow-refused",
            )
        with self._lock:
            self._stored.setdefault(uid, {})[output.name] = record
        return self._instance_url(record["study"], record["series"], record["sop"])

    def put_side_file(self, ref: SeriesRef | None, name: str, source: Path) -> str:
        """Copy a side file into the side folder."""
        return self.side.put_side_file(ref, name, source)

    def get_side_file(self, ref: SeriesRef | None, name: str, target: Path) -> Path:
        """Copy a side file out of the side folder."""
        return self.side.get_side_file(ref, name, target)

    def mark_done(self, ref: SeriesRef, marker: Mapping[str, Any]) -> str:
        """Write the series' marker into the side folder, listing the instances stored."""
        with self._lock:
            instances = self._stored.pop(ref.series_instance_uid, {})
        return self.side.mark_done(ref, {**marker, MARKER_KEY: instances})

    def _present(self, study: str, modality: str) -> set[str]:
        """SOP Instance UIDs of ``modality`` in ``study``, as QIDO-RS lists them."""
        filters = {"Modality": modality} if modality else None
        try:
            found = self.service.client().search_for_instances(
                study_instance_uid=study,
                fields=["SOPInstanceUID"],
                search_filters=filters,
                get_remaining=True,
            )
        except RequestException as err:
            raise service_error(
                err, self.service, f"the instance search of study {study}", error=PublishError
            ) from err
        return {str(item.get("00080018", {}).get("Value", [""])[0]) for item in found}

    def done_series(self) -> dict[str, list[str]]:
        """Series with a marker in the side folder whose instances QIDO-RS finds."""
        markers: dict[str, dict[str, dict[str, str]]] = {}
        root = Path(self.side.root)
        for path in sorted(root.rglob(DONE_MARKER)) if root.is_dir() else ():
            try:
                content = json.loads(path.read_text())
                uid = str(content["source_series_instance_uid"])
                instances = {str(k): dict(v) for k, v in content[MARKER_KEY].items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
                logger.warning("ignoring unreadable marker %s: %s", path, err)
                continue
            markers[uid] = instances
        wanted = {
            (record["study"], record.get("modality", ""))
            for instances in markers.values()
            for record in instances.values()
        }
        present: dict[tuple[str, str], set[str]] = {
            key: self._present(*key) for key in sorted(wanted)
        }
        done: dict[str, list[str]] = {}
        for uid, instances in markers.items():
            missing = [
                name
                for name, record in instances.items()
                if record["sop"] not in present[(record["study"], record.get("modality", ""))]
            ]
            if not instances or missing:
                logger.info(
                    "series %s has a marker but %s is not in %s: it is redone",
                    uid,
                    ", ".join(missing) or "no instance",
                    self.service.url,
                )
                continue
            done[uid] = [
                self._instance_url(r["study"], r["series"], r["sop"]) for r in instances.values()
            ]
        return done

"""The store for an output location given on the command line or in a configuration."""

from __future__ import annotations

from pathlib import Path

from omas_idc.errors import ConfigurationError
from omas_idc.fetch.dicomweb import DicomwebService, is_dicomweb_url
from omas_idc.publish.dicomweb_store import DicomwebStore
from omas_idc.publish.folder_store import FolderStore
from omas_idc.publish.object_store import ObjectStore
from omas_idc.publish.store import OutputStore

__all__ = ["open_store"]


def open_store(
    root: str | Path,
    endpoint_url: str | None = None,
    *,
    side_out: str | Path | None = None,
    dicomweb_token: str | None = None,
) -> OutputStore:
    """The store for an output location: a bucket URL (``s3://``, ``gs://``), a DICOMweb
    service (``dicomweb+http(s)://host/path``) or a folder.

    Parameters
    ----------
    root
        The output location.
    endpoint_url
        The S3 endpoint of a bucket location.
    side_out
        For a DICOMweb service: the folder that takes what is not a DICOM object (release
        rows, previews, reports, ``DONE.json`` markers).
    dicomweb_token
        For a DICOMweb service: the bearer token, or ``None``.

    Raises
    ------
    ConfigurationError
        For any other URL scheme; for a DICOMweb location without ``side_out``, or one whose
        service refuses the token (``reason="unauthorized"``: the service is asked one QIDO-RS
        question here, before any work).
    PublishError
        Where the DICOMweb service cannot be reached.
    """
    text = str(root)
    if text.startswith(("s3://", "gs://")):
        return ObjectStore(text, endpoint_url=endpoint_url)
    if is_dicomweb_url(text):
        if side_out is None:
            raise ConfigurationError(
                "a DICOMweb output keeps SEG and SR only: give a folder for the release rows, "
                "previews and markers (--side-out)",
                reason="output-url",
            )
        store = DicomwebStore(
            DicomwebService.parse(text, token=dicomweb_token),
            FolderStore(str(Path(side_out).resolve())),
        )
        store.check()
        return store
    if "://" in text:
        raise ConfigurationError(
            f"unsupported output location {text!r}: use a folder, s3://..., gs://... or "
            "dicomweb+https://host/path",
            reason="output-url",
        )
    return FolderStore(str(Path(text).resolve()))

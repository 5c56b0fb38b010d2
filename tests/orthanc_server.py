"""Orthanc on loopback for the DICOMweb tests: :mod:`orthanc`'s server, skipped with the reason
where Orthanc or its DICOMweb plugin is missing, yielding its DICOMweb root URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from orthanc import orthanc_missing, orthanc_server


@contextmanager
def orthanc(
    folder: Path, token: str | None = None, *, basic_user: bool = False, timeout_s: float = 60.0
) -> Iterator[str]:
    """Start Orthanc with a database in ``folder``; yield its DICOMweb root
    (``http://127.0.0.1:<port>/dicom-web``); stop it by PID afterwards.

    With ``token``, a request without ``Authorization: Bearer <token>`` gets 403; with
    ``basic_user``, any request without the basic credentials ``omas:omas`` gets 401.
    """
    missing = orthanc_missing()
    if missing is not None:
        pytest.skip(missing)
    with orthanc_server(folder, timeout_s, token=token, basic_user=basic_user) as server:
        yield server.dicomweb

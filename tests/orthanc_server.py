"""Orthanc on loopback for the DICOMweb tests: its own config file, the DICOMweb plugin only,
no DICOM port, a database in a temporary folder, stopped by PID.

Debian's ``orthanc`` and ``orthanc-dicomweb`` packages provide the server (``.ci/run``
installs them); where the binary or the plugin is missing, :func:`orthanc_or_skip` skips the
test with the reason. With ``token`` set, Orthanc asks for ``Authorization: Bearer <token>``
(a Lua filter; a wrong token gets 403), and with ``basic_user`` every other request gets 401.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from omas_idc.testing.s3server import free_port

PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def orthanc_binary() -> str | None:
    """The Orthanc executable, or ``None`` where it is not installed."""
    return shutil.which("Orthanc") or (
        "/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").is_file() else None
    )


def orthanc_or_skip() -> str:
    """The Orthanc executable; skip the test, saying what to install, where it is missing."""
    binary = orthanc_binary()
    if binary is None or not PLUGIN.is_file():
        pytest.skip(
            "Orthanc with its DICOMweb plugin is not installed (Debian: apt-get install "
            "orthanc orthanc-dicomweb; .ci/run installs them)"
        )
    return binary


def _config(folder: Path, port: int) -> dict[str, object]:
    return {
        "Name": "omas-idc-test",
        "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"),
        "Plugins": [str(PLUGIN)],
        "HttpPort": port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": False,
        "HttpCompressionEnabled": False,
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "EnableWado": False,
            "Ssl": False,
            "StudiesMetadata": "Full",
            "SeriesMetadata": "Full",
        },
    }


@contextmanager
def orthanc(
    folder: Path, token: str | None = None, *, basic_user: bool = False, timeout_s: float = 60.0
) -> Iterator[str]:
    """Start Orthanc with a database in ``folder``; yield its DICOMweb root
    (``http://127.0.0.1:<port>/dicom-web``); stop it by PID afterwards.

    With ``token``, a request without ``Authorization: Bearer <token>`` gets 403; with
    ``basic_user``, any request without the basic credentials ``omas:omas`` gets 401.
    """
    binary = orthanc_or_skip()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = _config(folder, port)
    if token is not None:
        # Orthanc's own authentication knows HTTP basic users only: a Lua filter lets through
        # the requests that carry the bearer token (others get 403), and "AuthenticationEnabled"
        # with a registered user makes every request without that user's basic credentials a
        # 401, as a DICOMweb service answers an unknown token.
        lua = folder / "bearer.lua"
        lua.write_text(
            "function IncomingHttpRequestFilter(method, uri, ip, username, headers)\n"
            f"  return headers['authorization'] == 'Bearer {token}'\n"
            "end\n"
        )
        config["LuaScripts"] = [str(lua)]
    if basic_user:
        config["AuthenticationEnabled"] = True
        config["RegisteredUsers"] = {"omas": "omas"}
    path = folder / "orthanc.json"
    path.write_text(json.dumps(config, indent=1))
    log = (folder / "orthanc.log").open("wb")
    process = subprocess.Popen([binary, str(path)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            request = urllib.request.Request(f"{url}/system")
            if token is not None:
                request.add_header("Authorization", f"Bearer {token}")
            if basic_user:
                credentials = base64.b64encode(b"omas:omas").decode()
                request.add_header("Authorization", f"Basic {credentials}")
            try:
                with urllib.request.urlopen(request, timeout=1.0):
                    break
            except (urllib.error.URLError, OSError) as err:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"Orthanc did not start; its log: {(folder / 'orthanc.log').read_text()}"
                    ) from err
                time.sleep(0.1)
        yield f"{url}/dicom-web"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()

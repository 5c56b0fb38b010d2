"""A loopback Orthanc with the DICOMweb plugin, for tests (shared: viewers, DICOMweb stores).

Orthanc runs from its own configuration file in a temporary folder: HTTP on a free
127.0.0.1 port, DICOM port off, no remote access, the DICOMweb plugin at ``/dicom-web/``,
its database in that folder; it is stopped by its PID. With ``token`` set, Orthanc asks for
``Authorization: Bearer <token>`` (a Lua filter; a wrong token gets 403), and with
``basic_user`` every request without the basic credentials ``omas:omas`` gets 401, as a
DICOMweb service answers an unknown token. Debian packages: ``orthanc``,
``orthanc-dicomweb``. Import it from a test module with ``from orthanc import ...`` (pytest puts
``tests/`` on ``sys.path`` for its conftest) or use the fixture in a conftest::

    @pytest.fixture(scope="session")
    def orthanc(tmp_path_factory):
        with orthanc_server(tmp_path_factory.mktemp("orthanc")) as server:
            yield server
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DICOMWEB_PLUGIN", "OrthancServer", "orthanc_missing", "orthanc_server"]

#: Where Debian's orthanc-dicomweb installs the plugin.
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def orthanc_missing() -> str | None:
    """Why Orthanc with DICOMweb cannot run here, or ``None`` where it can."""
    if shutil.which("Orthanc") is None:
        return "Orthanc is not installed (Debian package orthanc; .ci/run installs it)"
    if not DICOMWEB_PLUGIN.is_file():
        return (
            f"Orthanc's DICOMweb plugin is not installed ({DICOMWEB_PLUGIN}; "
            "Debian package orthanc-dicomweb)"
        )
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class OrthancServer:
    """A running Orthanc: ``url`` (REST root) and ``dicomweb`` (DICOMweb root, no trailing /)."""

    url: str
    pid: int
    folder: Path
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def _request(self, path: str, **kwargs: Any) -> urllib.request.Request:
        request = urllib.request.Request(self.url + path, **kwargs)
        for name, value in self.headers:
            request.add_header(name, value)
        return request

    def get_json(self, path: str) -> Any:
        """GET ``url + path`` as JSON."""
        with urllib.request.urlopen(self._request(path), timeout=30) as response:
            return json.load(response)

    def upload(self, files: Iterable[Path]) -> list[str]:
        """POST each DICOM file to ``/instances``; the Orthanc IDs of the instances."""
        ids = []
        for path in files:
            request = self._request(
                "/instances",
                data=Path(path).read_bytes(),
                headers={"Content-Type": "application/dicom"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                answer = json.load(response)
            if answer.get("Status") not in ("Success", "AlreadyStored"):
                raise RuntimeError(f"Orthanc refused {path}: {answer}")
            ids.append(answer["ID"])
        return ids

    def clear(self) -> None:
        """Delete every patient (and so every study, series and instance)."""
        for patient in self.get_json("/patients"):
            request = self._request(f"/patients/{patient}", method="DELETE")
            urllib.request.urlopen(request, timeout=30).close()


def _config(folder: Path, port: int) -> dict[str, Any]:
    database = folder / "db"
    return {
        "Name": "omas-idc-test",
        "StorageDirectory": str(database),
        "IndexDirectory": str(database),
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "HttpPort": port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": False,
        "HttpCompressionEnabled": False,
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
        "StableAge": 1,
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "EnableWado": True,
            "WadoRoot": "/wado",
            "Ssl": False,
            "StudiesMetadata": "Full",
            "SeriesMetadata": "Full",
        },
    }


@contextmanager
def orthanc_server(
    folder: Path,
    timeout_s: float = 60.0,
    *,
    token: str | None = None,
    basic_user: bool = False,
) -> Iterator[OrthancServer]:
    """Start Orthanc with its own configuration and database in ``folder``; stop it by PID.

    ``token`` and ``basic_user`` make it ask for credentials (see the module docstring); the
    returned server's own requests carry them.

    Raises
    ------
    RuntimeError
        Where Orthanc is missing or does not answer within ``timeout_s`` (its log is quoted).
    """
    missing = orthanc_missing()
    if missing is not None:
        raise RuntimeError(missing)
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    settings = _config(folder, port)
    headers: list[tuple[str, str]] = []
    if token is not None:
        # Orthanc's own authentication knows HTTP basic users only: a Lua filter lets through
        # the requests that carry the bearer token; the others get 403.
        lua = folder / "bearer.lua"
        lua.write_text(
            "function IncomingHttpRequestFilter(method, uri, ip, username, headers)\n"
            f"  return headers['authorization'] == 'Bearer {token}'\n"
            "end\n"
        )
        settings["LuaScripts"] = [str(lua)]
        headers.append(("Authorization", f"Bearer {token}"))
    if basic_user:
        settings["AuthenticationEnabled"] = True
        settings["RegisteredUsers"] = {"omas": "omas"}
        headers.append(("Authorization", "Basic " + base64.b64encode(b"omas:omas").decode()))
    config = folder / "orthanc.json"
    config.write_text(json.dumps(settings, indent=1))
    log = folder / "orthanc.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["Orthanc", str(config)], stdout=out, stderr=subprocess.STDOUT, cwd=folder
        )
    server = OrthancServer(
        url=f"http://127.0.0.1:{port}", pid=process.pid, folder=folder, headers=tuple(headers)
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                server.get_json("/system")
                break
            except (OSError, urllib.error.URLError) as err:
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"Orthanc did not start on port {port}: {tail}") from err
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

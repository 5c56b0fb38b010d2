"""Fixtures of the viewer tests (see viewer_support.py): the run outputs and truth, a loopback
Orthanc holding them, OHIF served beside it, and the artifacts folder."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from viewer_support import ACQUISITIONS, ARTIFACTS, OHIF_DIST, Case, make_case, ohif_missing


@pytest.fixture(scope="session")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    """The demo model's outputs (LABELMAP and BINARY SEG) for each acquisition."""
    root = tmp_path_factory.mktemp("viewer-cases")
    return {name: make_case(name, options, root / name) for name, options in ACQUISITIONS.items()}


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """``test-artifacts/viewers``: screenshots and logs of the viewer tests."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory, cases: dict[str, Case]) -> Iterator[object]:
    """A loopback Orthanc holding every case's CT series and SEGs."""
    from orthanc import orthanc_missing, orthanc_server

    missing = orthanc_missing()
    if missing is not None:
        pytest.skip(missing)
    with orthanc_server(tmp_path_factory.mktemp("orthanc")) as server:
        for case in cases.values():
            server.upload([*sorted(case.series_dir.glob("*.dcm")), *case.segs.values()])
        yield server


@pytest.fixture(scope="session")
def ohif(orthanc: object) -> Iterator[str]:
    """OHIF served on loopback with /dicom-web passed to Orthanc; yields its base URL."""
    missing = ohif_missing()
    if missing is not None:
        pytest.skip(missing)
    here = Path(__file__).parent
    process = subprocess.Popen(
        ["node", str(here / "serve.js"), str(OHIF_DIST), str(here / "app-config.js"), orthanc.url],  # type: ignore[attr-defined]
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening "), f"serve.js did not start: {line}"
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        process.terminate()
        process.wait(timeout=10)

"""``omas-idc run --out dicomweb+http://...`` against Orthanc on loopback: SEG and SR stored by
STOW-RS, killed and resumed without redoing or duplicating anything, every stored instance
byte-equal to a local-folder run of the same selection; the series are read by ``--from`` the
same service."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from orthanc_server import orthanc
from phantom_refs import phantom_ref

from omas_idc.fetch.dicomweb import TOKEN_VARIABLE, DicomwebService
from omas_idc.phantom import PhantomOptions, make_phantom
from omas_idc.series_ref import SeriesRef, write_selection

pytestmark = pytest.mark.slow  # three runs of three series each

TOKEN = "store-token-0123456789abcdef"
TIMESTAMP = "2026-05-01T00:00:00"
GRID = {"shape": (10, 28, 32), "pixel_spacing": (12.0, 12.0), "slice_spacing": 20.0}
SEEDS = (21, 22, 23)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DicomwebService]:
    with orthanc(tmp_path_factory.mktemp("orthanc"), token=TOKEN) as url:
        yield DicomwebService(url, token=TOKEN)


@pytest.fixture(scope="module")
def selection(service: DicomwebService, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Three phantom series stored in Orthanc, and a saved selection of them."""
    root = tmp_path_factory.mktemp("inputs")
    refs = []
    for seed in SEEDS:
        phantom = make_phantom(root / f"p{seed}", PhantomOptions(seed=seed, **GRID))  # type: ignore[arg-type]
        service.client().store_instances([pydicom.dcmread(f) for f in phantom.files])
        refs.append(phantom_ref(phantom, seed))
    path = root / "selection.parquet"
    write_selection(refs, path)
    return path, refs


def _command(
    selection: Path, model: Path, service: DicomwebService | None, out: str, work: Path
) -> list[str]:
    """``omas-idc run`` on CPU, reading the series from ``service`` (where not ``None``)."""
    source = [] if service is None else ["--from", service.location]
    return [
        sys.executable,
        "-m",
        "omas_idc.cli",
        "run",
        "--selection",
        str(selection),
        "--model",
        str(model),
        *source,
        "--out",
        out,
        "--work",
        str(work),
        "--device",
        "cpu",
        "--timestamp",
        TIMESTAMP,
    ]


def _env(token: str | None = TOKEN) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_VARIABLE}
    env["COLUMNS"] = "1000"
    if token is not None:
        env[TOKEN_VARIABLE] = token
    return env


def _run(command: list[str], token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, env=_env(token))


def _stored(service: DicomwebService, refs: list[SeriesRef]) -> dict[str, list[dict[str, Any]]]:
    """Modality -> the SEG and SR instances (QIDO-RS) in the selection's studies."""
    client = service.client()
    found: dict[str, list[dict[str, Any]]] = {"SEG": [], "SR": []}
    for study in sorted({r.study_instance_uid for r in refs}):
        for modality, items in found.items():
            items += client.search_for_instances(
                study_instance_uid=study,
                search_filters={"Modality": modality},
                fields=["SOPInstanceUID", "SeriesInstanceUID"],
            )
    return found


def _value(item: dict[str, Any], tag: str) -> str:
    return str(item[tag]["Value"][0])


def _wado_bytes(service: DicomwebService, study: str, series: str, sop: str) -> bytes:
    """The instance as WADO-RS returns it in its stored transfer syntax."""
    response = requests.get(
        f"{service.url}/studies/{study}/series/{series}/instances/{sop}",
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*',
        },
        timeout=60,
    )
    response.raise_for_status()
    (part,) = list(service.client()._decode_multipart_message(response, stream=False))
    return bytes(part)


def test_a_killed_dicomweb_run_resumes_to_one_copy_of_each_output_byte_equal_to_a_local_run(
    selection: Any, threshold_model: Path, service: DicomwebService, tmp_path: Path
) -> None:
    path, refs = selection
    local = tmp_path / "local"
    done = _run(_command(path, threshold_model, service, str(local), tmp_path / "w-local"))
    assert done.returncode == 0, done.stdout + done.stderr
    local_files = {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p
        for p in sorted(local.rglob("*.dcm"))
    }
    assert len(local_files) == len(refs) * 2  # the model's one task: one SEG and one SR each

    side, work = tmp_path / "side", tmp_path / "w-dicomweb"
    command = _command(path, threshold_model, service, service.location, work)
    command += ["--side-out", str(side)]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env()
    )
    deadline = time.monotonic() + 300
    while not list(side.rglob("DONE.json")):
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    markers_at_kill = len(list(side.rglob("DONE.json")))
    assert markers_at_kill < len(refs), "the run finished before the kill"

    resumed = _run(command)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    report = json.loads((work / "run-report-0-of-1.json").read_text())
    assert report["skipped_done"] == markers_at_kill  # nothing finished was redone
    assert report["done"] == len(refs) - markers_at_kill
    # The side folder holds what is not a DICOM object, the store the SEGs and SRs only.
    assert (side / "release" / "shard-0-of-1.parquet").is_file()
    assert len(list(side.rglob("qa.parquet"))) == len(refs)
    assert not list(side.rglob("*.dcm"))

    stored = _stored(service, refs)
    assert len(stored["SR"]) == len(refs)  # one SR per series
    assert len(stored["SEG"]) == len(refs)  # one SEG per task (one task) per series
    instances = stored["SEG"] + stored["SR"]
    assert {_value(i, "00080018") for i in instances} == set(local_files)
    for item in instances:
        sop = _value(item, "00080018")
        study = str(pydicom.dcmread(local_files[sop], stop_before_pixels=True).StudyInstanceUID)
        assert _wado_bytes(service, study, _value(item, "0020000E"), sop) == (
            local_files[sop].read_bytes()
        ), local_files[sop].name

    # A fresh work folder with the same side folder: QIDO-RS finds every series' instances.
    fresh = _command(path, threshold_model, service, service.location, tmp_path / "w-fresh")
    again = _run([*fresh, "--side-out", str(side)])
    assert again.returncode == 0, again.stdout + again.stderr
    report = json.loads((tmp_path / "w-fresh" / "run-report-0-of-1.json").read_text())
    assert (report["skipped_done"], report["done"]) == (len(refs), 0)


def test_a_series_whose_instances_left_the_store_is_redone(
    selection: Any, threshold_model: Path, service: DicomwebService, tmp_path: Path
) -> None:
    path, refs = selection
    side = tmp_path / "side"
    command = _command(path, threshold_model, service, service.location, tmp_path / "w1")
    first = _run([*command, "--side-out", str(side)])
    assert first.returncode == 0, first.stdout + first.stderr
    # Remove one series' SR from Orthanc (its REST API: DICOMweb has no delete).
    (sr,) = [
        i
        for i in _stored(service, refs)["SR"]
        if _value(i, "0020000E")
        in {
            json.loads(m.read_text())["dicomweb_instances"]["sr.dcm"]["series"]
            for m in side.rglob("DONE.json")
            if json.loads(m.read_text())["source_series_instance_uid"]
            == refs[0].series_instance_uid
        }
    ]
    base = service.url.rsplit("/dicom-web", 1)[0]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    found = requests.post(
        f"{base}/tools/lookup", data=_value(sr, "00080018"), headers=headers, timeout=30
    ).json()
    requests.delete(f"{base}/instances/{found[0]['ID']}", headers=headers, timeout=30)
    fresh = _command(path, threshold_model, service, service.location, tmp_path / "w2")
    again = _run([*fresh, "--side-out", str(side)])
    assert again.returncode == 0, again.stdout + again.stderr
    report = json.loads((tmp_path / "w2" / "run-report-0-of-1.json").read_text())
    assert (report["skipped_done"], report["done"]) == (len(refs) - 1, 1)
    assert len(_stored(service, refs)["SR"]) == len(refs)


def test_a_refused_token_stops_the_run_with_a_classified_error_that_never_shows_it(
    selection: Any, threshold_model: Path, tmp_path: Path
) -> None:
    path, _ = selection
    sent = "wrong-token-" + "e" * 24
    with orthanc(tmp_path / "orthanc", basic_user=True) as url:
        service = DicomwebService(url)
        command = _command(path, threshold_model, None, service.location, tmp_path / "w")
        done = _run([*command, "--side-out", str(tmp_path / "side")], token=sent)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "ConfigurationError (unauthorized)" in output
    assert "HTTP 401" in output
    assert sent not in output
    assert not list((tmp_path / "side").rglob("DONE.json"))

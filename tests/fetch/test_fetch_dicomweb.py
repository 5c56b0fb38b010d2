"""``omas-idc fetch --from dicomweb+http://...``: series read by QIDO-RS and WADO-RS from Orthanc
on loopback, into the bucket fetch's layout, verified against QIDO-RS and the selection."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from orthanc_server import orthanc
from phantom_refs import phantom_ref

from omas_idc.errors import FetchError
from omas_idc.fetch.dicomweb import TOKEN_VARIABLE, DicomwebService, fetch_series_dicomweb
from omas_idc.phantom import PhantomOptions, make_phantom
from omas_idc.read import read_series
from omas_idc.series_ref import write_selection

TOKEN = "fetch-token-0123456789abcdef"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DicomwebService]:
    """Orthanc that asks for the bearer token ``TOKEN``."""
    with orthanc(tmp_path_factory.mktemp("orthanc"), token=TOKEN) as url:
        yield DicomwebService(url, token=TOKEN)


@pytest.fixture(scope="module")
def stored(service: DicomwebService, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A phantom series (written to files and stored in Orthanc) and its SeriesRef."""
    phantom = make_phantom(
        tmp_path_factory.mktemp("phantom"), PhantomOptions(seed=5, shape=(6, 14, 12))
    )
    service.client().store_instances([pydicom.dcmread(f) for f in phantom.files])
    return phantom, phantom_ref(phantom, 5)


def _fetch_cli(args: list[str], token: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_VARIABLE}
    env["COLUMNS"] = "1000"
    if token is not None:
        env[TOKEN_VARIABLE] = token
    return subprocess.run(
        [sys.executable, "-m", "omas_idc.cli", "fetch", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def test_a_dicomweb_fetch_reads_the_same_volume_as_the_files(
    service: DicomwebService, stored: Any, tmp_path: Path
) -> None:
    phantom, ref = stored
    selection = tmp_path / "selection.parquet"
    write_selection([ref], selection)
    out = tmp_path / "downloads"
    args = [str(selection), "--out", str(out), "--from", f"dicomweb+{service.url}"]
    done = _fetch_cli(args, TOKEN)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 downloaded" in done.stdout
    folder = out / ref.relative_dir()
    assert len(list(folder.iterdir())) == ref.instance_count
    fetched = read_series(folder, series_instance_uid=ref.series_instance_uid)
    direct = read_series(Path(phantom.files[0]).parent, series_instance_uid=ref.series_instance_uid)
    np.testing.assert_array_equal(fetched.hu, direct.hu)
    np.testing.assert_array_equal(fetched.geometry.affine, direct.geometry.affine)
    assert [r.sop_instance_uid for r in fetched.source_refs] == [
        r.sop_instance_uid for r in direct.source_refs
    ]
    again = _fetch_cli(args, TOKEN)  # verified: nothing is requested again
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 cached" in again.stdout


def test_an_instance_count_that_disagrees_with_qido_is_refused(
    service: DicomwebService, stored: Any, tmp_path: Path
) -> None:
    _, ref = stored
    wrong = replace(ref, instance_count=ref.instance_count + 1)
    with pytest.raises(FetchError, match="lists 6 instances") as caught:
        fetch_series_dicomweb(wrong, tmp_path, service, attempts=1)
    assert caught.value.reason == "count-mismatch"


def test_a_series_the_service_lacks_is_not_found(
    service: DicomwebService, stored: Any, tmp_path: Path
) -> None:
    _, ref = stored
    missing = replace(ref, series_instance_uid="1.2.3.4.5.6.7.8.9")
    with pytest.raises(FetchError) as caught:
        fetch_series_dicomweb(missing, tmp_path, service, attempts=1)
    assert caught.value.reason == "not-found"


@pytest.mark.parametrize("basic_user", [False, True], ids=["wrong-token-403", "unknown-401"])
def test_a_refused_token_is_a_classified_error_that_never_shows_the_token(
    basic_user: bool, stored: Any, tmp_path: Path
) -> None:
    _, ref = stored
    selection = tmp_path / "selection.parquet"
    write_selection([ref], selection)
    sent = "wrong-token-" + "f" * 24
    token = None if basic_user else TOKEN  # the server's token; the client sends another
    with orthanc(tmp_path / "orthanc", token=token, basic_user=basic_user) as url:
        args = [str(selection), "--out", str(tmp_path / "dl"), "--from", f"dicomweb+{url}"]
        done = _fetch_cli(args, sent)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output  # a configuration error: a retry cannot help
    assert "ConfigurationError (unauthorized)" in output
    assert "HTTP 401" in output if basic_user else "HTTP 403" in output
    assert TOKEN_VARIABLE in output
    assert sent not in output
    assert not (tmp_path / "dl" / ref.relative_dir()).exists()


def test_credentials_in_the_url_are_refused_without_being_shown() -> None:
    from omas_idc.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as caught:
        DicomwebService.parse("dicomweb+https://user:s3cret@example.org/dicom-web")
    assert caught.value.reason == "dicomweb-url"
    assert "s3cret" not in str(caught.value)
    assert "example.org" in str(caught.value)

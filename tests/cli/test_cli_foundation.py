"""The command line as a user meets it: the installed ``omas-idc`` script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom

from omas_idc import __version__


def _omas_idc(*args: str) -> subprocess.CompletedProcess[str]:
    script = shutil.which("omas-idc") or str(Path(sys.executable).with_name("omas-idc"))
    return subprocess.run([script, *args], capture_output=True, text=True, check=False)


def test_version_is_printed() -> None:
    result = _omas_idc("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"omas-idc {__version__}"


def test_help_lists_the_commands_and_does_not_import_torch() -> None:
    result = _omas_idc("--help")
    assert result.returncode == 0, result.stderr
    assert "phantom" in result.stdout
    # --help must stay fast: heavy libraries are imported inside the commands only.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, omas_idc.cli; print(sorted(m for m in ('torch', 'highdicom', 'duckdb')"
            " if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[]"


def test_phantom_command_writes_a_series_and_its_truth(tmp_path: Path) -> None:
    out = tmp_path / "series"
    nifti = tmp_path / "labels.nii.gz"
    result = _omas_idc(
        "phantom",
        str(out),
        "--size",
        "6x40x48",
        "--orientation",
        "sagittal",
        "--transfer-syntax",
        "rle",
        "--labels-nifti",
        str(nifti),
    )
    assert result.returncode == 0, result.stderr
    files = sorted(out.glob("*.dcm"))
    assert len(files) == 6
    ds = pydicom.dcmread(files[0])
    assert ds.Modality == "CT"
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    assert np.allclose([float(v) for v in ds.ImageOrientationPatient], [0, 1, 0, 0, 0, -1])
    assert "kidney_left" in result.stdout
    assert nifti.is_file()


def test_phantom_command_refuses_bad_options_with_a_reason(tmp_path: Path) -> None:
    result = _omas_idc("phantom", str(tmp_path), "--orientation", "coronal", "--tilt", "10")
    assert result.returncode != 0
    assert "tilt" in (result.stdout + result.stderr)
    assert not list(tmp_path.glob("*.dcm"))

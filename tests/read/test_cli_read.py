"""``omas-idc read``: summary, NIfTI export, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
from typer.testing import CliRunner

from omas_idc.cli import app
from omas_idc.phantom import PhantomOptions, make_phantom

SMALL = {"shape": (20, 40, 48), "pixel_spacing": (7.5, 8.0), "slice_spacing": 20.0, "noise": 0.0}


def test_read_prints_a_summary_and_writes_nifti(tmp_path: Path) -> None:
    make_phantom(tmp_path / "dcm", PhantomOptions(seed=0, gantry_tilt_degrees=12.0, **SMALL))  # type: ignore[arg-type]
    out = tmp_path / "ct.nii.gz"
    result = CliRunner().invoke(app, ["read", str(tmp_path / "dcm"), "--nifti", str(out)])
    assert result.exit_code == 0, result.output
    for text in ("48 x 40 x 20", "8 x 7.5 x", "12.00 deg (sheared)", "gantry tilt", "wrote"):
        assert text in result.output
    assert nib.load(out).shape == (48, 40, 20)


def test_read_refuses_with_the_reason_and_lists_series(tmp_path: Path) -> None:
    make_phantom(tmp_path / "a", PhantomOptions(seed=1, missing_slice=4, **SMALL))  # type: ignore[arg-type]
    result = CliRunner().invoke(app, ["read", str(tmp_path / "a")])
    assert result.exit_code == 2
    assert "SeriesGeometryError (gap)" in result.output
    second = make_phantom(tmp_path / "b", PhantomOptions(seed=2, **SMALL))  # type: ignore[arg-type]
    result = CliRunner().invoke(app, ["read", str(tmp_path)])
    assert result.exit_code == 2
    assert "--series-uid" in result.output
    result = CliRunner().invoke(
        app, ["read", str(tmp_path), "--series-uid", second.series_instance_uid]
    )
    assert result.exit_code == 0, result.output

"""The TotalSegmentator 2.18 harness itself: offline runs, label range, grid and orientation.

TotalSegmentator (the PyPI package, run through its own Python API in a subprocess that may not
touch the network) segments a crop of a real CT with omas-idc's synthetic folders of the
``totalseg`` card; its map must lie on the input's grid with the card's label values. The
comparison with omas-idc maps both arrays into one order; an asymmetric phantom shows that a
flip of either map along any axis would be caught. The runs are shared with
``test_totalseg_fidelity.py`` (one run per card and case in a session).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from totalseg_conftest_helpers import ras_affine, report, run_case
from totalseg_reference import (
    TotalSegmentatorError,
    compare_labelmaps,
    run_totalseg,
    totalseg_available,
)

from omas_idc.engine.card import load_card

pytest.importorskip("torch")
pytest.importorskip("nnunetv2")
if not totalseg_available():
    pytest.skip(
        "TotalSegmentator==2.18.0 is not installed (.ci/run installs it with --no-deps)",
        allow_module_level=True,
    )
pytest.importorskip("dicom2nifti", reason="TotalSegmentator's inference path imports it")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "totalseg-reference"


@pytest.mark.usefixtures("shared_data")
def test_totalseg_runs_offline_on_a_real_ct(root: Path) -> None:
    run = run_case(root, "totalseg", "real-ct")
    labels = run.reference.labels
    volume = run.volume
    # The NIfTI's own (i, j, k) order and affine: the input's grid, untouched.
    assert labels.shape == volume.hu.shape[::-1]
    assert np.allclose(run.reference.affine, ras_affine(volume), atol=1e-3)
    card = load_card("totalseg")
    values = set(np.unique(labels).tolist())
    assert values <= {0} | {row.label for row in card.labels}
    assert len(values - {0}) >= 3, f"only labels {sorted(values)}: the networks did not run"
    assert run.reference.wall_s > 0
    assert run.reference.peak_rss_bytes > 50 * 2**20
    print(
        f"\nTotalSegmentator on {volume.hu.shape} voxels: labels {sorted(values - {0})}, "
        f"{run.reference.wall_s:.1f} s, peak {run.reference.peak_rss_bytes / 2**20:.0f} MiB"
    )


@pytest.mark.usefixtures("shared_data")
def test_compared_with_omas_idc_on_the_same_folders(root: Path) -> None:
    run = run_case(root, "totalseg", "real-ct")
    stats = compare_labelmaps(run.reference.zyx, run.omas)
    print("\n" + report("totalseg real CT: TotalSegmentator vs omas-idc", stats, run))
    for label, dice in sorted(stats["dice"].items()):
        print(f"  label {label:3d}: Dice {dice:.4f}  voxels {stats['voxels'][label]}")
    assert run.omas.shape == run.reference.zyx.shape
    assert stats["dice"], "no structure reaches 1000 voxels: the crop is too small to compare"


def test_a_flip_would_be_caught(root: Path) -> None:
    """The feet-first prone phantom (asymmetric along every axis: organs left or right, the
    spine behind, organs at different heights) through the 6 mm card: the maps agree best in
    the order the harness uses, and a flip of either along any axis lowers the agreement."""
    run = run_case(root, "totalseg-6mm", "feet-first-prone")
    aligned = compare_labelmaps(run.reference.zyx, run.omas)["equal_fraction"]
    print(f"\naligned: {aligned:.4f} of voxels equal")
    for axis in range(3):
        flipped = compare_labelmaps(run.reference.zyx, np.flip(run.omas, axis))
        print(f"flipped along axis {axis}: {flipped['equal_fraction']:.4f}")
        assert flipped["equal_fraction"] < aligned - 0.05, f"a flip along axis {axis} went unseen"
    # .labels is the NIfTI's (i, j, k) order, .zyx its transpose: the same comparison.
    transposed = compare_labelmaps(run.reference.labels, run.omas.transpose(2, 1, 0))
    assert transposed["equal_fraction"] == aligned


def test_a_run_that_reaches_for_the_network_fails(tmp_path: Path) -> None:
    """Without weights in its home TotalSegmentator would download them: the harness refuses
    the connection and the run fails, naming what was tried, instead of touching the network."""
    from omas_idc.geometry import VolumeGeometry
    from omas_idc.nifti import write_nifti

    geometry = VolumeGeometry.from_slices(
        (1, 0, 0, 0, 1, 0), (3.0, 3.0), [(0.0, 0.0, 3.0 * k) for k in range(4)], 8, 8
    )
    ct = tmp_path / "ct.nii.gz"
    write_nifti(ct, np.zeros((4, 8, 8), dtype=np.int16), geometry)
    home = tmp_path / "empty-home"
    home.mkdir()
    (home / "config.json").write_text('{"send_usage_stats": false, "prediction_counter": 0}')
    with pytest.raises(TotalSegmentatorError, match="network access refused"):
        run_totalseg(ct, home, tmp_path / "out", fastest=True)

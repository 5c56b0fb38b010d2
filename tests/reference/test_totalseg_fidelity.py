"""Issue #18's criteria against TotalSegmentator 2.18 itself, for the totalseg cards.

TotalSegmentator (the PyPI package, through its own Python API, its defaults: resampling order
1, tile step 0.8, its large-image split) and omas-idc run the same synthetic nnU-Net folders
(threshold weights, few near-ties) on one real CT crop and two phantom acquisitions that are
not axial head-first supine. For every case: Dice >= 0.995 for every structure with at least
1000 voxels in either map, and at least 99.9 % of all voxels equal.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from totalseg_conftest_helpers import CASES, report, run_case
from totalseg_reference import compare_labelmaps, totalseg_available

pytest.importorskip("torch")
pytest.importorskip("nnunetv2")
if not totalseg_available():
    pytest.skip(
        "TotalSegmentator==2.18.0 is not installed (.ci/run installs it with --no-deps)",
        allow_module_level=True,
    )
pytest.importorskip("dicom2nifti", reason="TotalSegmentator's inference path imports it")

pytestmark = pytest.mark.slow

MIN_DICE = 0.995
MIN_EQUAL = 0.999
CARDS = ["totalseg", "totalseg-3mm", "totalseg-6mm"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "totalseg-reference"


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("card", CARDS)
def test_omas_idc_reproduces_totalsegmentator(
    root: Path, card: str, case: str, request: pytest.FixtureRequest
) -> None:
    if case == "real-ct":
        request.getfixturevalue("shared_data")  # skips where ../shared/data is absent
    run = run_case(root, card, case)
    stats = compare_labelmaps(run.reference.zyx, run.omas, min_voxels=1000)
    print("\n" + report(f"{card} {case}", stats, run))
    low = {k: round(v, 4) for k, v in stats["dice"].items() if v < MIN_DICE}
    assert not low, f"{card} {case}: structures under Dice {MIN_DICE}: {low}"
    assert stats["equal_fraction"] >= MIN_EQUAL, (
        f"{card} {case}: {stats['equal_fraction']:.5f} of voxels equal "
        f"({stats['differing']} differ), under {MIN_EQUAL}"
    )

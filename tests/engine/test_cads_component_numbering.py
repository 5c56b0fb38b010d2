"""CADS's component rule past 255 components: TPTBox 0.3.0 numbers them in uint8.

CADS ranks a label's 26-connected components by size with TPTBox, which numbers the ranked
components in the label map's dtype (uint8): rank ``r`` gets number ``r % 256``. Components of
one number are then judged together, and number 0 (ranks 256, 512, ...) is never removed.
CADS's outputs have this; so must the ``cads`` card's. Checked here by hand on a constructed
map, and against TPTBox itself where the CADS reference venv exists (``.ci/run`` builds it).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from omas_idc.engine.cads import keep_components

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_PYTHON = ROOT / ".venv-cads-ref" / "bin" / "python"


def _many_components(singles: int) -> np.ndarray:
    """One 27-voxel block and ``singles`` isolated voxels of label 5, canonical (S, A, R)."""
    side = int(np.ceil(np.sqrt(singles))) * 2 + 2
    labels = np.zeros((8, side, side), dtype=np.uint8)
    labels[1:4, 1:4, 1:4] = 5
    cells = [(6, 2 * a + 1, 2 * b + 1) for a in range(side // 2 - 1) for b in range(side // 2 - 1)]
    for s, a, r in cells[:singles]:
        labels[s, a, r] = 5
    return labels


def test_ranks_past_255_share_numbers_as_in_tptbox() -> None:
    labels = _many_components(300)  # 301 components: the block (rank 1) and 300 singles
    keep_components(labels, 5, min_voxels=2, max_components=None)
    kept_singles = int((labels[6] == 5).sum())
    # ranks 2-45 share numbers 2-45 with ranks 258-301 (2 voxels together: kept), rank 46 is
    # the first number with 1 voxel: it and every later number go; rank 256 is number 0 (kept)
    # and rank 257 shares number 1 with the block
    assert kept_singles == 44 + 44 + 1 + 1
    assert (labels[1:4, 1:4, 1:4] == 5).all()


def test_up_to_255_components_plain_ranking() -> None:
    labels = _many_components(200)
    keep_components(labels, 5, min_voxels=2, max_components=None)
    assert int((labels == 5).sum()) == 27  # every single voxel is below the minimum
    labels = _many_components(200)
    keep_components(labels, 5, min_voxels=0, max_components=3)
    assert int((labels == 5).sum()) == 27 + 2  # the block and the first two singles


@pytest.mark.parametrize(("min_voxels", "max_components"), [(2, None), (0, 1), (1, 40)])
def test_equal_to_tptbox(tmp_path: Path, min_voxels: int, max_components: int | None) -> None:
    if not REFERENCE_PYTHON.exists():
        pytest.skip(f"the CADS reference venv is missing ({REFERENCE_PYTHON}): run .ci/run")
    rng = np.random.default_rng(7)
    labels = (rng.random((20, 40, 44)) < 0.12).astype(np.uint8) * 5  # ~900 components
    labels[2:9, 5:20, 5:20] = 5
    np.save(tmp_path / "in.npy", labels.transpose(2, 1, 0))  # TPTBox's RAS array
    script = f"""
import sys, json, numpy as np, nibabel as nib
sys.path.insert(0, {str(ROOT / "tests" / "reference")!r})
from TPTBox import NII
from cads_reference import filter_components
arr = np.load({str(tmp_path / "in.npy")!r})
nii = NII(nib.Nifti1Image(arr, np.eye(4)), seg=True)
out = filter_components(nii, 5, {min_voxels}, {max_components!r})
np.save({str(tmp_path / "out.npy")!r}, out.get_seg_array().astype(np.uint8))
"""
    done = subprocess.run(
        [str(REFERENCE_PYTHON), "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    expected = np.load(tmp_path / "out.npy").transpose(2, 1, 0)
    ours = labels.copy()
    keep_components(ours, 5, min_voxels=min_voxels, max_components=max_components)
    assert int((labels == 5).sum()) > int((expected == 5).sum())  # the rule removed something
    np.testing.assert_array_equal(ours, expected)

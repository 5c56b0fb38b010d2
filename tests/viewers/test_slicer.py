"""3D Slicer's core (slicer-core: MRML, segmentation logic) holds each SEG right: one segment per
structure with the catalog's name, colour and terminology (SNOMED category, type, laterality
modifier), and exactly the voxels of the label map that was encoded, at the same place in
patient space, for both layouts and both acquisition orientations.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from viewer_support import SLICER_PYTHON, Case

pytestmark = [pytest.mark.viewer, pytest.mark.slow]

LOADER = Path(__file__).parent / "slicer_load.py"


def _terminology(case: Case, label: int) -> str:
    structure = case.structures[label]
    modifier = structure.type_modifier
    return "~".join(
        [
            f"{structure.category.scheme}^{structure.category.value}^{structure.category.meaning}",
            f"{structure.type.scheme}^{structure.type.value}^{structure.type.meaning}",
            f"{modifier.scheme}^{modifier.value}^{modifier.meaning}" if modifier else "",
        ]
    )


@pytest.fixture(scope="module")
def loaded(cases: dict[str, Case]) -> dict[tuple[str, str], dict[str, object]]:
    """What slicer-core holds for every case's SEGs (one loader process for all)."""
    if not SLICER_PYTHON.is_file():
        pytest.skip(f"slicer-core's venv is not at {SLICER_PYTHON} (.ci/run builds .venv-slicer)")
    keys = [(name, layout) for name, case in cases.items() for layout in sorted(case.segs)]
    done = subprocess.run(
        [str(SLICER_PYTHON), str(LOADER), *(str(cases[n].segs[lay]) for n, lay in keys)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(zip(keys, json.loads(done.stdout), strict=True))


@pytest.mark.parametrize("layout", ["labelmap", "binary"])
@pytest.mark.parametrize("acquisition", ["axial-HFS", "coronal"])
def test_slicer_segments_have_catalog_names_colours_codes_and_the_encoded_voxels(
    acquisition: str,
    layout: str,
    cases: dict[str, Case],
    loaded: dict[tuple[str, str], dict[str, object]],
) -> None:
    case = cases[acquisition]
    result = loaded[(acquisition, layout)]
    segments = {s["name"]: s for s in result["segments"]}  # type: ignore[attr-defined]
    expected = {case.structures[label].name.replace("_", " "): label for label in case.structures}
    assert sorted(segments) == sorted(expected), "Slicer's segments are the structures, no more"
    to_lps = np.asarray(result["ijk_to_lps"], dtype=float)
    to_truth_grid = np.linalg.inv(case.affine)
    for name, label in expected.items():
        segment = segments[name]
        structure = case.structures[label]
        colour = tuple(round(255 * c) for c in segment["color"])
        assert max(abs(a - b) for a, b in zip(colour, structure.color_rgb, strict=True)) <= 2, (
            name,
            colour,
            structure.color_rgb,
        )
        assert segment["terminology"] == _terminology(case, label)
        # Voxels back from the node, placed in patient space, then on the source grid.
        ijk = np.asarray(segment["voxels"], dtype=float)
        lps = to_lps @ np.c_[ijk, np.ones(len(ijk))].T
        xyz = to_truth_grid @ lps
        assert np.allclose(xyz[:3], np.rint(xyz[:3]), atol=1e-3), "off the source grid"
        x, y, z = np.rint(xyz[:3]).astype(int)
        held = set(zip(z.tolist(), y.tolist(), x.tolist(), strict=True))
        encoded = {tuple(v) for v in np.argwhere(case.encoded == label).tolist()}
        assert held == encoded, f"{acquisition} {layout} {name}: voxels differ from the encoded map"

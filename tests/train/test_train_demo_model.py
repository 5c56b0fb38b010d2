"""The packaged demo model: geometry chain, every orientation, and parity with nnU-Net."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from omas_idc.engine.model import load_model  # noqa: E402
from omas_idc.engine.segmenter import Segmenter, SegmenterConfig  # noqa: E402
from omas_idc.phantom import PhantomOptions, make_phantom, render_phantom  # noqa: E402
from omas_idc.train.demo import DEMO_STRUCTURES  # noqa: E402
from omas_idc.train.evaluate import dice, score_labelmap, volume_from_array  # noqa: E402

#: Every orientation, patient position, flip and oblique/tilt option of the phantom.
ACQUISITIONS = {
    "axial_HFS": {},
    "axial_FFS": {"patient_position": "FFS"},
    "axial_HFP": {"patient_position": "HFP"},
    "axial_FFP": {"patient_position": "FFP"},
    "axial_flip_rows": {"flip_rows": True},
    "axial_flip_columns": {"flip_columns": True},
    "coronal": {"orientation": "coronal"},
    "sagittal": {"orientation": "sagittal", "flip_columns": True},
    "oblique": {"oblique_degrees": 12.0},
    "tilt": {"gantry_tilt_degrees": 15.0},
}
SHAPE = {"axial": (64, 48, 64), "coronal": (48, 64, 64), "sagittal": (64, 64, 48)}


def _options(name: str, seed: int) -> PhantomOptions:
    extra = ACQUISITIONS[name]
    orientation = str(extra.get("orientation", "axial"))
    return PhantomOptions(
        seed=seed,
        shape=SHAPE[orientation],
        pixel_spacing=(6.0, 6.0),
        slice_spacing=6.0,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def segmenter(demo_card: Path):  # type: ignore[no-untyped-def]
    model = load_model(demo_card)
    with Segmenter(model, SegmenterConfig(threads=1, batch_size=4)) as running:
        yield running


@pytest.mark.slow
@pytest.mark.parametrize("acquisition", sorted(ACQUISITIONS))
def test_demo_model_centroids_through_dicom_in_every_orientation(
    segmenter: Segmenter, acquisition: str, tmp_path: Path
) -> None:
    from omas_idc.read import read_series

    phantom = make_phantom(tmp_path, _options(acquisition, seed=700))
    volume = read_series(tmp_path)
    labelmap = segmenter.segment(volume)[0]
    assert labelmap.model == "omas-demo"
    score = score_labelmap(
        labelmap,
        phantom.labels,
        phantom.label_names,
        phantom.geometry,
        DEMO_STRUCTURES,
        {s.name: s.centroid_lps for s in phantom.structures},
    )
    for name in DEMO_STRUCTURES:
        assert score.centroid_error_voxels[name] <= 1.0, (acquisition, name, score)


@pytest.mark.parametrize("acquisition", sorted(ACQUISITIONS))
def test_demo_model_segments_a_fresh_phantom(segmenter: Segmenter, acquisition: str) -> None:
    geometry, hu, labels, structures = render_phantom(_options(acquisition, seed=800))
    names = {i + 1: s.name for i, s in enumerate(structures)}
    labelmap = segmenter.segment(volume_from_array(hu, geometry))[0]
    score = score_labelmap(labelmap, labels, names, geometry, DEMO_STRUCTURES)
    for name in DEMO_STRUCTURES:
        assert score.dice[name] >= 0.85, (acquisition, name, score.dice)


def test_demo_model_matches_nnunet_predictor(demo_card: Path, nnunet_segment: Any) -> None:
    pytest.importorskip("nnunetv2")
    from omas_idc.models import demo_result_folder

    folder = demo_result_folder()
    geometry, hu, _labels, _structures = render_phantom(
        PhantomOptions(seed=900, shape=(60, 80, 96), pixel_spacing=(4.0, 4.5), slice_spacing=5.0)
    )
    volume = volume_from_array(hu, geometry)
    model = load_model(folder)
    with Segmenter(model, SegmenterConfig(threads=1)) as ours:
        mine = ours.segment(volume)[0].array
    theirs = nnunet_segment(folder, volume)
    for label in range(1, len(DEMO_STRUCTURES) + 1):
        present = (mine == label).any() or (theirs == label).any()
        if present:
            assert dice(mine == label, theirs == label) >= 0.99, label
    assert np.mean(mine == theirs) >= 0.99


def test_demo_model_is_small_and_in_the_package(demo_card: Path) -> None:
    from omas_idc.models import demo_result_folder

    size = sum(p.stat().st_size for p in demo_card.parent.rglob("*") if p.is_file())
    assert size < 5 * 2**20
    assert (demo_result_folder() / "fold_all" / "checkpoint_final.pth").is_file()
    assert Path(__file__).resolve().parents[2] / "omas_idc" in demo_card.resolve().parents

"""The QA rules one by one on small phantoms: fallback midlines, status, volume, truncation,
and the plausibility table's own checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from omas_idc.catalog.model import Catalog
from omas_idc.errors import ConfigurationError, QAError
from omas_idc.geometry import VolumeGeometry
from omas_idc.labelmap import TaskLabelMap
from omas_idc.phantom import Phantom, PhantomOptions, make_phantom
from omas_idc.qa import Status, Verdict, assess_series, load_plausibility
from omas_idc.qa.plausibility import PLAUSIBILITY_COLUMNS, read_plausibility_csv
from omas_idc.read import read_series
from omas_idc.testing.tasks import truth_task_labelmaps
from omas_idc.volume import CTVolume

#: A whole-body phantom on a coarse 7 mm grid: every structure inside the field of view.
COARSE = {"shape": (62, 46, 64), "pixel_spacing": (7.0, 7.0), "slice_spacing": 7.0}


@pytest.fixture(scope="module", params=["HFP", "FFS"])
def positioned(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, seed: int
) -> tuple[Phantom, CTVolume]:
    """The phantom prone head first, and supine feet first (LPS x runs against the columns)."""
    folder = tmp_path_factory.mktemp(f"qa-{request.param}") / "ct"
    phantom = make_phantom(
        folder, PhantomOptions(seed=seed, patient_position=request.param, **COARSE)
    )
    return phantom, read_series(folder)


def _maps(phantom: Phantom, catalog: Catalog, labels: np.ndarray) -> list[TaskLabelMap]:
    return truth_task_labelmaps(labels, phantom.label_names, catalog)


def _without_vertebrae(phantom: Phantom) -> np.ndarray:
    labels = phantom.labels.copy()
    for truth in phantom.structures:
        if truth.name.startswith("vertebrae_"):
            labels[labels == truth.label] = 0
    return labels


def _swap(phantom: Phantom, labels: np.ndarray, a: str, b: str) -> np.ndarray:
    va, vb = phantom.structure(a).label, phantom.structure(b).label
    swapped = labels.copy()
    swapped[labels == va], swapped[labels == vb] = vb, va
    return swapped


def _body_map(phantom: Phantom) -> TaskLabelMap:
    """The phantom's body outline as a one-label task (as a body model would deliver it)."""
    body = (phantom.labels > 0).astype(np.uint8)  # the body holds every organ
    return TaskLabelMap("phantom", "body", body, {1: "body"}, model_version="truth")


@pytest.mark.parametrize("source", ["threshold", "body"])
def test_laterality_without_vertebrae_uses_the_fallback_midline(
    positioned: tuple[Phantom, CTVolume], catalog: Catalog, source: str
) -> None:
    phantom, volume = positioned
    labels = _without_vertebrae(phantom)
    extra = [_body_map(phantom)] if source == "body" else []
    true_midline = phantom.structure("body").centroid_lps[0]

    correct = assess_series(volume, _maps(phantom, catalog, labels) + extra, catalog)
    assert correct.midline_source == source
    assert correct.midline_x_mm == pytest.approx(true_midline, abs=7.0)  # one voxel
    for name in ("kidney_left", "kidney_right", "hip_left", "hip_right"):
        record = correct.record(name)
        assert record.verdict is Verdict.PASS, (name, record.reasons)
        assert record.midline_distance_mm is not None
        assert record.midline_distance_mm > 40

    swapped = _swap(phantom, labels, "kidney_left", "kidney_right")
    qa = assess_series(volume, _maps(phantom, catalog, swapped) + extra, catalog)
    assert qa.midline_source == source
    for name in ("kidney_left", "kidney_right"):
        record = qa.record(name)
        assert "wrong_side" in record.reasons, name
        assert record.verdict is Verdict.FAIL
        assert record.midline_distance_mm is not None
        assert record.midline_distance_mm < -40
    for name in ("hip_left", "hip_right", "spleen", "liver"):
        assert qa.record(name).verdict is Verdict.PASS, name
    assert qa.verdict is Verdict.FAIL


@pytest.fixture(scope="module")
def supine(tmp_path_factory: pytest.TempPathFactory, seed: int) -> tuple[Phantom, CTVolume]:
    folder = tmp_path_factory.mktemp("qa-hfs") / "ct"
    phantom = make_phantom(folder, PhantomOptions(seed=seed, **COARSE))
    return phantom, read_series(folder)


def test_vertebra_missing_between_present_levels_warns(
    supine: tuple[Phantom, CTVolume], catalog: Catalog
) -> None:
    phantom, volume = supine
    labels = phantom.labels.copy()
    labels[labels == phantom.structure("vertebrae_L2").label] = 0
    qa = assess_series(volume, _maps(phantom, catalog, labels), catalog)
    record = qa.record("vertebrae_L2")
    assert record.status is Status.ABSENT
    assert record.reasons == ("absent_between_present",)
    assert record.verdict is Verdict.WARN
    assert qa.verdict is Verdict.WARN
    # Above the drawn column (T8 and up) nothing is "between": those levels stay silent.
    assert qa.record("vertebrae_T7").status is Status.ABSENT
    assert qa.record("vertebrae_T7").reasons == ()


def test_oversized_and_tiny_segments_warn(
    supine: tuple[Phantom, CTVolume], catalog: Catalog
) -> None:
    phantom, volume = supine
    labels = phantom.labels.copy()
    liver = phantom.structure("liver")
    # A liver that leaked into the soft tissue of its slices: one piece of several litres.
    zyx = np.argwhere(labels == liver.label)
    low, high = max(0, zyx[:, 0].min() - 3), zyx[:, 0].max() + 4
    body = phantom.structure("body").label
    slab = labels[low:high]
    slab[slab == body] = liver.label
    # A bladder of a few voxels: no cited range, so IDC's 5 mL floor applies.
    bladder = np.argwhere(labels == phantom.structure("urinary_bladder").label)
    labels[tuple(bladder[1:].T)] = 0
    qa = assess_series(volume, _maps(phantom, catalog, labels), catalog)

    _, high_ml = load_plausibility()["liver"].volume_range or (0.0, 0.0)
    record = qa.record("liver")
    assert record.metrics is not None
    assert record.metrics.volume_ml > high_ml
    assert record.reasons == ("volume_above_range",)
    assert record.verdict is Verdict.WARN
    bladder_record = qa.record("urinary_bladder")
    assert load_plausibility().get("urinary_bladder") is None  # no range: the floor applies
    assert bladder_record.metrics is not None
    assert bladder_record.metrics.volume_ml < 5.0
    assert bladder_record.reasons == ("volume_below_minimum",)
    assert bladder_record.verdict is Verdict.WARN
    assert qa.verdict is Verdict.WARN


def _slices(volume: CTVolume, keep: slice) -> CTVolume:
    """A shorter series: the slices ``keep`` of ``volume``."""
    geometry = VolumeGeometry.from_slices(
        volume.geometry.orientation,
        volume.geometry.pixel_spacing,
        volume.geometry.slice_positions[keep],
        volume.shape[1],
        volume.shape[2],
    )
    return CTVolume(
        hu=volume.hu[keep],
        geometry=geometry,
        source_refs=volume.source_refs[keep],
        header=volume.header,
    )


def test_organ_cut_by_the_last_slice_is_truncated(
    supine: tuple[Phantom, CTVolume], catalog: Catalog
) -> None:
    phantom, volume = supine
    heart = np.argwhere(phantom.labels == phantom.structure("heart").label)
    keep = slice(0, int(np.median(heart[:, 0])) + 1)  # the series ends inside the heart
    qa = assess_series(
        _slices(volume, keep), _maps(phantom, catalog, phantom.labels[keep]), catalog
    )
    record = qa.record("heart")
    assert record.metrics is not None
    assert record.metrics.truncated_at == ("last_slice",)
    assert "truncated:last_slice" in record.reasons  # (half a heart is also below its range)
    assert record.verdict is Verdict.WARN
    assert qa.record("liver").reasons == ()  # wholly below the cut


def test_a_volume_range_without_a_source_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plausibility.csv"
    path.write_text(",".join(PLAUSIBILITY_COLUMNS) + "\nliver,300,4000,1,no,,\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="cited source"):
        read_plausibility_csv(path)
    # The same row without its range is accepted: no range, no citation needed.
    path.write_text(",".join(PLAUSIBILITY_COLUMNS) + "\nliver,,,1,no,,\n", encoding="utf-8")
    assert read_plausibility_csv(path)["liver"].volume_range is None


def test_the_volume_floor_is_the_configured_one(
    supine: tuple[Phantom, CTVolume], catalog: Catalog
) -> None:
    phantom, volume = supine
    maps = _maps(phantom, catalog, phantom.labels)
    bladder = assess_series(volume, maps, catalog).record("urinary_bladder")
    assert bladder.metrics is not None
    assert bladder.reasons == ()  # well above IDC's 5 mL
    floor = 2 * bladder.metrics.volume_ml
    raised = assess_series(volume, maps, catalog, min_volume_ml=floor).record("urinary_bladder")
    assert raised.reasons == ("volume_below_minimum",)
    assert raised.verdict is Verdict.WARN
    with pytest.raises(QAError, match="min_volume_ml"):
        assess_series(volume, maps, catalog, min_volume_ml=-1.0)

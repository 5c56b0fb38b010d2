"""QA measurements and checks against the phantom's analytic truth, in every orientation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from omas_idc.catalog.model import Catalog
from omas_idc.geometry import VolumeGeometry
from omas_idc.labelmap import TaskLabelMap
from omas_idc.qa import Status, Verdict, assess_series, load_plausibility
from omas_idc.qa.measure import measure_labelmap
from omas_idc.testing.phantom import Phantom
from omas_idc.testing.tasks import truth_task_labelmaps
from omas_idc.volume import CTVolume

#: Structures whose true shape is a whole ellipsoid: voxel counting converges on them, so
#: their measured volume must match the analytic volume within 2 %. Flat-faced shapes (lung
#: lobe slabs, vertebral and aortic cylinders) keep a voxelisation error of up to half a voxel
#: times their face area on any grid; they are checked against their voxelised labels.
ELLIPSOIDS = (
    "heart",
    "liver",
    "spleen",
    "kidney_left",
    "kidney_right",
    "urinary_bladder",
    "hip_left",
    "hip_right",
)


def _maps(
    phantom: Phantom, catalog: Catalog, labels: np.ndarray | None = None
) -> list[TaskLabelMap]:
    return truth_task_labelmaps(
        phantom.labels if labels is None else labels, phantom.label_names, catalog
    )


def _value(phantom: Phantom, name: str) -> int:
    return phantom.structure(name).label


def test_correct_phantom_passes_with_analytic_volumes(
    phantom_series: tuple[Phantom, CTVolume], catalog: Catalog
) -> None:
    phantom, volume = phantom_series
    qa = assess_series(volume, _maps(phantom, catalog), catalog)
    assert qa.verdict is Verdict.PASS, qa.reasons
    assert qa.midline_source == "vertebrae"
    voxel_ml = abs(np.linalg.det(volume.geometry.affine[:3, :3])) / 1000
    for record in qa.present:
        truth = phantom.structure(record.name)
        metrics = record.metrics
        assert metrics is not None
        assert record.verdict is Verdict.PASS, (record.name, record.reasons)
        assert metrics.voxel_count == int((phantom.labels == truth.label).sum())
        assert metrics.volume_ml == pytest.approx(metrics.voxel_count * voxel_ml, rel=1e-9)
        if record.name in ELLIPSOIDS:
            assert truth.volume_ml is not None
            assert metrics.volume_ml == pytest.approx(truth.volume_ml, rel=0.02), record.name
        np.testing.assert_allclose(metrics.centroid_lps, truth.centroid_lps, atol=1.5)
        assert metrics.hu.mean == pytest.approx(truth.hu, abs=3.0)  # 12 HU noise
        assert metrics.hu.std == pytest.approx(12.0, abs=2.0)
        assert metrics.components == 1
        if record.laterality is not None:
            assert record.midline_distance_mm is not None
            assert record.midline_distance_mm > 40, record.name
    names = {r.name for r in qa.present}
    assert set(ELLIPSOIDS) <= names
    # Expected structures of the tasks that the phantom lacks are absent, not failures.
    assert qa.record("pancreas").status is Status.ABSENT
    assert qa.record("vertebrae_T7").status is Status.ABSENT  # inside the FOV, not drawn
    assert qa.record("vertebrae_C1").status is Status.OUTSIDE_FOV


def test_truncated_split_and_swapped_organs_are_flagged(
    phantom_series: tuple[Phantom, CTVolume], catalog: Catalog
) -> None:
    phantom, volume = phantom_series
    # Split: remove a 3-voxel slab of the liver along its largest array extent.
    labels = phantom.labels.copy()
    liver = _value(phantom, "liver")
    zyx = np.argwhere(labels == liver)
    extent = zyx.max(axis=0) - zyx.min(axis=0)
    axis = int(np.argmax(extent))
    middle = int(np.median(zyx[:, axis]))
    cut = [slice(None)] * 3
    cut[axis] = slice(middle - 1, middle + 2)
    slab = labels[tuple(cut)]
    slab[slab == liver] = 0
    # Swap: the kidneys' labels exchanged.
    left, right = _value(phantom, "kidney_left"), _value(phantom, "kidney_right")
    swapped = labels.copy()
    swapped[labels == left], swapped[labels == right] = right, left
    qa = assess_series(volume, _maps(phantom, catalog, swapped), catalog)
    assert qa.verdict is Verdict.FAIL
    assert qa.record("liver").verdict is Verdict.FAIL
    assert "split" in qa.record("liver").reasons
    for name in ("kidney_left", "kidney_right"):
        record = qa.record(name)
        assert "wrong_side" in record.reasons, name
        assert record.verdict is Verdict.FAIL
    assert qa.record("spleen").verdict is Verdict.PASS

    # Truncated: drop the slices up to the middle of the heart (a real, shorter series).
    heart = np.argwhere(phantom.labels == _value(phantom, "heart"))
    first = int(np.median(heart[:, 0]))
    keep = slice(first, None)
    geometry = VolumeGeometry.from_slices(
        volume.geometry.orientation,
        volume.geometry.pixel_spacing,
        volume.geometry.slice_positions[keep],
        volume.shape[1],
        volume.shape[2],
    )
    cropped = CTVolume(
        hu=volume.hu[keep],
        geometry=geometry,
        source_refs=volume.source_refs[keep],
        header=volume.header,
    )
    qa = assess_series(cropped, _maps(phantom, catalog, phantom.labels[keep]), catalog)
    record = qa.record("heart")
    assert "truncated:first_slice" in record.reasons
    assert record.verdict is Verdict.WARN
    assert record.metrics is not None
    assert record.metrics.truncated_at == ("first_slice",)
    assert qa.verdict is not Verdict.PASS


def _small_volume() -> CTVolume:
    from omas_idc.volume import SeriesHeader, SourceReference

    geometry = VolumeGeometry.from_slices(
        [1, 0, 0, 0, 1, 0], (1.0, 1.0), [[0, 0, z] for z in range(20)], 30, 30
    )
    rng = np.random.default_rng(1)
    hu = rng.integers(-1100, 3200, size=(20, 30, 30)).astype(np.int16)
    refs = tuple(SourceReference("1.2", f"1.2.{k}") for k in range(20))
    return CTVolume(hu, geometry, refs, SeriesHeader("1.2.3", "1.2.4", "1.2.5"))


def test_hu_statistics_equal_numpy() -> None:
    volume = _small_volume()
    array = np.zeros(volume.shape, dtype=np.uint8)
    array[2:9, 3:20, 4:25] = 1
    array[10:18, 5:28, 1:7] = 2
    array[0, 0, 0] = 3  # a one-voxel segment at the corner
    metrics = measure_labelmap(volume, TaskLabelMap("cads", "551", array, {1: "a", 2: "b", 3: "c"}))
    for value, m in metrics.items():
        values = volume.hu[array == value].astype(np.float64)
        assert m.voxel_count == len(values)
        assert m.hu.mean == pytest.approx(values.mean())
        assert m.hu.std == pytest.approx(values.std())
        assert (m.hu.minimum, m.hu.maximum) == (values.min(), values.max())
        assert m.hu.median == pytest.approx(np.median(values))
        for q in (10, 25, 75, 90):
            assert getattr(m.hu, f"p{q}") == pytest.approx(np.percentile(values, q)), q
    assert metrics[3].truncated_at == ("first_slice", "row_border", "column_border")
    assert metrics[1].truncated_at == ()


def test_implausible_and_tiny_volumes_warn(
    phantom_series: tuple[Phantom, CTVolume], catalog: Catalog
) -> None:
    phantom, volume = phantom_series
    labels = phantom.labels.copy()
    liver = _value(phantom, "liver")
    zyx = np.argwhere(labels == liver)
    # Keep the 30 % of the liver below a plane: one piece, below the adult range.
    labels[tuple(zyx[zyx[:, 0] > np.percentile(zyx[:, 0], 30)].T)] = 0
    spleen = np.argwhere(labels == _value(phantom, "spleen"))
    centre = spleen.mean(axis=0)
    far = np.linalg.norm(spleen - centre, axis=1) > 1.5  # keep a few voxels: a 0.1 mL spleen
    labels[tuple(spleen[far].T)] = 0
    qa = assess_series(volume, _maps(phantom, catalog, labels), catalog)
    low, _ = load_plausibility()["liver"].volume_range or (0.0, 0.0)
    liver_record = qa.record("liver")
    assert liver_record.metrics is not None
    assert liver_record.metrics.volume_ml < low
    assert liver_record.reasons == ("volume_below_range",)
    assert "volume_below_range" in qa.record("spleen").reasons
    assert qa.verdict is Verdict.WARN


def test_no_structure_at_all_warns(catalog: Catalog) -> None:
    volume = _small_volume()
    empty = TaskLabelMap("cads", "551", np.zeros(volume.shape, dtype=np.uint8), {})
    qa = assess_series(volume, [empty], catalog)
    assert qa.verdict is Verdict.WARN
    assert qa.midline_source == "threshold"
    assert all(r.status is Status.ABSENT for r in qa.records)
    assert replace(qa.records[0]).name == "spleen"

"""Release table, previews and the ``omas-idc qa`` command on a phantom."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from omas_idc import __version__
from omas_idc.catalog.model import Catalog
from omas_idc.cli import app
from omas_idc.encode import Provenance, encode_labelmaps, write_dataset
from omas_idc.encode.segread import segment_references
from omas_idc.errors import QAError
from omas_idc.geometry import VolumeGeometry, voxel_volume_mm3
from omas_idc.phantom import PhantomOptions, make_phantom
from omas_idc.publish import release_rows, release_schema, write_previews, write_release_table
from omas_idc.qa import Status, assess_series, load_plausibility
from omas_idc.qa.sr import encode_sr
from omas_idc.read import read_series
from omas_idc.testing.tasks import truth_task_labelmaps
from omas_idc.volume import CTVolume

PROVENANCE = Provenance(model="cads", model_version="1.0", timestamp=datetime(2026, 3, 4, 5, 6, 7))


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, catalog: Catalog) -> tuple:
    folder = tmp_path_factory.mktemp("release")
    phantom = make_phantom(
        folder / "ct",
        PhantomOptions(
            seed=2,
            shape=(62, 46, 64),
            pixel_spacing=(7.0, 7.0),
            slice_spacing=7.0,
            orientation="axial",
            patient_position="HFP",
        ),
    )
    volume = read_series(folder / "ct")
    maps = truth_task_labelmaps(phantom.labels, phantom.label_names, catalog)
    segs = encode_labelmaps(volume, maps, catalog, PROVENANCE)
    paths = [write_dataset(s.dataset, folder / f"seg_{s.tasks[0]}.dcm") for s in segs]
    return phantom, volume, maps, [s.dataset for s in segs], paths, folder


def test_release_table_round_trips_with_one_row_per_expected_structure(
    written: tuple, catalog: Catalog, tmp_path: Path
) -> None:
    _, volume, maps, segs, _, _ = written
    qa = assess_series(volume, maps, catalog)
    sr = encode_sr(volume, qa, segs, catalog, PROVENANCE)
    rows = release_rows(
        qa,
        header={"study_instance_uid": volume.header.study_instance_uid, "patient_id": "P"},
        references=segment_references(segs, catalog),
        sr=sr,
    )
    table = pq.read_table(write_release_table(rows, tmp_path / "qa.parquet"))
    assert table.schema.equals(release_schema())
    assert table.num_rows == len(qa.records)
    data = {row["structure"]: row for row in table.to_pylist()}
    kidney = data["kidney_left"]
    record = qa.record("kidney_left")
    assert record.metrics is not None
    assert kidney["volume_ml"] == record.metrics.volume_ml
    assert kidney["type_modifier_code"] == "7771000"
    assert kidney["segment_number"] == catalog.label_of("kidney_left", "cads").label  # type: ignore[union-attr]
    assert kidney["sr_sop_instance_uid"] == sr.SOPInstanceUID
    assert kidney["status"] == "present"
    assert kidney["verdict"] == "pass"
    assert kidney["reasons"] == []
    absent = data["pancreas"]
    assert absent["status"] == Status.ABSENT.value
    assert absent["volume_ml"] is None
    assert absent["segment_number"] is None
    for row in table.to_pylist():
        for value in row.values():
            assert len(str(value).encode()) < 1_000_000


def _damaged(phantom: object, volume: CTVolume) -> tuple[CTVolume, np.ndarray]:
    """The phantom with a split liver, swapped kidneys, a 0.3 mL spleen, and the series cut
    short in the middle of the heart (HFP: slices ascend towards the head)."""
    labels = phantom.labels.copy()  # type: ignore[attr-defined]
    value = {t.name: t.label for t in phantom.structures}  # type: ignore[attr-defined]
    liver = np.argwhere(labels == value["liver"])
    axis = int(np.argmax(liver.max(axis=0) - liver.min(axis=0)))
    middle = int(np.median(liver[:, axis]))
    cut = [slice(None)] * 3
    cut[axis] = slice(middle - 1, middle + 2)
    slab = labels[tuple(cut)]
    slab[slab == value["liver"]] = 0
    left, right = labels == value["kidney_left"], labels == value["kidney_right"]
    labels[left], labels[right] = value["kidney_right"], value["kidney_left"]
    spleen = np.argwhere(labels == value["spleen"])
    labels[tuple(spleen[1:].T)] = 0
    heart = np.argwhere(labels == value["heart"])
    keep = slice(0, int(np.median(heart[:, 0])) + 1)
    geometry = VolumeGeometry.from_slices(
        volume.geometry.orientation,
        volume.geometry.pixel_spacing,
        volume.geometry.slice_positions[keep],
        volume.shape[1],
        volume.shape[2],
    )
    short = CTVolume(volume.hu[keep], geometry, volume.source_refs[keep], volume.header)
    return short, labels


def test_release_table_flags_exactly_the_damaged_structures(
    written: tuple, catalog: Catalog, tmp_path: Path
) -> None:
    phantom, volume, _, _, _, _ = written
    short, labels = _damaged(phantom, volume)
    kept = labels[: short.shape[0]]
    maps = truth_task_labelmaps(kept, phantom.label_names, catalog)
    qa = assess_series(short, maps, catalog)
    table = pq.read_table(write_release_table(release_rows(qa), tmp_path / "qa.parquet"))
    rows = {row["structure"]: row for row in table.to_pylist()}
    assert len(rows) == len(qa.records)

    # What each flag should say, from the damaged truth rather than from the QA.
    cut_off = labels[short.shape[0] :]
    segmented = [t for t in phantom.structures if catalog.label_of(t.name, "cads") is not None]
    truncated = {
        t.name for t in segmented if (kept == t.label).any() and (cut_off == t.label).any()
    }
    assert {"heart", "aorta"} <= truncated
    voxel_ml = voxel_volume_mm3(short.geometry.affine) / 1000
    implausible = set()
    for name, expectation in load_plausibility().items():
        if expectation.volume_range is not None and name in phantom.label_names.values():
            low, high = expectation.volume_range
            ml = (kept == phantom.structure(name).label).sum() * voxel_ml
            if 0 < ml and not low <= ml <= high:
                implausible.add(name)
    assert "spleen" in implausible
    expected = {
        "flag_split": {"liver"},
        "flag_wrong_side": {"kidney_left", "kidney_right"},
        "flag_truncated": truncated,
        "flag_implausible_volume": implausible,
    }
    for flag, names in expected.items():
        assert {name for name, row in rows.items() if row[flag]} == names, flag
    versions = {m.task: m.model_version for m in maps}
    for row in rows.values():
        assert row["model"] == "cads"
        assert row["model_version"] == versions[row["task"]]
        assert row["omas_idc_version"] == __version__
        assert row["series_verdict"] == "fail"


def test_oversized_cells_are_refused(written: tuple, catalog: Catalog, tmp_path: Path) -> None:
    _, volume, maps, _, _, _ = written
    rows = release_rows(assess_series(volume, maps, catalog))
    rows[0]["reasons"] = ["x" * 600_000, "y" * 600_000]
    with pytest.raises(QAError, match="bytes"):
        write_release_table(rows, tmp_path / "qa.parquet")


def test_previews_show_the_liver_on_the_viewers_left(
    written: tuple, catalog: Catalog, tmp_path: Path
) -> None:
    """Radiological convention whatever the acquisition: patient's right on the image left."""
    import matplotlib.image

    from omas_idc.publish.preview import to_lps_axes

    phantom, volume, maps, _, _, _ = written  # HFP: rows and columns both reversed
    paths = write_previews(volume, maps, catalog, tmp_path)
    assert [p.name for p in paths] == ["preview_axial.png", "preview_coronal.png"]
    for path in paths:
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 200
        assert image[..., :3].std() > 0.05  # not blank
    axes, flips, _ = to_lps_axes(volume)
    turned = np.transpose(phantom.labels, axes)
    for axis, flip in enumerate(flips):
        if flip:
            turned = np.flip(turned, axis=axis)
    liver = np.argwhere(turned == phantom.structure("liver").label).mean(axis=0)
    spleen = np.argwhere(turned == phantom.structure("spleen").label).mean(axis=0)
    heart = np.argwhere(turned == phantom.structure("heart").label).mean(axis=0)
    bladder = np.argwhere(turned == phantom.structure("urinary_bladder").label).mean(axis=0)
    assert liver[2] < spleen[2]  # columns: patient right -> left
    assert heart[0] > bladder[0]  # axis 0 runs towards superior (coronal shown flipped)


def _matches(image: np.ndarray, rgb: tuple[int, int, int], alpha: float) -> np.ndarray:
    """Pixels (8-bit RGB) that are ``rgb`` blended with opacity ``alpha`` over some grey."""
    grey = image.astype(np.float64) - alpha * np.asarray(rgb, dtype=np.float64)
    spread = grey.max(axis=-1) - grey.min(axis=-1)
    return (
        (spread <= 2.5)
        & (grey.min(axis=-1) >= -1.5)
        & (grey.max(axis=-1) <= 255 * (1 - alpha) + 1.5)
    )


def _panels(image: np.ndarray, right: float) -> list[slice]:
    """The column ranges of the slice panels: columns with air (black) above and below the
    body; a column of title text holds a few black pixels only."""
    area = image[:, : int(right * image.shape[1])]
    dark = (area.max(axis=-1) < 10).sum(axis=0) >= 20
    edges = np.flatnonzero(np.diff(np.concatenate([[0], dark.astype(np.int8), [0]])))
    return [slice(start, stop) for start, stop in zip(edges[::2], edges[1::2], strict=True)]


def test_axial_preview_pixels_show_the_liver_left_of_the_spleen_and_every_legend_colour(
    written: tuple, catalog: Catalog, tmp_path: Path
) -> None:
    """Radiological convention in the pixels themselves, and a legend a reader can match."""
    import matplotlib.image

    from omas_idc.publish.preview import OVERLAY_ALPHA

    _, volume, maps, _, _, _ = written  # HFP: rows and columns both reversed on disk
    axial, _ = write_previews(volume, maps, catalog, tmp_path)
    image = np.rint(matplotlib.image.imread(axial)[..., :3] * 255).astype(np.int64)
    liver = _matches(image, catalog.by_name("liver").color_rgb, OVERLAY_ALPHA)
    spleen = _matches(image, catalog.by_name("spleen").color_rgb, OVERLAY_ALPHA)
    compared = 0
    panels = _panels(image, right=0.8)
    assert len(panels) == 3
    for panel in panels:
        liver_x = np.flatnonzero(liver[:, panel].any(axis=0))
        spleen_x = np.flatnonzero(spleen[:, panel].any(axis=0))
        if len(liver_x) > 20 and len(spleen_x) > 20:  # both organs cut by this slice
            assert np.median(liver_x) < np.median(spleen_x)  # patient's right: viewer's left
            compared += 1
    assert compared >= 1
    present = {
        catalog.resolve_labels(m.model, m.task, m.labels)[value].name
        for m in maps
        for value in m.present_labels()
    }
    assert {"liver", "spleen", "kidney_left", "vertebrae_L1"} <= present
    pixels = {tuple(p) for p in image.reshape(-1, 3)}
    for name in present:  # the legend patches are drawn opaque
        assert catalog.by_name(name).color_rgb in pixels, name


def test_cli_writes_sr_table_and_previews(written: tuple, tmp_path: Path) -> None:
    _, _, _, _, paths, folder = written
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["qa", str(folder / "ct"), *map(str, paths), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {
        "sr.dcm",
        "qa.parquet",
        "preview_axial.png",
        "preview_coronal.png",
    }
    assert "kidney_left" in result.output
    table = pq.read_table(out / "qa.parquet").to_pylist()
    assert {row["model"] for row in table} == {PROVENANCE.model}
    assert {row["model_version"] for row in table} == {PROVENANCE.model_version}
    assert {row["omas_idc_version"] for row in table} == {__version__}

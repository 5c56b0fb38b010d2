"""Release table, previews and the ``omas-idc qa`` command on a phantom."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from omas_idc.catalog.model import Catalog
from omas_idc.cli import app
from omas_idc.encode import Provenance, encode_labelmaps, write_dataset
from omas_idc.encode.sr import encode_sr, segment_references
from omas_idc.errors import QAError
from omas_idc.publish import release_rows, release_schema, write_previews, write_release_table
from omas_idc.qa import Status, assess_series
from omas_idc.read import read_series
from omas_idc.testing.phantom import PhantomOptions, make_phantom
from omas_idc.testing.tasks import truth_task_labelmaps

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
    assert kidney["segment_number"] == catalog.by_name("kidney_left").cads.label  # type: ignore[union-attr]
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

"""Merging per-shard release tables: one schema, one release, duplicates once, no conflicts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from omas_idc.catalog import load_catalog
from omas_idc.cli import app
from omas_idc.errors import ConfigurationError, QAError
from omas_idc.publish import release_rows, release_schema, write_release_table
from omas_idc.publish.merge import find_release_tables, merge_release_tables
from omas_idc.qa.records import (
    Finding,
    HUStatistics,
    QARecord,
    SegmentMetrics,
    SeriesQA,
    Status,
    Verdict,
)

STRUCTURES = ("liver", "spleen", "kidney_left", "pancreas")


def series_rows(uid: str, model_version: str = "1.0", volume: float = 1500.0) -> list[dict]:
    """The release rows of one series: liver, spleen and kidney present, pancreas absent."""
    catalog = load_catalog()
    records = []
    for label, name in enumerate(STRUCTURES, start=1):
        present = name != "pancreas"
        metrics = (
            SegmentMetrics(
                voxel_count=1000 * label,
                volume_ml=volume / label,
                # A NaN must not make a retried shard's identical row look different.
                hu=HUStatistics(60.0, math.nan, -50.0, 200.0, 61.0, 20.0, 40.0, 80.0, 100.0),
                centroid_lps=(10.0 * label, -20.0, 300.5),
                bbox_start=(1, 2, 3),
                bbox_stop=(40, 50, 60),
                components=1,
                largest_component_fraction=1.0,
                truncated_at=("first_slice",) if name == "liver" else (),
            )
            if present
            else None
        )
        findings = (
            (Finding("truncation", Verdict.WARN, "truncated:first_slice"),)
            if name == "liver"
            else ()
        )
        records.append(
            QARecord(
                series_instance_uid=uid,
                model="cads",
                model_version=model_version,
                task="551",
                label=label,
                structure=catalog.by_name(name),
                status=Status.PRESENT if present else Status.ABSENT,
                metrics=metrics,
                findings=findings,
                verdict=Verdict.WARN if findings else Verdict.PASS,
            )
        )
    qa = SeriesQA(uid, tuple(records), Verdict.WARN)
    return release_rows(qa, header={"study_instance_uid": uid + ".0", "patient_id": "P" + uid[-1]})


def write_shard(folder: Path, index: int, count: int, rows: list[dict]) -> Path:
    return write_release_table(rows, folder / "release" / f"shard-{index}-of-{count}.parquet")


def test_shards_merge_into_one_sorted_table_and_retried_rows_count_once(tmp_path: Path) -> None:
    run = tmp_path / "run"
    # Shard 1 was retried after a pre-emption: a second run folder repeats its rows exactly.
    write_shard(run, 0, 2, series_rows("1.2.9") + series_rows("1.2.3"))
    write_shard(run, 1, 2, series_rows("1.2.5"))
    retry = write_shard(tmp_path / "retry", 1, 2, series_rows("1.2.5"))

    report = merge_release_tables([run, retry], tmp_path / "release.parquet")

    table = pq.read_table(report.output)
    assert table.schema.equals(release_schema())
    rows = table.to_pylist()
    assert report.rows_read == 16
    assert report.rows_written == len(rows) == 12
    assert report.duplicates_dropped == 4
    assert report.series == 3
    assert report.identity is not None
    assert report.identity[1:] == ("cads", "1.0")
    keys = [(r["source_series_instance_uid"], r["task"], r["label"]) for r in rows]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    liver = next(r for r in rows if r["source_series_instance_uid"] == "1.2.5" and r["label"] == 1)
    assert liver["truncated_at"] == ["first_slice"]
    assert liver["flag_truncated"] is True
    assert math.isnan(liver["hu_std"])
    pancreas = next(r for r in rows if r["structure"] == "pancreas")
    assert pancreas["status"] == "absent"
    assert pancreas["volume_ml"] is None


def test_merging_the_same_inputs_twice_gives_the_same_rows(tmp_path: Path) -> None:
    write_shard(tmp_path, 0, 2, series_rows("1.2.7"))
    write_shard(tmp_path, 1, 2, series_rows("1.2.1"))
    first = merge_release_tables([tmp_path], tmp_path / "a.parquet")
    second = merge_release_tables(
        sorted((tmp_path / "release").glob("*.parquet"), reverse=True), tmp_path / "b.parquet"
    )
    a, b = pq.read_table(first.output), pq.read_table(second.output)
    assert a.schema.equals(b.schema)
    assert str(a.to_pylist()) == str(b.to_pylist())


def test_conflicting_rows_for_one_segment_are_refused(tmp_path: Path) -> None:
    write_shard(tmp_path / "run", 0, 1, series_rows("1.2.3", volume=1500.0))
    stale = write_shard(tmp_path / "old", 0, 1, series_rows("1.2.3", volume=1490.0))
    with pytest.raises(QAError, match="conflicting") as caught:
        merge_release_tables([tmp_path / "run", stale], tmp_path / "release.parquet")
    assert "volume_ml" in str(caught.value)
    assert caught.value.series_instance_uid == "1.2.3"
    assert not (tmp_path / "release.parquet").exists()


def test_tables_of_two_releases_are_not_mixed(tmp_path: Path) -> None:
    write_shard(tmp_path, 0, 2, series_rows("1.2.3", model_version="1.0"))
    write_shard(tmp_path, 1, 2, series_rows("1.2.4", model_version="2.0"))
    with pytest.raises(ConfigurationError, match="mix 2 releases"):
        merge_release_tables([tmp_path], tmp_path / "release.parquet")


def test_tables_of_another_schema_are_refused(tmp_path: Path) -> None:
    import pyarrow as pa

    good = write_shard(tmp_path, 0, 2, series_rows("1.2.3"))
    table = pq.read_table(good).drop_columns(["hu_p90"])
    other = tmp_path / "release" / "shard-1-of-2.parquet"
    pq.write_table(table.append_column("extra", pa.array(["x"] * table.num_rows)), other)
    with pytest.raises(QAError, match=r"another schema.*extra.*hu_p90|hu_p90.*extra"):
        merge_release_tables([tmp_path], tmp_path / "release.parquet")


def test_missing_shards_are_refused_unless_allowed(tmp_path: Path) -> None:
    write_shard(tmp_path, 0, 3, series_rows("1.2.3"))
    write_shard(tmp_path, 2, 3, series_rows("1.2.4"))
    with pytest.raises(ConfigurationError, match=r"1 of 3 shard tables are missing \(shards 1\)"):
        merge_release_tables([tmp_path], tmp_path / "release.parquet")
    report = merge_release_tables(
        [tmp_path], tmp_path / "release.parquet", allow_missing_shards=True
    )
    assert report.series == 2
    assert report.shard_counts == (3,)


def test_inputs_that_are_not_release_tables_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        find_release_tables([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigurationError, match="no shard release tables"):
        find_release_tables([tmp_path / "empty"])
    shard = write_shard(tmp_path, 0, 1, series_rows("1.2.3"))
    with pytest.raises(ConfigurationError, match="also an input"):
        merge_release_tables([shard], shard)


def test_empty_shards_merge(tmp_path: Path) -> None:
    write_shard(tmp_path, 0, 2, [])
    write_shard(tmp_path, 1, 2, series_rows("1.2.3"))
    report = merge_release_tables([tmp_path], tmp_path / "release.parquet")
    assert report.rows_written == len(STRUCTURES)


def test_merge_command(tmp_path: Path) -> None:
    write_shard(tmp_path / "run", 0, 1, series_rows("1.2.3"))
    out = tmp_path / "release.parquet"
    result = CliRunner().invoke(app, ["merge", str(tmp_path / "run"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "4 rows of 1 series" in result.output
    assert pq.read_table(out).num_rows == 4
    stale: list[dict[str, Any]] = [
        dict(row, volume_ml=1.0) if row.get("volume_ml") else row for row in series_rows("1.2.3")
    ]
    write_shard(tmp_path / "old", 0, 1, stale)
    result = CliRunner().invoke(
        app, ["merge", str(tmp_path / "run"), str(tmp_path / "old"), "--out", str(out)]
    )
    assert result.exit_code == 1
    assert "conflicting" in result.output

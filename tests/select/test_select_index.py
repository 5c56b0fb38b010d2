"""Selection over the IDC index that idc-index ships (offline), checked against idc-index itself."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import duckdb
import idc_index_data
import pytest
from typer.testing import CliRunner

from omas_idc.cli import app
from omas_idc.errors import SelectionError
from omas_idc.select import SelectionFilters, Shard, one_per_study, rank_key, select_series
from omas_idc.select import index as index_module
from omas_idc.series_ref import SeriesRef, read_selection, selection_provenance

INDEX = Path(str(idc_index_data.IDC_INDEX_PARQUET_FILEPATH))
IDC_VERSION = int(idc_index_data.__version__.split(".")[0])
CT_CLASSES = (
    "('1.2.840.10008.5.1.4.1.1.2', '1.2.840.10008.5.1.4.1.1.2.1', '1.2.840.10008.5.1.4.1.1.2.2')"
)


@pytest.fixture(autouse=True, scope="module")
def offline_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No cached ct_index / volume_geometry_index / seg_index: the offline case, always."""
    empty = tmp_path_factory.mktemp("idc-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(index_module, "_cache_dir", lambda: empty)
        yield


@pytest.fixture(scope="module")
def nlst() -> list[SeriesRef]:
    return list(select_series(SelectionFilters(collections=("nlst",), min_slices=50)).refs)


def index_rows(uids: list[str]) -> dict[str, dict[str, object]]:
    table = duckdb.sql(f"SELECT * FROM read_parquet('{INDEX}')").filter(
        duckdb.ColumnExpression("SeriesInstanceUID").isin(
            *[duckdb.ConstantExpression(u) for u in uids]
        )
    )
    names = table.columns
    return {
        row[names.index("SeriesInstanceUID")]: dict(zip(names, row, strict=True))
        for row in table.fetchall()
    }


def test_nlst_selection_equals_idc_index_own_query(nlst: list[SeriesRef]) -> None:
    from idc_index import IDCClient

    reference = IDCClient().sql_query(
        "SELECT SeriesInstanceUID FROM index WHERE collection_id = 'nlst' AND Modality = 'CT' "
        f"AND SOPClassUID IN {CT_CLASSES} AND analysis_result_id IS NULL "
        "AND instanceCount >= 50"
    )
    ours = [r.series_instance_uid for r in nlst]
    assert len(ours) == len(set(ours)) > 100_000
    assert set(ours) == set(reference["SeriesInstanceUID"])
    assert ours == sorted(ours)


def test_every_selected_row_satisfies_every_filter(nlst: list[SeriesRef]) -> None:
    sample = random.Random(0).sample(nlst, 500)
    rows = index_rows([r.series_instance_uid for r in sample])
    for ref in sample:
        row = rows[ref.series_instance_uid]
        assert row["collection_id"] == ref.collection_id == "nlst"
        assert row["Modality"] == ref.modality == "CT"
        assert row["analysis_result_id"] is None
        assert row["instanceCount"] == ref.instance_count >= 50
        assert row["SOPClassUID"] == ref.sop_class_uid
        assert row["series_aws_url"] == ref.aws_url
        assert (row["PatientID"], row["StudyInstanceUID"]) == (
            ref.patient_id,
            ref.study_instance_uid,
        )
        assert ref.idc_version == IDC_VERSION


def test_body_part_license_uid_and_limit_filters() -> None:
    sample = duckdb.sql(
        f"SELECT SeriesInstanceUID FROM read_parquet('{INDEX}') WHERE Modality = 'CT' "
        "ORDER BY hash(SeriesInstanceUID) LIMIT 3000"
    ).fetchall()
    uids = tuple(u for (u,) in sample)
    filters = SelectionFilters(
        body_parts=("chest",),  # compared case-insensitively
        licenses=("cc by 3.0",),
        series_uids=uids,
        min_slices=100,
    )
    refs = select_series(filters).refs
    rows = index_rows(list(uids))
    expected = {
        uid
        for uid, row in rows.items()
        if (row["BodyPartExamined"] or "").upper() == "CHEST"
        and row["license_short_name"] == "CC BY 3.0"
        and row["instanceCount"] >= 100  # type: ignore[operator]
        and row["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.2"
        and row["analysis_result_id"] is None
    }
    assert 10 < len(expected) < len(uids) / 2
    assert {r.series_instance_uid for r in refs} == expected
    assert select_series(filters, limit=2).refs == refs[:2]


def test_shards_are_disjoint_and_cover_the_selection() -> None:
    filters = SelectionFilters(collections=("lidc_idri",), min_slices=50)
    whole = [r.series_instance_uid for r in select_series(filters).refs]
    shards = [
        [r.series_instance_uid for r in select_series(filters, shard=Shard(i, 3)).refs]
        for i in range(3)
    ]
    assert sum(len(s) for s in shards) == len(whole) > 100
    assert set().union(*map(set, shards)) == set(whole)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    # Deterministic: the same shard again is the same list.
    assert [
        r.series_instance_uid for r in select_series(filters, shard=Shard(1, 3)).refs
    ] == shards[1]


@pytest.mark.parametrize("text", ["3/3", "-1/2", "1", "a/b", "0/0"])
def test_impossible_shards_are_refused(text: str) -> None:
    with pytest.raises(SelectionError, match="shard"):
        Shard.parse(text)


def make_ref(uid: str, study: str = "s1", **kwargs: object) -> SeriesRef:
    fields: dict[str, object] = {
        "series_instance_uid": uid,
        "study_instance_uid": study,
        "patient_id": "p",
        "collection_id": "nlst",
        "modality": "CT",
        "crdc_series_uuid": f"uuid-{uid}",
        "instance_count": 100,
        "size_bytes": 1,
        "aws_bucket": "idc-open-data",
        "idc_version": IDC_VERSION,
        **kwargs,
    }
    return SeriesRef(**fields)  # type: ignore[arg-type]


def test_per_study_ranking_prefers_regular_soft_thin_then_uid() -> None:
    lung = make_ref(
        "1.9", series_description="1,OPA,GE,HSQX,LUNG,320,1.25,120,40,0.1,1.25", instance_count=300
    )
    soft = make_ref(
        "1.8",
        series_description="1,OPA,GE,HSQX,STANDARD,320,2.5,120,40,0.1,2.5",
        instance_count=150,
    )
    soft_thin = make_ref("1.7", convolution_kernel="B30f", slice_thickness_mm=1.0)
    soft_thick = make_ref(
        "1.6", convolution_kernel="B31f", slice_thickness_mm=5.0, instance_count=900
    )
    irregular = make_ref(
        "1.5", convolution_kernel="STANDARD", slice_thickness_mm=0.5, regular_volume=False
    )
    other_study = make_ref("2.1", study="s2")
    refs = [lung, soft, soft_thin, soft_thick, irregular, other_study]
    for seed in range(3):
        random.Random(seed).shuffle(refs)
        assert one_per_study(refs) == [soft_thin, other_study]
    assert one_per_study([lung, soft]) == [soft]
    assert one_per_study([lung, irregular]) == [lung]
    tie_a, tie_b = make_ref("1.20"), make_ref("1.3")
    assert one_per_study([tie_a, tie_b]) == [min(tie_a, tie_b, key=rank_key)] == [tie_a]


def test_one_per_study_on_nlst_keeps_exactly_one_series_per_study(nlst: list[SeriesRef]) -> None:
    chosen = one_per_study(nlst)
    assert len(chosen) == len({r.study_instance_uid for r in nlst})
    assert len({r.study_instance_uid for r in chosen}) == len(chosen)
    # NLST descriptions name the kernel: a study with a STANDARD reconstruction never gets LUNG.
    studies_with_standard = {
        r.study_instance_uid for r in nlst if ",STANDARD," in (r.series_description or "")
    }
    for ref in chosen:
        if ref.study_instance_uid in studies_with_standard:
            assert ",LUNG," not in (ref.series_description or "")


def test_series_done_in_the_run_outputs_are_skipped(tmp_path: Path) -> None:
    filters = SelectionFilters(collections=("lidc_idri",), min_slices=50)
    first, second = select_series(filters, limit=2).refs
    marker = tmp_path / "a" / "DONE.json"
    marker.parent.mkdir()
    marker.write_text(
        json.dumps(
            {"source_series_instance_uid": first.series_instance_uid, "algorithm": "omas-idc"}
        )
    )
    skipped = select_series(filters, limit=1, outputs_dir=tmp_path, skip_algorithm="omas-idc")
    assert skipped.refs == (second,)
    assert skipped.skipped_existing == (first.series_instance_uid,)
    # A marker of another algorithm does not count.
    other = select_series(filters, limit=1, outputs_dir=tmp_path, skip_algorithm="TotalSegmentator")
    assert other.refs == (first,)


def test_cli_select_writes_a_parquet_selection_with_the_idc_version(
    nlst: list[SeriesRef], tmp_path: Path
) -> None:
    out = tmp_path / "selection.parquet"
    args = ["select", "--collection", "nlst", "--min-slices", "50", "--shard", "7/1000"]
    result = CliRunner().invoke(app, [*args, "--no-online-indices", "--out", str(out)])
    assert result.exit_code == 0, result.output
    refs = read_selection(out)
    expected = tuple(nlst[7::1000])
    assert tuple(refs) == expected
    assert {r.idc_version for r in refs} == {IDC_VERSION}
    provenance = selection_provenance(out)
    assert provenance["idc_version"] == str(IDC_VERSION)
    assert provenance["shard"] == "7/1000"
    assert "volume_geometry_index unavailable" in provenance["notes"]


def test_cli_select_explains_a_bad_option(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["select", "--collection", "nlst", "--per-study", "once", "--no-online-indices"]
    )
    assert result.exit_code == 2  # a configuration error: running it again will not help
    assert "Did you mean 'one'" in " ".join(result.output.split())


def test_cli_select_takes_a_hostile_collection_as_data(tmp_path: Path) -> None:
    """Quotes and backslashes in a filter value are a value to match, never SQL: no series."""
    tables = index_module.IndexTables.locate(download=False)
    attack = "\\') OR TRUE --"
    query = index_module.build_index_sql(SelectionFilters(collections=(attack, "nlst")), tables)
    assert "OR TRUE" not in query.text
    assert query.parameters["collections"] == [attack.lower(), "nlst"]

    out = tmp_path / "selection.parquet"
    result = CliRunner().invoke(
        app, ["select", "--collection", attack, "--out", str(out), "--no-online-indices"]
    )
    assert result.exit_code == 0, result.output
    assert read_selection(out) == []

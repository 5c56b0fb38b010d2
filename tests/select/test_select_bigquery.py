"""The BigQuery source: its SQL, transpiled by sqlglot, run by duckdb over phantom headers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pydicom
import pytest
import sqlglot

from omas_idc.errors import SelectionError
from omas_idc.phantom import PhantomOptions, make_phantom
from omas_idc.select import SelectionFilters
from omas_idc.select.bigquery import (
    GeometryChecks,
    build_bigquery_sql,
    dicom_all_table,
    job_config,
    query_bigquery,
    rows_to_refs,
)
from omas_idc.select.index import idc_version

COLUMNS = {
    "collection_id": "VARCHAR",
    "analysis_result_id": "VARCHAR",
    "PatientID": "VARCHAR",
    "StudyInstanceUID": "VARCHAR",
    "SeriesInstanceUID": "VARCHAR",
    "SOPInstanceUID": "VARCHAR",
    "SOPClassUID": "VARCHAR",
    "Modality": "VARCHAR",
    "BodyPartExamined": "VARCHAR",
    "SeriesDescription": "VARCHAR",
    "license_short_name": "VARCHAR",
    "crdc_series_uuid": "VARCHAR",
    "aws_bucket": "VARCHAR",
    "instance_size": "BIGINT",
    "ImageType": "VARCHAR[]",
    "ImageOrientationPatient": "VARCHAR[]",
    "ImagePositionPatient": "VARCHAR[]",
    "ConvolutionKernel": "VARCHAR[]",
    "SliceThickness": "DOUBLE",
}

#: A collection id that ends a BigQuery string literal if quoted: BigQuery reads ``\'`` as an
#: escaped quote, so ``'x\\''`` would leave ``) OR TRUE --`` as SQL.
HOSTILE = "x\\') OR TRUE --"

# name -> (phantom options, collection)
SERIES: dict[str, tuple[dict[str, Any], str]] = {
    "good": ({"seed": 1}, "nlst"),
    "good-tilted": ({"seed": 2, "gantry_tilt_degrees": 15.0}, "nlst"),
    "localizer": ({"seed": 3, "localizer": True}, "nlst"),
    "gap": ({"seed": 4, "missing_slice": 30}, "nlst"),
    "duplicate": ({"seed": 5, "duplicate_slice": 10}, "nlst"),
    "too-few": ({"seed": 6, "shape": (40, 8, 8)}, "nlst"),
    "mixed-orientation": ({"seed": 7}, "nlst"),
    "other-collection": ({"seed": 8}, "other"),
    "hostile-collection": ({"seed": 9}, HOSTILE),
}


def header_row(path: Path, collection: str) -> dict[str, Any]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return {
        "collection_id": collection,
        "analysis_result_id": None,
        "PatientID": ds.PatientID,
        "StudyInstanceUID": ds.StudyInstanceUID,
        "SeriesInstanceUID": ds.SeriesInstanceUID,
        "SOPInstanceUID": ds.SOPInstanceUID,
        "SOPClassUID": ds.SOPClassUID,
        "Modality": ds.Modality,
        "BodyPartExamined": ds.get("BodyPartExamined"),
        "SeriesDescription": ds.get("SeriesDescription"),
        "license_short_name": "CC BY 4.0",
        "crdc_series_uuid": f"uuid-{ds.SeriesInstanceUID[-8:]}",
        "aws_bucket": "idc-open-data",
        "instance_size": path.stat().st_size,
        "ImageType": [str(v) for v in ds.ImageType],
        "ImageOrientationPatient": [str(v) for v in ds.ImageOrientationPatient],
        "ImagePositionPatient": [str(v) for v in ds.ImagePositionPatient],
        "ConvolutionKernel": ["STANDARD"],
        "SliceThickness": float(ds.SliceThickness),
    }


@pytest.fixture(scope="module")
def dicom_all(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, str]]:
    """A duckdb table shaped like IDC's dicom_all, from phantom headers; and name -> UID."""
    rows = []
    uids = {}
    for name, (options, collection) in SERIES.items():
        options = {"shape": (60, 8, 8), **options}
        phantom = make_phantom(tmp_path_factory.mktemp(name), PhantomOptions(**options))
        series_rows = [header_row(Path(f), collection) for f in sorted(phantom.files)]
        if name == "mixed-orientation":
            series_rows[5]["ImageOrientationPatient"] = ["1", "0", "0", "0", "0", "-1"]
        rows += series_rows
        uids[name] = phantom.series_instance_uid
    connection = duckdb.connect()
    columns = ", ".join(f'"{k}" {v}' for k, v in COLUMNS.items())
    connection.execute(f"CREATE TABLE dicom_all ({columns})")
    connection.executemany(
        f"INSERT INTO dicom_all VALUES ({', '.join('?' for _ in COLUMNS)})",
        [[row[k] for k in COLUMNS] for row in rows],
    )
    return connection, uids


def run(
    connection: Any, filters: SelectionFilters, checks: GeometryChecks | None = None
) -> list[dict[str, Any]]:
    query = build_bigquery_sql(filters, table="dicom_all", checks=checks)
    duck = sqlglot.transpile(query.text, read="bigquery", write="duckdb")[0]
    cursor = connection.execute(duck, dict(query.parameters))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def test_geometry_checks_keep_regular_volumes_and_drop_the_rest(
    dicom_all: tuple[Any, dict[str, str]],
) -> None:
    connection, uids = dicom_all
    rows = run(connection, SelectionFilters(collections=("nlst",)))
    kept = {r["SeriesInstanceUID"] for r in rows}
    assert kept == {uids["good"], uids["good-tilted"]}


def test_without_geometry_checks_the_filters_alone_apply(
    dicom_all: tuple[Any, dict[str, str]],
) -> None:
    connection, uids = dicom_all
    rows = run(
        connection,
        SelectionFilters(collections=("nlst",), min_slices=50),
        GeometryChecks(enabled=False),
    )
    kept = {r["SeriesInstanceUID"] for r in rows}
    assert kept == {uids[n] for n, (_, c) in SERIES.items() if c == "nlst" and n != "too-few"}


def test_rows_become_series_refs_like_the_index_rows(dicom_all: tuple[Any, dict[str, str]]) -> None:
    connection, uids = dicom_all
    rows = run(connection, SelectionFilters(series_uids=(uids["good"],)))
    (ref,) = rows_to_refs(rows, idc_version=25, geometry_checked=True)
    assert ref.series_instance_uid == uids["good"]
    assert ref.instance_count == 60
    assert ref.collection_id == "nlst"
    assert ref.convolution_kernel == "STANDARD"
    assert ref.regular_volume is True
    assert ref.aws_url == f"s3://idc-open-data/{ref.crdc_series_uuid}/*"


def test_query_names_the_dicom_all_of_the_local_idc_version() -> None:
    version = idc_version()
    table = dicom_all_table(version)
    assert table == f"bigquery-public-data.idc_v{version}.dicom_all"
    query = build_bigquery_sql(SelectionFilters(collections=("nlst",)), table=table)
    assert f"`{table}`" in query.text
    sqlglot.parse_one(query.text, read="bigquery")  # valid BigQuery syntax


@pytest.mark.network
def test_live_bigquery_selection_agrees_with_the_index() -> None:
    """Needs Google Cloud credentials with a billing project (BigQuery bills the scan)."""
    from omas_idc.select import select_series

    filters = SelectionFilters(collections=("nlst",), min_slices=50)
    live = query_bigquery(filters, idc_version=idc_version(), checks=GeometryChecks(enabled=False))
    index = select_series(filters).refs
    assert {r.series_instance_uid for r in live} == {r.series_instance_uid for r in index}


class _RecordingClient:
    """Stands for ``bigquery.Client``: records the request ``query_bigquery`` would send."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Any]] = []

    def query(self, text: str, job_config: Any = None) -> Any:
        self.requests.append((text, job_config))

        class _Job:
            def result(self) -> list[Any]:
                return []

        return _Job()


def test_filter_values_travel_only_as_query_parameters() -> None:
    """Quotes and backslashes in a filter value never reach the SQL text of the request."""
    from google.cloud import bigquery

    attack = "\\') OR TRUE --"
    filters = SelectionFilters(
        collections=(attack, "nlst"),
        body_parts=("CHEST\\'",),
        licenses=("CC BY 4.0' OR '1'='1",),
        series_uids=("1.2.3') --",),
        modality="CT\\",
    )
    client = _RecordingClient()
    query_bigquery(filters, idc_version=25, checks=GeometryChecks(enabled=False), client=client)

    ((text, config),) = client.requests
    for value in (attack, "OR TRUE", "CHEST", "'1'='1", "1.2.3", "CT\\"):
        assert value not in text
    sqlglot.parse_one(text, read="bigquery")
    parameters = {p.name: p for p in config.query_parameters}
    assert parameters["collections"] == bigquery.ArrayQueryParameter(
        "collections", "STRING", [attack.lower(), "nlst"]
    )
    assert parameters["modality"] == bigquery.ScalarQueryParameter("modality", "STRING", "CT\\")
    assert parameters["body_parts"].values == ["CHEST\\'"]
    assert parameters["licenses"].values == ["cc by 4.0' or '1'='1"]
    assert parameters["series_uids"].values == ["1.2.3') --"]
    # The JSON body of the job carries the values as parameters, typed STRING.
    api = config.to_api_repr()["query"]
    assert api["parameterMode"] == "NAMED"
    sent = {p["name"]: p for p in api["queryParameters"]}
    assert [v["value"] for v in sent["collections"]["parameterValue"]["arrayValues"]] == [
        attack.lower(),
        "nlst",
    ]


def test_a_hostile_value_matches_exactly_its_own_rows(
    dicom_all: tuple[Any, dict[str, str]],
) -> None:
    """Run through duckdb with the same parameters: the value is data, not SQL."""
    connection, uids = dicom_all
    checks = GeometryChecks(enabled=False)
    own = run(connection, SelectionFilters(collections=(HOSTILE,)), checks)
    assert {r["SeriesInstanceUID"] for r in own} == {uids["hostile-collection"]}
    # The attack value matches no collection (it would have matched all).
    assert run(connection, SelectionFilters(collections=("\\') OR TRUE --",)), checks) == []
    query = build_bigquery_sql(SelectionFilters(collections=(HOSTILE,)), table="dicom_all")
    assert HOSTILE.lower() not in query.text
    assert job_config(query).query_parameters[0].values == [HOSTILE.lower()]


def test_a_failed_query_is_a_selection_error_a_retry_may_fix() -> None:
    """No credentials or no network: the run may succeed later (exit 1), unlike a bad filter."""

    class Unreachable:
        def query(self, *args: object, **kwargs: object) -> None:
            raise ConnectionError("bigquery.googleapis.com is unreachable")

    with pytest.raises(SelectionError) as failed:
        query_bigquery(
            SelectionFilters(collections=("nlst",)), idc_version=21, client=Unreachable()
        )
    assert failed.value.reason == "query-failed"
    assert "unreachable" in str(failed.value)
    assert "--source index" in str(failed.value)

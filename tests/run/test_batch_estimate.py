"""``omas-idc batch estimate``: the arithmetic on a small table, refusals, the shipped tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from omas_idc.cli import app
from omas_idc.errors import ConfigurationError
from omas_idc.run.batch.calibrate import (
    CALIBRATED_STAGES,
    Calibration,
    StageCost,
    calibrate,
    load_calibration,
    stored_calibration,
)
from omas_idc.run.batch.estimate import EstimateOptions, estimate_run
from omas_idc.run.batch.machines import machine_table, parse_machine_table
from omas_idc.series_ref import SeriesRef, read_selection, write_selection

TABLE = """# price-region: test-region
# price-source: written by the test
family,machine_type,vcpus,memory_gb,gpu_type,gpu_count,on_demand_usd_hour,spot_usd_hour
g2,,,,nvidia-l4,,,
n1,,,,nvidia-tesla-t4,,0.35,0.1
g2,g2-standard-4,4,16,nvidia-l4,1,2.0,0.5
g2,g2-standard-8,8,32,nvidia-l4,1,,
n1,n1-standard-4,4,15,,,0.2,0.05
n2,n2-standard-8,8,32,,0,0.4,0.1
"""

CALIBRATION = Calibration(
    stages={"read": StageCost(1.0, 0.01), "encode": StageCost(0.0, 0.02)},
    measured_at="2026-12-04T00:00:00+00:00",
    machine={"hostname": "test-host", "cpu_count": 2, "cpu_model": "test CPU"},
    phantom={},
    note="made by the test",
)


def _ref(number: int, slices: int, size_bytes: int) -> SeriesRef:
    return SeriesRef(
        series_instance_uid=f"1.2.3.{number}",
        study_instance_uid="1.2.3",
        patient_id="P",
        collection_id="test",
        modality="CT",
        crdc_series_uuid=f"00000000-0000-4000-8000-00000000000{number}",
        instance_count=slices,
        size_bytes=size_bytes,
        aws_bucket="idc-open-data",
        idc_version=25,
    )


@pytest.fixture
def selection(tmp_path: Path) -> Path:
    path = tmp_path / "sel.parquet"
    write_selection(
        [_ref(1, 100, 50_000_000), _ref(2, 200, 100_000_000), _ref(3, 300, 150_000_000)], path
    )
    return path


def _options(gpu_seconds: float, **changes: object) -> EstimateOptions:
    values: dict[str, object] = {
        "gpu_seconds": gpu_seconds,
        "gpu_slices": 100,
        "tasks": 2,
        "download_mb_per_s": 100.0,
        "task_overhead_minutes": 6.0,
    }
    values.update(changes)
    return EstimateOptions(**values)  # type: ignore[arg-type]


def test_estimate_arithmetic_on_a_small_table(selection: Path) -> None:
    refs = read_selection(selection)
    table = parse_machine_table(TABLE, "test.csv")
    result = estimate_run(refs, CALIBRATION, table, "g2-standard-4", _options(10.0))
    # 600 slices in 3 series. CPU: read 3 x 1 s + 0.01 x 600, encode 0.02 x 600 = 21 CPU-s
    # on 4 vCPUs = 5.25 s; accelerator: 10 s per 100 slices = 60 s; download 300 MB at
    # 100 MB/s = 3 s. The accelerator limits: 3 series in 60 s = 180 series/hour.
    assert result.cpu_seconds_per_stage == pytest.approx({"read": 3.0, "encode": 4.0})
    assert result.seconds_per_series == pytest.approx(
        {"cpu": 5.25 / 3, "accelerator": 20.0, "download": 1.0}
    )
    assert result.limiting_stage == "accelerator"
    assert result.series_per_hour == pytest.approx(180.0)
    # VM-hours: 60 s of work + 2 tasks x 6 min of start-up = 1/60 + 0.2 h.
    assert result.vm_hours == pytest.approx(1 / 60 + 0.2)
    assert result.wall_clock_hours == pytest.approx((1 / 60 + 0.2) / 2)
    assert result.on_demand_usd == pytest.approx((1 / 60 + 0.2) * 2.0)
    assert result.spot_usd == pytest.approx((1 / 60 + 0.2) * 0.5)
    assert result.median_slices == 200
    assert result.to_dict()["projected"] is True


def test_limiting_stage_flips_from_cpu_to_accelerator_as_gpu_seconds_grow(
    selection: Path,
) -> None:
    refs = read_selection(selection)
    table = parse_machine_table(TABLE, "test.csv")
    limits = {
        seconds: estimate_run(refs, CALIBRATION, table, "g2-standard-4", _options(seconds))
        for seconds in (0.1, 0.5, 1.0, 10.0)
    }
    # CPU: 5.25 s for the selection; accelerator: seconds x 6; download: 3 s.
    assert limits[0.1].limiting_stage == "cpu"
    assert limits[0.5].limiting_stage == "cpu"
    assert limits[1.0].limiting_stage == "accelerator"
    assert limits[10.0].limiting_stage == "accelerator"
    assert limits[0.1].series_per_hour == pytest.approx(3 / 5.25 * 3600)
    # Fewer, faster CPUs for the same work: the download limits when nothing else does.
    slow_download = estimate_run(
        refs, CALIBRATION, table, "g2-standard-4", _options(0.1, download_mb_per_s=10.0)
    )
    assert slow_download.limiting_stage == "download"


def test_attached_gpus_are_priced_per_gpu_on_top_of_the_machine(selection: Path) -> None:
    refs = read_selection(selection)
    table = parse_machine_table(TABLE, "test.csv")
    result = estimate_run(refs, CALIBRATION, table, "n1-standard-4", _options(10.0), gpu_count=2)
    assert result.price_per_hour == pytest.approx((0.2 + 2 * 0.35, 0.05 + 2 * 0.1))
    assert result.seconds_per_series["accelerator"] == pytest.approx(10.0)  # 2 GPUs share it
    with pytest.raises(ConfigurationError, match="does not attach"):
        estimate_run(refs, CALIBRATION, table, "n1-standard-4", _options(1.0), gpu_type="nvidia-l4")


def test_a_machine_without_a_price_is_refused_not_invented(selection: Path) -> None:
    refs = read_selection(selection)
    table = parse_machine_table(TABLE, "test.csv")
    with pytest.raises(ConfigurationError, match="does not invent") as refused:
        estimate_run(refs, CALIBRATION, table, "g2-standard-8", _options(10.0))
    assert refused.value.reason == "unpriced-machine"
    assert "test-region" in str(refused.value)
    timed = estimate_run(refs, CALIBRATION, table, "g2-standard-8", _options(10.0, priced=False))
    assert timed.on_demand_usd is None
    assert timed.spot_usd is None
    assert timed.vm_hours > 0
    with pytest.raises(ConfigurationError, match="has no GPU"):
        estimate_run(refs, CALIBRATION, table, "n2-standard-8", _options(10.0))
    with pytest.raises(ConfigurationError, match="not in the machine table"):
        estimate_run(refs, CALIBRATION, table, "g2-standard-99", _options(10.0))


def test_cli_prints_projected_and_every_assumption(selection: Path, tmp_path: Path) -> None:
    machines = tmp_path / "machines.csv"
    machines.write_text(TABLE, encoding="utf-8")
    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps(CALIBRATION.to_dict()), encoding="utf-8")
    arguments = [
        "batch", "estimate", "--selection", str(selection), "--machine", "g2-standard-4",
        "--gpu-seconds", "10", "--gpu-slices", "100", "--tasks", "2",
        "--task-overhead-minutes", "6", "--machines", str(machines),
        "--calibration", str(calibration),
    ]  # fmt: skip
    printed = CliRunner().invoke(app, arguments)
    assert printed.exit_code == 0, printed.output
    assert "projected" in printed.output
    assert "limiting stage" in printed.output
    assert "accelerator" in printed.output
    assert "series/hour per VM  " in printed.output
    assert "180.0" in printed.output
    result = estimate_run(
        read_selection(selection), CALIBRATION, parse_machine_table(TABLE), "g2-standard-4",
        _options(10.0),
    )  # fmt: skip
    for assumption in result.assumptions:
        assert f"[{assumption.status}] {assumption.name}" in printed.output
    assert "[assumed] accelerator seconds per series" in printed.output
    assert "[measured] CPU-seconds per series" in printed.output
    assert "test-host" in printed.output
    assert "2026-12-04" in printed.output
    assert "reference point" in printed.output
    assert "$1,011" in printed.output

    as_json = CliRunner().invoke(app, [*arguments, "--format", "json"])
    data = json.loads(as_json.output)
    assert data["projected"] is True
    assert data["series_per_hour"] == pytest.approx(180.0)
    assert data["limiting_stage"] == "accelerator"

    refused = CliRunner().invoke(app, [*arguments[:5], "g2-standard-8", *arguments[6:]])
    assert refused.exit_code == 2
    assert "does not invent" in refused.output


def test_shipped_machine_table_prices_parse_and_every_gpu_family_is_priced_or_unpriced() -> None:
    table = machine_table()
    assert table.price_region.startswith("us-central1")
    assert "read on" in table.price_source
    for (family, gpu), prices in table.gpu_prices.items():
        assert gpu in table.family_gpus[family]
        assert prices == (None, None) or (0 < prices[1] < prices[0])
    for family, gpus in table.family_gpus.items():
        for gpu in gpus:
            assert (family, gpu) in table.gpu_prices  # a row, priced or explicitly empty
    for machine in table.machines.values():
        prices = (machine.on_demand_usd_hour, machine.spot_usd_hour)
        assert prices == (None, None) or (0 < prices[1] < prices[0]), machine.name
    assert table.machines["n2-standard-8"].on_demand_usd_hour == pytest.approx(0.38847)
    # Every GPU machine of the shipped table is either priced or refused by name.
    refs = [_ref(1, 126, 60_000_000)]
    for machine in table.machines.values():
        if machine.gpu_count == 0:
            continue
        if machine.on_demand_usd_hour is not None and machine.gpu_count is not None:
            assert estimate_run(refs, stored_calibration(), table, machine.name, _options(30.0))
            continue
        with pytest.raises(ConfigurationError, match="does not invent") as refused:
            estimate_run(refs, stored_calibration(), table, machine.name, _options(30.0))
        assert refused.value.reason == "unpriced-machine", machine.name


def test_machine_table_refuses_a_bad_price() -> None:
    bad = TABLE.replace(
        "g2-standard-4,4,16,nvidia-l4,1,2.0,0.5", "g2-standard-4,4,16,nvidia-l4,1,two,0.5"
    )
    with pytest.raises(ConfigurationError, match="not a number"):
        parse_machine_table(bad, "test.csv")
    with pytest.raises(ConfigurationError, match="negative"):
        parse_machine_table(TABLE.replace("2.0,0.5", "-2.0,0.5"), "test.csv")


def test_stored_calibration_says_where_and_when_it_was_measured() -> None:
    stored = stored_calibration()
    assert set(stored.stages) == set(CALIBRATED_STAGES)
    assert stored.measured_at
    assert stored.machine["cpu_count"] >= 1
    assert "shipped" in stored.source
    seconds = stored.cpu_seconds(126)
    assert all(value > 0 for value in seconds.values())


@pytest.mark.slow
def test_calibrate_measures_each_stage_and_round_trips(tmp_path: Path) -> None:
    measured = calibrate((8, 16), note="test")
    assert set(measured.stages) == set(CALIBRATED_STAGES)
    assert [s["slices"] for s in measured.samples] == [8, 16]
    for sample in measured.samples:
        assert all(value > 0 for value in sample["cpu_seconds"].values())
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(measured.to_dict()), encoding="utf-8")
    again = load_calibration(path)
    assert again.stages == measured.stages
    assert again.note == "test"
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not a calibration"):
        load_calibration(path)

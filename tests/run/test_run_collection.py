"""``omas-idc run --collection ...``: the run's selection from the IDC index that idc-index ships.

The command runs through typer's CliRunner as a user types it, up to the pipeline: the engine
is not built (no weights) and :func:`omas_idc.run.pipeline.run_series` is replaced by a recorder,
so nothing is fetched. What the run would process (the series handed to the pipeline, those
registered in the run state and counted in the report) must be exactly what
:func:`omas_idc.select.select_series` returns for the same query, shard and limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from omas_idc.cli import app
from omas_idc.run import engine_setup, runner
from omas_idc.run.pipeline import ModelInfo, RunSummary
from omas_idc.run.state import RunState
from omas_idc.select import SelectionFilters, Shard, select_series
from omas_idc.select import index as index_module
from omas_idc.series_ref import SeriesRef

#: A collection of a few hundred CT series: quick to select, enough for three shards.
SMALL_COLLECTION = "lidc_idri"


@pytest.fixture(autouse=True, scope="module")
def offline_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No cached ct_index / volume_geometry_index / seg_index: the offline case, always."""
    empty = tmp_path_factory.mktemp("idc-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(index_module, "_cache_dir", lambda: empty)
        yield


@pytest.fixture
def handed_to_pipeline(monkeypatch: pytest.MonkeyPatch) -> list[list[SeriesRef]]:
    """The series lists each run hands to the pipeline; no engine, no fetch."""
    calls: list[list[SeriesRef]] = []

    def no_engine(settings: Any) -> tuple[object, ModelInfo]:
        return object(), ModelInfo(name=settings.name, version="0", device="cpu")

    def record(refs: list[SeriesRef], **kwargs: Any) -> RunSummary:
        calls.append(list(refs))
        return RunSummary(started=kwargs["timestamp"].isoformat())

    monkeypatch.setattr(engine_setup, "build_engine", no_engine)
    monkeypatch.setattr(runner, "run_series", record)
    for name in ("BATCH_TASK_INDEX", "BATCH_TASK_COUNT"):
        monkeypatch.delenv(name, raising=False)
    return calls


def invoke_run(tmp_path: Path, name: str, *options: str, env: dict[str, str] | None = None) -> Path:
    """``omas-idc run OPTIONS --out tmp/NAME --work tmp/NAME-work``; returns the work folder."""
    work = tmp_path / f"{name}-work"
    args = ["run", *options, "--out", str(tmp_path / name), "--work", str(work)]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    return work


def uids(refs: list[SeriesRef] | tuple[SeriesRef, ...]) -> list[str]:
    return [r.series_instance_uid for r in refs]


def check_run_state(work: Path, shard: tuple[int, int], expected: list[SeriesRef]) -> None:
    """The state holds the selected series, the report counts them for the right shard."""
    with RunState(work / "state.sqlite") as state:
        assert sorted(s.series_uid for s in state.all_series()) == sorted(uids(expected))
    report = json.loads((work / f"run-report-{shard[0]}-of-{shard[1]}.json").read_text())
    assert report["shard"] == list(shard)
    assert report["selected"] == len(expected)


@pytest.mark.slow
def test_run_collection_nlst_selects_what_select_series_returns(
    tmp_path: Path, handed_to_pipeline: list[list[SeriesRef]]
) -> None:
    # README's command: the collection's packaged configuration (pipelines/nlst.toml) applies.
    work = invoke_run(tmp_path, "nlst", "--collection", "nlst", "--shard", "2/4", "--limit", "5")
    expected = select_series(
        SelectionFilters(collections=("nlst",), modality="CT", min_slices=50),
        per_study="all",
        shard=Shard(2, 4),
        limit=5,
        drop_irregular=True,
    ).refs
    (chosen,) = handed_to_pipeline
    assert len(expected) == 5
    assert chosen == list(expected)  # the same series, in the same order, with the same fields
    assert uids(chosen) == sorted(uids(chosen))
    assert {r.collection_id for r in chosen} == {"nlst"}
    check_run_state(work, (2, 4), chosen)


def test_batch_task_variables_split_the_collection_into_disjoint_covering_shards(
    tmp_path: Path, handed_to_pipeline: list[list[SeriesRef]]
) -> None:
    filters = SelectionFilters(collections=(SMALL_COLLECTION,), min_slices=50)
    whole = list(select_series(filters).refs)
    assert len(whole) > 100
    for index in range(3):
        env = {"BATCH_TASK_INDEX": str(index), "BATCH_TASK_COUNT": "3"}
        work = invoke_run(tmp_path, f"task{index}", "--collection", SMALL_COLLECTION, env=env)
        # Shard i of n: positions i, i + n, ... of the selection sorted by SeriesInstanceUID.
        assert handed_to_pipeline[-1] == whole[index::3]
        assert handed_to_pipeline[-1] == list(select_series(filters, shard=Shard(index, 3)).refs)
        check_run_state(work, (index, 3), whole[index::3])
    shards = [uids(refs) for refs in handed_to_pipeline]
    # Disjoint, and together the whole selection.
    assert sorted(uid for shard in shards for uid in shard) == uids(whole)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_limit_applies_to_the_shard_and_shard_option_overrides_batch_variables(
    tmp_path: Path, handed_to_pipeline: list[list[SeriesRef]]
) -> None:
    filters = SelectionFilters(collections=(SMALL_COLLECTION,), min_slices=50)
    shard_1_of_3 = list(select_series(filters, shard=Shard(1, 3)).refs)
    env = {"BATCH_TASK_INDEX": "0", "BATCH_TASK_COUNT": "2"}
    options = ("--collection", SMALL_COLLECTION, "--shard", "1/3", "--limit", "4")
    work = invoke_run(tmp_path, "limited", *options, env=env)
    (chosen,) = handed_to_pipeline
    # --limit N: the first N series of the shard, not a shard of the first N series.
    assert chosen == shard_1_of_3[:4]
    assert chosen == list(select_series(filters, shard=Shard(1, 3), limit=4).refs)
    check_run_state(work, (1, 3), chosen)


def test_run_with_nothing_to_select_is_a_configuration_error(
    tmp_path: Path, handed_to_pipeline: list[list[SeriesRef]]
) -> None:
    args = ["run", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "nothing to select" in result.output
    assert handed_to_pipeline == []


def test_an_unknown_layout_on_the_command_line_is_refused_before_anything_runs(
    tmp_path: Path, handed_to_pipeline: list[list[SeriesRef]]
) -> None:
    args = ["run", "--collection", SMALL_COLLECTION, "--layout", "binery"]
    args += ["--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "seg_layout must be one of" in result.output
    assert "Did you mean 'binary'?" in result.output
    assert handed_to_pipeline == []
    assert not (tmp_path / "out").exists()

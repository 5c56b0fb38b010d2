"""Helpers behind the Colab notebooks, so that the notebooks hold no logic of their own.

The quick-start notebook selects a few IDC series (or, offline, writes phantom series),
runs the pipeline on them, and shows the outputs; the cohort notebook reads a release table
and plots it (:mod:`omas_idc.publish.cohort`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

from omas_idc.series_ref import SeriesRef

__all__ = [
    "NotebookRun",
    "idc_viewer_url",
    "offline_series",
    "outputs_of",
    "run_pipeline",
    "select_idc_series",
    "slicer_instructions",
]

IDC_VIEWER = "https://viewer.imaging.datacommons.cancer.gov/v3/viewer/"


def idc_viewer_url(study_instance_uid: str, series_instance_uid: str | None = None) -> str:
    """The IDC (OHIF) viewer's address of a study, opened on one series where given.

    The viewer shows IDC's copy of the data, not the files a notebook wrote locally.
    """
    query = {"StudyInstanceUIDs": study_instance_uid}
    if series_instance_uid:
        query["SeriesInstanceUIDs"] = series_instance_uid
    return f"{IDC_VIEWER}?{urlencode(query)}"


def slicer_instructions(folder: str | Path) -> str:
    """How to look at a series' SEG and SR in 3D Slicer (Markdown)."""
    return (
        f"1. Install 3D Slicer and its **QuantitativeReporting** extension (it brings dcmqi).\n"
        f"2. Download `{folder}` (the SEG, SR and source DICOM) to your computer.\n"
        "3. In Slicer: *Add DICOM Data* -> *Import* the source series folder and the SEG/SR "
        "files, then *Load* the SEG: the segments appear with their SNOMED-coded names and "
        "colours over the CT.\n"
        "4. The SR (TID 1500) opens in QuantitativeReporting with each segment's volume and "
        "HU statistics."
    )


def select_idc_series(
    collection: str, limit: int = 2, min_slices: int = 50, per_study: str = "one"
) -> list[SeriesRef]:
    """A few CT series of an IDC collection, from idc-index's offline index."""
    from omas_idc.select import SelectionFilters, select_series

    selection = select_series(
        SelectionFilters(collections=(collection,), min_slices=min_slices),
        per_study=per_study,
        limit=limit,
    )
    return list(selection.refs)


def offline_series(
    folder: str | Path, count: int = 1, seed: int = 7
) -> list[tuple[SeriesRef, Path]]:
    """Phantom CT series written into ``folder``, as (reference, local folder) pairs."""
    from omas_idc.phantom import PhantomOptions, make_phantom

    pairs = []
    for i in range(count):
        target = Path(folder) / f"phantom-{seed + i}"
        phantom = make_phantom(
            target,
            # The demo model's own 6 mm grid: it was trained on phantoms of this spacing.
            PhantomOptions(
                seed=seed + i, shape=(64, 48, 64), pixel_spacing=(6.0, 6.0), slice_spacing=6.0
            ),
        )
        ref = SeriesRef(
            series_instance_uid=phantom.series_instance_uid,
            study_instance_uid=phantom.study_instance_uid,
            patient_id=f"PHANTOM-{seed + i}",
            collection_id="omas-demo",
            modality="CT",
            crdc_series_uuid="local",
            instance_count=len(phantom.files),
            size_bytes=sum(p.stat().st_size for p in phantom.files),
            aws_bucket="local",
            idc_version=0,
        )
        pairs.append((ref, target))
    return pairs


@dataclass(frozen=True)
class NotebookRun:
    """The outcome of :func:`run_pipeline`."""

    out: Path
    refs: tuple[SeriesRef, ...]
    report: Path
    release_table: Path
    done: int
    failed: int


def run_pipeline(
    refs: Sequence[SeriesRef],
    out: str | Path,
    *,
    model: str = "demo",
    device: str = "auto",
    local_series: dict[str, Path] | None = None,
    endpoint_url: str | None = None,
    timestamp: datetime | None = None,
) -> NotebookRun:
    """Run the whole pipeline on ``refs``; outputs below ``out``."""
    from omas_idc.run.config import RunConfig
    from omas_idc.run.engine_setup import build_engine
    from omas_idc.run.runner import RunRequest, execute_run, release_table_name

    out = Path(out)
    config = RunConfig(name="omas-idc-notebook").with_overrides(
        model={"name": model, "device": device}, output={"delete_downloads": False}
    )
    engine, info = build_engine(config.model)
    request = RunRequest(
        config=config,
        out=str(out),
        work_dir=out / ".omas-idc-work",
        endpoint_url=endpoint_url,
        timestamp=timestamp,
        local_series=dict(local_series or {}),
    )
    try:
        result = execute_run(request, engine, info, refs=list(refs))
    finally:
        engine.close()
    return NotebookRun(
        out=out,
        refs=tuple(refs),
        report=result.report_path,
        release_table=out / release_table_name(request.shard),
        done=result.summary.done,
        failed=result.summary.failed,
    )


def outputs_of(run: NotebookRun, ref: SeriesRef) -> dict[str, Path]:
    """The files written for one series (SEGs, SR, table, previews), by name."""
    from omas_idc.publish.layout import series_prefix

    folder = run.out / series_prefix(ref)
    return {p.name: p for p in sorted(folder.iterdir())} if folder.is_dir() else {}

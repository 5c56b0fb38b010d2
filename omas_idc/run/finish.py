"""The end of one series' path: encode SEGs, QA, SR, release rows and previews, into a folder.

:func:`finish_series` writes every output of a series into a local staging folder; the run
then publishes the folder's files and the ``DONE.json`` marker last (:mod:`omas_idc.run.store`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omas_idc.catalog.model import Catalog
from omas_idc.encode import Provenance, encode_binary, encode_labelmaps, write_dataset
from omas_idc.encode.sr import encode_sr, segment_references
from omas_idc.errors import EncodingError
from omas_idc.labelmap import TaskLabelMap
from omas_idc.publish import release_rows, write_previews, write_release_table
from omas_idc.qa import MINIMUM_VOLUME_ML, assess_series
from omas_idc.qa.records import SeriesQA
from omas_idc.volume import CTVolume

__all__ = ["SeriesOutputs", "finish_series"]


@dataclass(frozen=True)
class SeriesOutputs:
    """What :func:`finish_series` wrote: file name -> path, and the QA verdict."""

    files: dict[str, Path]
    qa: SeriesQA


def finish_series(
    volume: CTVolume,
    labelmaps: Sequence[TaskLabelMap],
    catalog: Catalog,
    provenance: Provenance,
    staging: Path,
    *,
    seg_layout: str = "labelmap",
    task_order: Sequence[str] | None = None,
    previews: bool = True,
    header: dict[str, str] | None = None,
    min_volume_ml: float = MINIMUM_VOLUME_ML,
) -> SeriesOutputs:
    """Write the SEG(s), the SR, the release rows (``qa.parquet``) and previews of one series.

    Raises
    ------
    EncodingError
        If no structure was found at all (nothing to encode), or a writer refuses.
    QAError
        If the QA stage cannot measure the label maps.
    """
    staging.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    if seg_layout == "binary":
        binary = encode_binary(volume, labelmaps, catalog, provenance)
        encoded = [binary] if binary is not None else []
    else:
        encoded = encode_labelmaps(volume, labelmaps, catalog, provenance, task_order=task_order)
    if not encoded:
        raise EncodingError(
            "the model found no structure in this series, so there is no SEG to write; "
            "check that the series is a CT of the body",
            series_instance_uid=volume.series_instance_uid,
            reason="empty-segmentation",
        )
    segs = []
    for item in encoded:
        name = "seg_binary.dcm" if item.layout == "binary" else f"seg_{item.tasks[0]}.dcm"
        files[name] = write_dataset(item.dataset, staging / name)
        segs.append(item.dataset)
    qa = assess_series(volume, labelmaps, catalog, min_volume_ml=min_volume_ml)
    sr = encode_sr(volume, qa, segs, catalog, provenance)
    files["sr.dcm"] = write_dataset(sr, staging / "sr.dcm")
    rows = release_rows(
        qa,
        header=header
        or {
            "study_instance_uid": volume.header.study_instance_uid,
            "patient_id": volume.header.patient_id,
        },
        references=segment_references(segs, catalog, volume.series_instance_uid),
        sr=sr,
    )
    files["qa.parquet"] = write_release_table(rows, staging / "qa.parquet")
    if previews:
        for path in write_previews(volume, labelmaps, catalog, staging):
            files[path.name] = path
    return SeriesOutputs(files=files, qa=qa)

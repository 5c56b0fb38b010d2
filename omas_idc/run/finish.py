"""The end of one series' path, as three timed steps: encode, qa, publish's side files.

Each step writes its files into a local staging folder and returns them as
:class:`~omas_idc.publish.store.SeriesOutput` items; the run then hands them to the output
store, the ``DONE.json`` marker last (:func:`omas_idc.publish.store.publish_series`).

The SEG encoder's segment table (structure -> SEG and segment number) feeds the SR and the
release rows directly: no SEG is parsed back to find its segments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from omas_idc.catalog.model import Catalog
from omas_idc.encode import (
    EncodedSeg,
    Provenance,
    SegLayout,
    encode_binary,
    encode_labelmaps,
    write_dataset,
)
from omas_idc.errors import EncodingError
from omas_idc.labelmap import TaskLabelMap
from omas_idc.publish import release_rows, write_previews, write_release_table
from omas_idc.publish.store import OutputKind, SeriesOutput
from omas_idc.qa import MINIMUM_VOLUME_ML, assess_series
from omas_idc.qa.records import SeriesQA
from omas_idc.qa.sr import encode_sr
from omas_idc.volume import CTVolume

__all__ = [
    "EncodedSeries",
    "QAOutputs",
    "encode_step",
    "preview_step",
    "qa_step",
    "segment_table",
]


@dataclass(frozen=True)
class EncodedSeries:
    """The SEGs of a series: what the encoder made and the files written."""

    segs: tuple[EncodedSeg, ...]
    outputs: tuple[SeriesOutput, ...]


@dataclass(frozen=True)
class QAOutputs:
    """The QA verdict of a series, and its SR and release rows as files."""

    qa: SeriesQA
    outputs: tuple[SeriesOutput, ...]


def segment_table(
    segs: Sequence[EncodedSeg],
) -> dict[str, tuple[Dataset, int]]:
    """Structure name -> (SEG dataset, segment number), from the encoder's own tables.

    Where several SEGs hold the same structure the first wins.
    """
    table: dict[str, tuple[Dataset, int]] = {}
    for item in segs:
        for number, structure in sorted(item.segments.items()):
            table.setdefault(structure.name, (item.dataset, int(number)))
    return table


def encode_step(
    volume: CTVolume,
    labelmaps: Sequence[TaskLabelMap],
    catalog: Catalog,
    provenance: Provenance,
    staging: Path,
    *,
    seg_layout: SegLayout | str = SegLayout.LABELMAP,
    task_order: Sequence[str] | None = None,
) -> EncodedSeries:
    """Encode and write the SEG(s) of one series.

    Raises
    ------
    EncodingError
        If no structure was found at all (nothing to encode), or the writer refuses.
    """
    layout = SegLayout.parse(seg_layout, "SEG layout")
    staging.mkdir(parents=True, exist_ok=True)
    if layout is SegLayout.BINARY:
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
    outputs = []
    for item in encoded:
        name = "seg_binary.dcm" if item.layout is SegLayout.BINARY else f"seg_{item.tasks[0]}.dcm"
        path = write_dataset(item.dataset, staging / name)
        outputs.append(SeriesOutput(name, path, OutputKind.DICOM))
    return EncodedSeries(tuple(encoded), tuple(outputs))


def qa_step(
    volume: CTVolume,
    labelmaps: Sequence[TaskLabelMap],
    encoded: EncodedSeries,
    catalog: Catalog,
    provenance: Provenance,
    staging: Path,
    *,
    header: dict[str, str] | None = None,
    min_volume_ml: float = MINIMUM_VOLUME_ML,
) -> QAOutputs:
    """Measure the label maps, write the TID 1500 SR and the release rows (``qa.parquet``).

    Raises
    ------
    QAError
        If the label maps cannot be measured.
    EncodingError
        If the SR cannot be written.
    """
    qa = assess_series(volume, labelmaps, catalog, min_volume_ml=min_volume_ml)
    segs = [item.dataset for item in encoded.segs]
    references = segment_table(encoded.segs)
    sr = encode_sr(volume, qa, segs, catalog, provenance, references=references)
    sr_path = write_dataset(sr, staging / "sr.dcm")
    rows = release_rows(
        qa,
        header=header
        or {
            "study_instance_uid": volume.header.study_instance_uid,
            "patient_id": volume.header.patient_id,
        },
        references=references,
        sr=sr,
    )
    table = write_release_table(rows, staging / "qa.parquet")
    return QAOutputs(
        qa,
        (
            SeriesOutput("sr.dcm", sr_path, OutputKind.DICOM),
            SeriesOutput("qa.parquet", table, OutputKind.SIDE),
        ),
    )


def preview_step(
    volume: CTVolume, labelmaps: Sequence[TaskLabelMap], catalog: Catalog, staging: Path
) -> tuple[SeriesOutput, ...]:
    """The preview PNGs of one series."""
    return tuple(
        SeriesOutput(path.name, path, OutputKind.SIDE)
        for path in write_previews(volume, labelmaps, catalog, staging)
    )

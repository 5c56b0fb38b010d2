"""``omas-idc encode``: a label-map NIfTI on a DICOM series -> DICOM SEG."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from omas_idc.cli.options import checked_layout, checked_timestamp, model_family_name

console = Console()
err_console = Console(stderr=True)


def encode(
    series_dir: Path = typer.Argument(..., help="Folder with the source DICOM series."),
    labels: Path = typer.Argument(..., help="Label map (NIfTI) on the series' grid."),
    out: Path = typer.Option(..., "--out", help="Folder for the SEG file(s)."),
    model: str = typer.Option("cads", help="Model whose label numbers the map uses."),
    task: str = typer.Option(..., help="Task of the label map (551..559 for cads, total)."),
    layout: str = typer.Option("labelmap", help="labelmap (one SEG per task) or binary."),
    series_uid: str | None = typer.Option(None, help="Series to use if the folder has several."),
    model_version: str = typer.Option("unknown", help="Model or annotation version."),
    algorithm_type: str = typer.Option(
        "AUTOMATIC", help="AUTOMATIC, SEMIAUTOMATIC or MANUAL (released annotations)."
    ),
    timestamp: str | None = typer.Option(
        None, help="Content date/time (ISO 8601); fixes it for byte-identical re-runs."
    ),
) -> None:
    """Encode an existing label map (e.g. a model's or an annotator's NIfTI) as DICOM SEG.

    The label map must lie on the series' grid up to axis order, flips and cropping; a map that
    would need resampling is refused.
    """
    import numpy as np

    from omas_idc.catalog import load_catalog
    from omas_idc.encode import Provenance, encode_binary, encode_labelmaps, write_dataset
    from omas_idc.errors import EncodingError
    from omas_idc.gridmatch import GridMismatch, map_onto_grid
    from omas_idc.labelmap import TaskLabelMap
    from omas_idc.nifti import read_nifti
    from omas_idc.read import read_series_headers

    checked_layout(layout)
    when = checked_timestamp(timestamp)
    # Errors (an unreadable series or label map, an unknown model or task) are reported by
    # omas_idc.cli.errors: one classified line, exit 2.
    # Encoding needs the grid and the source headers, not the HU values: pixels stay unread.
    volume = read_series_headers(series_dir, series_instance_uid=series_uid)
    catalog = load_catalog()
    model = model_family_name(model)
    structures = catalog.labels_for(model, task)
    try:
        array, affine = read_nifti(labels)
    except ValueError as err:
        raise EncodingError(
            f"cannot read the label map: {err}",
            series_instance_uid=volume.series_instance_uid,
            reason="unreadable-labels",
        ) from err
    try:
        on_grid = map_onto_grid(array, affine, volume.geometry)
    except GridMismatch as err:
        raise typer.BadParameter(
            f"{labels} does not lie on the grid of series {volume.series_instance_uid} "
            f"({err.reason}): {err}. Resample it onto the DICOM grid first."
        ) from err
    values = {int(v) for v in np.unique(on_grid) if v}
    unknown = sorted(values - set(structures))
    if unknown:
        raise typer.BadParameter(
            f"{labels} holds labels {unknown} that {model} task {task} does not define"
        )
    dtype = "uint16" if max(values, default=0) > 255 else "uint8"
    labelmap = TaskLabelMap(
        model=model,
        task=str(task),
        array=on_grid.astype(dtype),
        labels={v: structures[v].name for v in sorted(values)},
        model_version=model_version,
    )
    provenance = Provenance(
        model=model,
        model_version=model_version,
        timestamp=when,
        algorithm_type=algorithm_type.upper(),
    )
    if layout == "labelmap":
        encoded = encode_labelmaps(volume, [labelmap], catalog, provenance)
    else:
        binary = encode_binary(volume, [labelmap], catalog, provenance)
        encoded = [binary] if binary is not None else []
    if not encoded:
        err_console.print("no structure is present in the label map: no SEG written")
        raise typer.Exit(code=1)
    for item in encoded:
        name = f"seg_{model}_{'_'.join(item.tasks)}_{item.layout}.dcm"
        path = write_dataset(item.dataset, out / name)
        console.print(
            f"{path}: {len(item.segments)} segments ({item.layout})", markup=False, highlight=False
        )


def register(app: typer.Typer) -> None:
    """Add the ``encode`` command to ``app``."""
    app.command("encode")(encode)

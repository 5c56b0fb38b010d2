"""``omas-idc phantom``: write a synthetic CT series with a known label map."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def _parse_triple(text: str, name: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise typer.BadParameter(f"{name} must look like SLICESxROWSxCOLUMNS, e.g. 80x100x120")
    return parts[0], parts[1], parts[2]


def phantom(
    out_dir: Path = typer.Argument(..., help="Folder to write the DICOM files into."),
    seed: int = typer.Option(0, help="Varies sizes, positions, shapes, HU values and noise."),
    size: str = typer.Option("80x100x120", help="SLICESxROWSxCOLUMNS."),
    pixel_spacing: tuple[float, float] = typer.Option((3.0, 3.2), help="Row and column mm."),
    slice_spacing: float = typer.Option(5.0, help="Table increment between slices (mm)."),
    slice_thickness: float | None = typer.Option(None, help="Defaults to the slice spacing."),
    orientation: str = typer.Option("axial", help="axial, coronal or sagittal."),
    patient_position: str = typer.Option("HFS", help="HFS, FFS, HFP or FFP."),
    flip_rows: bool = typer.Option(False, help="Reverse the image's column direction."),
    flip_columns: bool = typer.Option(False, help="Reverse the image's row direction."),
    oblique: float = typer.Option(0.0, help="Oblique rotation of the image plane (degrees)."),
    tilt: float = typer.Option(0.0, help="Gantry tilt (degrees, axial only)."),
    missing_slice: int | None = typer.Option(None, help="Leave this slice out of the files."),
    duplicate_slice: int | None = typer.Option(None, help="Write this slice twice."),
    localizer: bool = typer.Option(False, help="Add a LOCALIZER image to the series."),
    shuffle_names: bool = typer.Option(False, help="Name files by hash, not by number."),
    transfer_syntax: str = typer.Option(
        "explicit", help="explicit, implicit, jpeg2000, rle or jpegls."
    ),
    pixel_representation: int = typer.Option(1, help="1 signed, 0 unsigned."),
    rescale_slope: float = typer.Option(1.0),
    rescale_intercept: float = typer.Option(-1024.0),
    labels_nifti: Path | None = typer.Option(None, help="Also save the true label map here."),
) -> None:
    """Write a synthetic CT phantom series whose true label map is known, and summarise it."""
    from omas_idc.phantom import PhantomOptions, make_phantom

    try:
        options = PhantomOptions(
            seed=seed,
            shape=_parse_triple(size, "--size"),
            pixel_spacing=pixel_spacing,
            slice_spacing=slice_spacing,
            slice_thickness=slice_thickness,
            orientation=orientation,
            patient_position=patient_position,
            flip_rows=flip_rows,
            flip_columns=flip_columns,
            oblique_degrees=oblique,
            gantry_tilt_degrees=tilt,
            missing_slice=missing_slice,
            duplicate_slice=duplicate_slice,
            localizer=localizer,
            shuffle_names=shuffle_names,
            transfer_syntax=transfer_syntax,
            pixel_representation=pixel_representation,
            rescale_slope=rescale_slope,
            rescale_intercept=rescale_intercept,
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    result = make_phantom(out_dir, options)
    geometry = result.geometry
    console.print(f"[bold]Phantom series[/bold] {result.series_instance_uid}")
    console.print(
        f"{len(result.files)} files in {out_dir}; grid {geometry.shape} (slices, rows, columns), "
        f"spacing {tuple(round(v, 3) for v in geometry.spacing)} mm, "
        f"orientation {geometry.orientation_code()}, tilt {geometry.tilt_degrees:.1f} deg, "
        f"{options.transfer_syntax_uid.name}",
        markup=False,  # the folder is the user's text
    )
    table = Table(title="Ground truth")
    for column in ("label", "structure", "volume (mL)", "centroid LPS (mm)", "HU"):
        table.add_column(column, justify="right" if column != "structure" else "left")
    for s in result.structures:
        volume = "-" if s.volume_ml is None else f"{s.volume_ml:.1f}"
        centroid = ", ".join(f"{v:.1f}" for v in s.centroid_lps)
        table.add_row(str(s.label), s.name, volume, centroid, f"{s.hu:.0f}")
    console.print(table)
    if labels_nifti is not None:
        result.save_labels_nifti(labels_nifti)
        console.print(f"label map written to {labels_nifti}", markup=False)


def register(app: typer.Typer) -> None:
    """Add the ``phantom`` command to ``app``."""
    app.command("phantom")(phantom)

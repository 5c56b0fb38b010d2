"""``omas-idc read``: read a DICOM CT series and summarise it."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``read`` command to ``app``."""

    @app.command("read")
    def read(
        series_dir: Path = typer.Argument(
            ..., exists=True, help="Folder (or file) holding the DICOM series."
        ),
        series_uid: str | None = typer.Option(
            None, "--series-uid", help="SeriesInstanceUID to read where the folder holds several."
        ),
        nifti: Path | None = typer.Option(
            None, "--nifti", help="Also write the volume as NIfTI (e.g. OUT.nii.gz)."
        ),
        no_tilt: bool = typer.Option(
            False, "--no-tilt", help="Refuse gantry-tilted series instead of carrying the tilt."
        ),
        workers: int | None = typer.Option(None, "--workers", help="Decoding threads."),
    ) -> None:
        """Read a CT series into a volume; print size, spacing, orientation, tilt, warnings."""
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        from omas_idc.read import read_series

        console = Console()
        # A refusal (OmasIdcError naming the series and the file) is reported by the app's one
        # error mechanism (omas_idc.cli.errors): one line, verbatim, exit 2.
        volume = read_series(
            series_dir,
            series_instance_uid=series_uid,
            allow_tilt=not no_tilt,
            workers=workers,
        )
        g = volume.geometry
        table = Table(title="CT series", show_header=False)
        table.add_column("field", no_wrap=True)
        table.add_column("value", overflow="fold")
        table.add_row("series", Text(volume.series_instance_uid or "(empty SeriesInstanceUID)"))
        table.add_row("description", Text(volume.header.series_description))
        table.add_row("size (x, y, z)", f"{g.shape[2]} x {g.shape[1]} x {g.shape[0]}")
        sz, sy, sx = g.spacing
        table.add_row("spacing (x, y, z) mm", f"{sx:.4g} x {sy:.4g} x {sz:.4g}")
        table.add_row("orientation", f"{g.orientation_code()} (IOP {list(g.orientation)})")
        table.add_row("gantry tilt", f"{g.tilt_degrees:.2f} deg" + (" (sheared)" * g.is_sheared))
        table.add_row("HU range", f"{int(volume.hu.min())} .. {int(volume.hu.max())}")
        sop = volume.source_refs[0]
        frames = " (multi-frame)" if sop.frame_number is not None else ""
        table.add_row("source", f"{len(set(volume.files))} file(s){frames}")
        console.print(table)
        for warning in volume.warnings:
            console.print(Text("warning", style="yellow") + Text(f": {warning}"), highlight=False)
        if nifti is not None:
            import nibabel as nib

            from omas_idc.nifti import volume_to_nifti

            nib.save(volume_to_nifti(volume), str(nifti))
            console.print(f"wrote {nifti}")

"""``omas-idc qa``: measure and check the segments of a series, write SR, table and previews."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``qa`` command to ``app``."""

    @app.command("qa")
    def qa(
        series_dir: Path = typer.Argument(..., exists=True, help="The source CT series folder."),
        segs: list[Path] = typer.Argument(
            ..., exists=True, help="The series' SEG files (all task SEGs, or one binary SEG)."
        ),
        out: Path = typer.Option(..., "--out", help="Output folder."),
        model: str | None = typer.Option(
            None, "--model", help="Model of the SEGs (default: their algorithm name)."
        ),
        previews: bool = typer.Option(True, "--previews/--no-previews", help="Write PNGs."),
    ) -> None:
        """Write sr.dcm (TID 1500), qa.parquet (release table) and preview PNGs into OUT."""
        from rich.console import Console
        from rich.table import Table

        from omas_idc.catalog import load_catalog
        from omas_idc.cli.options import model_family_name
        from omas_idc.encode import Provenance, write_dataset
        from omas_idc.encode.segread import (
            labelmaps_from_segs,
            read_seg,
            seg_algorithm,
            seg_timestamp,
            segment_references,
        )
        from omas_idc.publish import release_rows, write_previews, write_release_table
        from omas_idc.qa import Status, assess_series
        from omas_idc.qa.sr import encode_sr
        from omas_idc.read import read_series

        console = Console()
        # Errors (a file that is not a SEG of this series, a series that cannot be read) are
        # reported by omas_idc.cli.errors: one classified line, exit 2.
        catalog = load_catalog()
        if model is not None:
            model = model_family_name(model)
        volume = read_series(series_dir)
        datasets = [read_seg(path) for path in segs]
        labelmaps = labelmaps_from_segs(volume, datasets, catalog, model)
        result = assess_series(volume, labelmaps, catalog)
        name, version, parameters = seg_algorithm(datasets[0])
        provenance = Provenance(
            model=model or name,
            model_version=version,
            timestamp=seg_timestamp(datasets[0]),
            weights_variant=parameters.get("weights_variant", ""),
            weights_licence=parameters.get("weights_licence", ""),
        )
        sr = encode_sr(volume, result, datasets, catalog, provenance)
        write_dataset(sr, out / "sr.dcm")
        rows = release_rows(
            result,
            header={
                "study_instance_uid": volume.header.study_instance_uid,
                "patient_id": volume.header.patient_id,
            },
            references=segment_references(datasets, catalog, volume.series_instance_uid),
            sr=sr,
        )
        write_release_table(rows, out / "qa.parquet")
        if previews:
            write_previews(volume, labelmaps, catalog, out)
        table = Table(title=f"QA of {volume.series_instance_uid}: {result.verdict.value}")
        for column in ("structure", "status", "volume mL", "HU mean", "verdict", "reasons"):
            table.add_column(column)
        for record in result.records:
            if record.status is Status.ABSENT and not record.reasons:
                continue
            metrics = record.metrics
            table.add_row(
                record.name,
                record.status.value,
                f"{metrics.volume_ml:.1f}" if metrics else "",
                f"{metrics.hu.mean:.0f}" if metrics else "",
                record.verdict.value,
                ", ".join(record.reasons),
            )
        console.print(table)
        console.print(f"wrote {out / 'sr.dcm'}, {out / 'qa.parquet'}")

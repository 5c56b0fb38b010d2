"""``omas-idc segment``: one series through a model -> one NIfTI label map per task."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from omas_idc.engine.model import SegmentationModel
    from omas_idc.engine.speed import SpeedSettings
    from omas_idc.labelmap import TaskLabelMap
    from omas_idc.volume import CTVolume


def segment(
    series_dir: Path = typer.Argument(..., exists=True, help="Folder holding the DICOM series."),
    model: str = typer.Option(
        "cads",
        "--model",
        help="cads, totalseg, demo, a model card .json or family folder, or an nnU-Net result "
        "folder.",
    ),
    out: Path = typer.Option(..., "--out", help="Folder for the label maps."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or mps."),
    tasks: list[str] | None = typer.Option(
        None, "--tasks", help="Task ids to run (repeat); dependencies are added. Default: all."
    ),
    variant: str | None = typer.Option(None, "--variant", help="Licence variant of the weights."),
    weights_dir: Path | None = typer.Option(
        None, "--weights-dir", help="Weights cache (default: the user cache folder)."
    ),
    structures: list[str] | None = typer.Option(
        None,
        "--structures",
        help="Only these structures (catalog names, comma-separated or repeated): only the tasks "
        "that label them run (and their dependencies); other labels are 0 in the outputs, as "
        "TotalSegmentator's --roi_subset.",
    ),
    speed: str = typer.Option(
        "reference",
        "--speed",
        help="reference: the card's settings (its tool's pipeline); quick: body crop, tile step "
        "0.75 and labels resampled instead of logits (changes the labels; faster on CPU). Not "
        "TotalSegmentator's --fast, which is --model totalseg-3mm.",
    ),
    body_crop: bool | None = typer.Option(
        None,
        "--body-crop/--no-body-crop",
        help="Run the sliding window only inside the body's bounding box (default: --speed's).",
    ),
    tile_step_size: float | None = typer.Option(
        None,
        "--tile-step",
        help="Tile step as a fraction of the patch (default: --speed's; reference: the card's, "
        "0.8 for TotalSegmentator, 0.5 for CADS).",
    ),
    resample: str | None = typer.Option(
        None,
        "--resample",
        help="What goes back to the source grid: logits (nnU-Net's way) or labels (nearest "
        "neighbour; faster, coarser borders). Default: --speed's.",
    ),
    wrapper_grid: str | None = typer.Option(
        None,
        "--wrapper-grid",
        help="CADS/TotalSegmentator cards: reference (the tool's own scipy zoom to 1.5 mm and "
        "back, on the CPU) or centred (omas-idc's resampling at voxel centres on the compute "
        "device; bounded memory, moves border voxels). Default: --speed's.",
    ),
    fast: bool = typer.Option(False, "--fast", hidden=True, help="Retired: see --speed."),
    batch_size: int = typer.Option(2, "--batch-size", help="Tiles per forward pass."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for torch."),
    series_uid: str | None = typer.Option(
        None, "--series-uid", help="SeriesInstanceUID where the folder holds several."
    ),
    seg: bool = typer.Option(
        False, "--seg", help="Also write one LABELMAP DICOM SEG per task (catalogued labels only)."
    ),
    postprocessing: bool = typer.Option(
        True,
        "--postprocessing/--no-postprocessing",
        help="The recipe's post-processing (CADS's clean-up rules, a card's largest-component "
        "rule); --no-postprocessing keeps the networks' labels, as CADS's own option.",
    ),
) -> None:
    """Segment a CT series; write ``{model}_{task}.nii.gz`` per task and ``labels.json``.

    The model is a built-in name (weights from the cache, see ``omas-idc models download``; the
    packaged ``demo`` model's folders ship with omas-idc), a model card ``.json`` or a family
    folder holding ``card.json`` (label table and result folders beside it), or one nnU-Net
    result folder.

    The label maps lie on the series' own grid (NIfTI written by omas-idc, no reorientation).
    ``--speed reference`` (the default) runs the card's settings, its tool's pipeline;
    ``--speed quick`` and ``--body-crop``, ``--tile-step``, ``--resample labels`` trade accuracy
    for time (:mod:`omas_idc.engine.speed`).
    """
    from rich.console import Console

    from omas_idc.cli.errors import fail
    from omas_idc.engine.model import load_model
    from omas_idc.engine.segmenter import Segmenter, SegmenterConfig
    from omas_idc.engine.speed import fast_option_error, speed_settings
    from omas_idc.engine.structures import parse_structures
    from omas_idc.errors import OmasIdcError
    from omas_idc.nifti import write_nifti
    from omas_idc.read import read_series

    console = Console(highlight=False)
    err_console = Console(stderr=True, highlight=False)
    try:
        if fast:
            raise fast_option_error()
        chosen = speed_settings(
            speed,
            body_crop=body_crop,
            tile_step_size=tile_step_size,
            resample=resample,
            wrapper_grid=wrapper_grid,
        )
        config = SegmenterConfig(
            device=device,
            batch_size=batch_size,
            tile_step_size=chosen.tile_step_size,
            threads=threads,
            body_crop=chosen.body_crop,
            resample_logits=chosen.resample_logits,
            wrapper_grid=chosen.wrapper_grid.value,
            postprocessing=postprocessing,
        )
        # the model (and the structures asked for) first: an option's error before any reading
        loaded = load_model(
            model,
            weights_dir=weights_dir if weights_dir is not None else _default_root(model),
            variant=variant,
            tasks=tasks or None,
            device=device,
            structures=parse_structures(structures) or None,
        )
        volume = read_series(series_dir, series_instance_uid=series_uid)
        with Segmenter(loaded, config) as segmenter:
            labelmaps = segmenter.segment(volume)
        out.mkdir(parents=True, exist_ok=True)
        summary = {}
        for labelmap in labelmaps:
            name = loaded.card.name
            stem = name if labelmap.task == name else f"{name}_{labelmap.task}"
            path = out / f"{stem}.nii.gz"
            write_nifti(path, labelmap.array, volume.geometry)
            present = labelmap.present_labels()
            summary[labelmap.task] = {
                "file": path.name,
                "labels": {str(k): v for k, v in sorted(labelmap.labels.items())},
                "present": present,
            }
            console.print(
                f"{path}: {len(present)} of {len(labelmap.labels)} labels present",
                markup=False,
                highlight=False,
            )
        document = {
            "series_instance_uid": volume.series_instance_uid,
            "model": loaded.card.name,
            "model_version": _algorithm_version(loaded, chosen, postprocessing),
            "variant": loaded.variant,
            "postprocessing": postprocessing,
            "speed": chosen.describe(),
            "structures": list(parse_structures(structures)) or None,
            "tasks": summary,
        }
        (out / "labels.json").write_text(json.dumps(document, indent=1))
        if seg:
            version = _algorithm_version(loaded, chosen, postprocessing)
            _write_segs(volume, labelmaps, loaded, out, console, version)
    except OmasIdcError as err:
        raise fail(err, err_console) from err


def _algorithm_version(
    loaded: SegmentationModel, chosen: SpeedSettings, postprocessing: bool
) -> str:
    """The card's version, the reference it reproduces and what the settings change."""
    return loaded.card.algorithm_version(chosen.short(postprocessing))


def _default_root(model: str) -> Path | None:
    """The weights cache for built-in cards with downloaded weights; ``None`` for folders, card
    files and packaged models (their result folders lie beside their card)."""
    from omas_idc.engine.card import load_card
    from omas_idc.engine.weights import default_cache_dir

    if Path(model).exists():
        return None
    return default_cache_dir() if load_card(model).source is None else None


def _write_segs(
    volume: CTVolume,
    labelmaps: list[TaskLabelMap],
    loaded: SegmentationModel,
    out: Path,
    console: Console,
    version: str,
) -> None:
    """One LABELMAP SEG per task whose labels the catalog maps (others are reported)."""
    from omas_idc.catalog import load_catalog
    from omas_idc.encode import Provenance, encode_labelmaps, write_dataset

    card = loaded.card
    catalog = load_catalog().with_labels(card.labels)
    provenance = Provenance(
        model=card.name,
        model_version=version,
        timestamp=datetime.now(),
        weights_variant=loaded.variant,
        weights_licence=card.variants.get(loaded.variant, ""),
    )
    encoded = encode_labelmaps(
        volume, labelmaps, catalog, provenance, task_order=[t.id for t in card.tasks]
    )
    for item in encoded:
        tasks = "_".join(t for t in item.tasks if t != card.name)
        path = write_dataset(item.dataset, out / f"seg_{card.name}{'_' * bool(tasks)}{tasks}.dcm")
        console.print(f"{path}: {len(item.segments)} segments", markup=False)


def register(app: typer.Typer) -> None:
    """Add the ``segment`` command to ``app``."""
    app.command("segment")(segment)

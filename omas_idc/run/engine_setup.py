"""Build the segmentation engine a run asks for (imports torch through omas_idc.engine)."""

from __future__ import annotations

import os
from pathlib import Path

from omas_idc.catalog.model import Catalog
from omas_idc.run.config import ModelSettings
from omas_idc.run.pipeline import ModelInfo

__all__ = ["build_engine", "cpu_engine_threads", "model_catalog", "resolve_device"]


def _model_ref(name: str) -> str | Path:
    """A path where ``name`` is an existing file or folder, else a built-in card's name."""
    return Path(name) if Path(name).exists() else name


def model_catalog(settings: ModelSettings) -> Catalog:
    """The catalog a run of ``settings``' model uses: the shipped catalog plus the family's rows.

    A built-in family's rows are in the shipped catalog already; a user's family (a card file
    or a family folder) brings its label table, which joins a new catalog for this run only.
    A bare nnU-Net result folder has no label table: its labels are catalog structure names.

    Raises
    ------
    CatalogError
        If the family's label rows name unknown structures, repeat a label, or reuse the name
        of a family the catalog maps.
    """
    from omas_idc.catalog import load_catalog
    from omas_idc.engine.card import load_card

    ref = _model_ref(settings.name)
    catalog = load_catalog()
    if isinstance(ref, Path) and (ref / "plans.json").is_file():
        return catalog
    return catalog.with_labels(load_card(ref).labels)


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` where a GPU is present, else ``"mps"`` or ``"cpu"``."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def cpu_engine_threads(cpus: int) -> int:
    """torch's threads for a run on the CPU with ``cpus`` cores.

    The pipeline's other stages (fetch, read, encode/QA) need a core too, and torch's OpenMP
    threads spin while waiting, starving them if torch takes every core: one core is left to
    them where there are at least 4. On 2 cores, halving the engine costs more than the
    overlap gains (benchmarks/pipeline.py on 2 cores: pipelined x0.90-0.96 the sequential rate
    with torch on 1 core, x0.98-1.04 with torch on both; RESULTS.md "pipeline").
    """
    return cpus - 1 if cpus >= 4 else max(1, cpus)


def build_engine(settings: ModelSettings):  # type: ignore[no-untyped-def]
    """A started ``Segmenter`` and the :class:`ModelInfo` of the outputs.

    ``settings.name`` is a built-in card's name or alias (``cads``, ``totalseg``, ``demo``), a
    card ``.json`` or family folder, or an nnU-Net result folder. The labels of its outputs
    are coded with :func:`model_catalog`'s catalog. ``settings.speed`` and its explicit
    settings choose the engine's speed settings; ``settings.structures`` the tasks loaded and
    the labels written.
    """
    from omas_idc.engine.model import load_model
    from omas_idc.engine.segmenter import Segmenter, SegmenterConfig

    device = resolve_device(settings.device)
    model = load_model(
        _model_ref(settings.name),
        weights_dir=settings.weights_dir,
        variant=settings.variant or None,
        tasks=list(settings.tasks) or None,
        device=device,
        structures=list(settings.structures) or None,
    )
    card = model.card
    speed = settings.speed_settings()
    info = ModelInfo(
        name=card.name,
        # the card's version, the reference it reproduces and what the settings change
        version=card.algorithm_version(speed.short(settings.postprocessing)),
        variant=model.variant,
        licence=str(card.variants.get(model.variant, "")) if card.variants else "",
        task_order=tuple(task.id for task in card.tasks),
        device=device,
        structures=tuple(settings.structures),
        tasks=tuple(settings.tasks),
    )
    threads = cpu_engine_threads(os.cpu_count() or 1) if device == "cpu" else None
    engine = Segmenter(
        model,
        SegmenterConfig(
            device=device,
            body_crop=speed.body_crop,
            tile_step_size=speed.tile_step_size,
            resample_logits=speed.resample_logits,
            wrapper_grid=speed.wrapper_grid.value,
            threads=threads,
            postprocessing=settings.postprocessing,
        ),
    )
    return engine, info

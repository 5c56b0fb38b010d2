"""Build the segmentation engine a run asks for (imports torch through omas_idc.engine)."""

from __future__ import annotations

import os
from pathlib import Path

from omas_idc.run.config import ModelSettings
from omas_idc.run.pipeline import ModelInfo

__all__ = ["DEMO_MODEL_CARD", "build_engine", "cpu_engine_threads", "resolve_device"]

#: The packaged demo model (trained on phantoms by ``python -m omas_idc.train.demo``).
DEMO_MODEL_CARD = Path(__file__).resolve().parents[1] / "models" / "demo" / "card.json"


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

    ``settings.name`` is a card name (``cads``, ``totalseg``), ``demo`` for the packaged demo
    model, a card ``.json`` or an nnU-Net result folder.
    """
    from omas_idc.engine.model import load_model
    from omas_idc.engine.segmenter import Segmenter, SegmenterConfig

    name: str | Path = settings.name
    if settings.name == "demo":
        name = DEMO_MODEL_CARD
    elif Path(settings.name).exists():
        name = Path(settings.name)
    device = resolve_device(settings.device)
    model = load_model(
        name,
        weights_dir=settings.weights_dir,
        variant=settings.variant or None,
        tasks=list(settings.tasks) or None,
        device=device,
    )
    card = model.card
    info = ModelInfo(
        name=card.name,
        version=card.version,
        variant=model.variant,
        licence=str(card.variants.get(model.variant, "")) if card.variants else "",
        task_order=tuple(task.id for task in card.tasks),
        device=device,
    )
    threads = cpu_engine_threads(os.cpu_count() or 1) if device == "cpu" else None
    engine = Segmenter(
        model, SegmenterConfig(device=device, body_crop=settings.body_crop, threads=threads)
    )
    return engine, info

"""Build the segmentation engine a run asks for (imports torch through omas_idc.engine)."""

from __future__ import annotations

import os
from pathlib import Path

from omas_idc.run.config import ModelSettings
from omas_idc.run.pipeline import ModelInfo

__all__ = ["DEMO_MODEL_CARD", "build_engine", "resolve_device"]

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
    # On a CPU the pipeline's other stages (fetch, read, encode/QA) need a core too: torch's
    # OpenMP threads spin while waiting and starve them if torch takes every core.
    threads = max(1, (os.cpu_count() or 2) - 1) if device == "cpu" else None
    engine = Segmenter(
        model, SegmenterConfig(device=device, body_crop=settings.body_crop, threads=threads)
    )
    return engine, info

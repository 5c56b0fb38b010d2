"""``omas-idc train``: train a whole-body model from partially annotated datasets."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()


def train(
    config: Path = typer.Option(..., "--config", "-c", help="Training configuration (TOML)."),
    resume: bool = typer.Option(
        True, "--resume/--restart", help="Continue from the output's checkpoint_latest.pth."
    ),
    device: str | None = typer.Option(None, help="Override training.device (cpu, cuda)."),
    iterations: int | None = typer.Option(None, help="Override training.iterations."),
) -> None:
    """Train the configured model and export it as an nnU-Net v2 result folder + model card."""
    from dataclasses import replace

    from omas_idc.cli.errors import fail
    from omas_idc.errors import OmasIdcError
    from omas_idc.train.config import load_train_config
    from omas_idc.train.run import train as run_training

    try:
        cfg = load_train_config(config)
        training = cfg.training
        if device is not None:
            training = replace(training, device=device)
        if iterations is not None:
            training = replace(training, iterations=iterations)
        cfg = replace(cfg, training=training)
        folder = run_training(cfg, resume=resume)
    except OmasIdcError as err:
        raise fail(err) from err
    console.print(f"model written to {folder}", markup=False, highlight=False)
    console.print(f"model card: {cfg.model.output / 'card.json'}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to the app."""
    app.command("train")(train)

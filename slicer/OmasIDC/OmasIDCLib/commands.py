"""The ``omas-idc`` command lines a Slicer run is made of.

The module never re-implements a stage: it runs omas-idc's own commands (``select`` and
``fetch`` for an IDC series, ``models download`` for weights, ``segment`` for the label maps
and, on request, the SEG, ``qa`` for the TID 1500 SR and the QA table) as
``python -m omas_idc.cli ...`` with the interpreter omas-idc is installed in (Slicer's own
Python inside Slicer).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SPEED_OPTIONS",
    "SegmentOptions",
    "download_command",
    "fetch_commands",
    "omas_command",
    "qa_command",
    "segment_command",
]

#: Speed options as shown in the module, with their measured effect (benchmarks/RESULTS.md,
#: engine benchmark on 2 CPUs: Dice of the labels against nnU-Net's own predictor).
SPEED_OPTIONS: dict[str, str] = {
    "reference": "the model's own settings and pipeline (Dice 0.9998 vs nnU-Net)",
    "quick": "body crop, tile step 0.75, labels resampled (about 10x faster on CPU; "
    "Dice 0.984 vs nnU-Net)",
}


@dataclass(frozen=True)
class SegmentOptions:
    """What the user chose for one segmentation run.

    Attributes
    ----------
    model
        ``"cads"``, ``"totalseg"``, ``"demo"``, a family folder or a card ``.json``.
    tasks
        Task ids to run (their dependencies are added by omas-idc); empty for all.
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    speed
        A key of :data:`SPEED_OPTIONS`.
    variant
        Licence variant of the weights; ``None`` for the card's default.
    weights_dir
        The weights cache; ``None`` for omas-idc's default.
    threads
        CPU threads for torch; ``None`` for torch's default.
    export_seg
        Also write one LABELMAP DICOM SEG per task (omas-idc's encoder).
    """

    model: str = "cads"
    tasks: tuple[str, ...] = ()
    device: str = "cpu"
    speed: str = "reference"
    variant: str | None = None
    weights_dir: Path | None = None
    threads: int | None = None
    export_seg: bool = False

    def __post_init__(self) -> None:
        if self.speed not in SPEED_OPTIONS:
            raise ValueError(
                f"speed {self.speed!r} is not one of {', '.join(SPEED_OPTIONS)}: choose one"
            )


def omas_command(python: str | None, *args: str) -> list[str]:
    """``python -m omas_idc.cli ARGS`` with the given interpreter (this one by default)."""
    return [python or sys.executable, "-m", "omas_idc.cli", *args]


def segment_command(
    series_dir: Path, out_dir: Path, options: SegmentOptions, python: str | None = None
) -> list[str]:
    """The ``omas-idc segment`` command for a series folder and the chosen options."""
    args = ["segment", str(series_dir), "--out", str(out_dir), "--model", options.model]
    args += ["--device", options.device]
    for task in options.tasks:
        args += ["--tasks", task]
    if options.variant:
        args += ["--variant", options.variant]
    if options.weights_dir is not None:
        args += ["--weights-dir", str(options.weights_dir)]
    args += ["--speed", options.speed]
    if options.threads:
        args += ["--threads", str(options.threads)]
    if options.export_seg:
        args.append("--seg")
    return omas_command(python, *args)


def qa_command(
    series_dir: Path, segs: list[Path], out_dir: Path, python: str | None = None
) -> list[str]:
    """``omas-idc qa``: the TID 1500 SR, the QA table (qa.parquet) and previews."""
    return omas_command(
        python, "qa", str(series_dir), *(str(s) for s in segs), "--out", str(out_dir)
    )


def fetch_commands(
    series_instance_uid: str, work_dir: Path, python: str | None = None
) -> list[list[str]]:
    """Select one IDC series by its UID (offline index) and fetch it into ``work_dir/dicom``."""
    selection = work_dir / "selection.parquet"
    return [
        omas_command(
            python, "select", "--series-uid", series_instance_uid, "--out", str(selection)
        ),
        omas_command(python, "fetch", str(selection), "--out", str(work_dir / "dicom")),
    ]


def download_command(
    model: str,
    variant: str | None = None,
    tasks: tuple[str, ...] = (),
    weights_dir: Path | None = None,
    python: str | None = None,
) -> list[str]:
    """``omas-idc models download``: weights into the cache, checked against the card."""
    args = ["models", "download", model]
    if variant:
        args += ["--variant", variant]
    for task in tasks:
        args += ["--tasks", task]
    if weights_dir is not None:
        args += ["--cache-dir", str(weights_dir)]
    return omas_command(python, *args)

"""Speed settings: the card's reference settings, or named faster ones that change the labels.

A card reproduces its tool's pipeline (``--speed reference``, the default). Four settings trade
accuracy for time, each an explicit option and all four together the ``quick`` preset:

- body crop: the sliding window runs only inside the body's bounding box (HU > -500 plus
  10 mm), not over the whole volume;
- tile step: a larger step between tiles (a fraction of the patch) than the card's means fewer,
  less overlapping tiles;
- label resampling: the argmax is taken at model resolution and labels go back to the source
  grid by nearest neighbour, instead of resampling the logits first (nnU-Net's way);
- wrapper grid: CADS and TotalSegmentator resample the CT to 1.5 mm with ``scipy.ndimage.zoom``
  (corner-aligned grid, their spline order, int32 cast) on the CPU and the labels back with
  order 0; ``centred`` resamples at voxel centres slab by slab on the compute device instead
  (bounded memory, GPU), moving samples by up to half a voxel.

omas-idc's former ``--fast`` was this preset. It is not TotalSegmentator's ``--fast``, which runs
another model (3 mm, task 297): that is ``--model totalseg-3mm`` (``--fastest``: 6 mm, task 298,
``--model totalseg-6mm``). No module here imports torch: the run configuration checks these.
"""

from __future__ import annotations

from dataclasses import dataclass

from omas_idc.choices import StrEnum
from omas_idc.errors import ConfigurationError

__all__ = [
    "FAST_RENAMED",
    "PRESETS",
    "LabelResampling",
    "Speed",
    "SpeedSettings",
    "WrapperGrid",
    "fast_option_error",
    "speed_settings",
]


class Speed(StrEnum):
    """Named speed presets (see :data:`PRESETS`)."""

    REFERENCE = "reference"
    QUICK = "quick"


class LabelResampling(StrEnum):
    """What goes back from the model grid to the source grid: logits (nnU-Net) or labels."""

    LOGITS = "logits"
    LABELS = "labels"


class WrapperGrid(StrEnum):
    """How a wrapper card (CADS, TotalSegmentator) resamples to its spacing and back.

    ``reference``: the tool's own ``scipy.ndimage.zoom`` (its order and mode, corner-aligned
    grid, int32 cast; labels back with order 0), on the CPU (:mod:`omas_idc.engine.zoom`).
    ``centred``: omas-idc's resampling at voxel centres (cubic in, nearest neighbour back),
    slab by slab on the compute device: bounded memory and GPU speed; sample positions differ
    from the tool's by up to about half a voxel, which changes some border voxels.
    """

    REFERENCE = "reference"
    CENTRED = "centred"


@dataclass(frozen=True)
class SpeedSettings:
    """The engine settings a speed preset (and explicit options) choose.

    Attributes
    ----------
    body_crop
        Run the sliding window only inside the body's bounding box.
    tile_step_size
        Tile step as a fraction of the patch; ``None``: the card's (the reference's).
    resample_logits
        Resample logits to the source grid before the argmax; ``False``: labels by nearest
        neighbour.
    wrapper_grid
        The wrapper's resampling (see :class:`WrapperGrid`).
    """

    body_crop: bool = False
    tile_step_size: float | None = None
    resample_logits: bool = True
    wrapper_grid: WrapperGrid = WrapperGrid.REFERENCE

    def __post_init__(self) -> None:
        if self.tile_step_size is not None and not 0 < self.tile_step_size <= 1:
            raise ConfigurationError(
                f"the tile step must be a fraction of the patch in (0, 1], got "
                f"{self.tile_step_size}; the card's step (0.5 or 0.8) is the reference",
                reason="option",
            )

    def describe(self) -> str:
        """What these settings change against the reference, in words (``"reference"``)."""
        changes = []
        if self.body_crop:
            changes.append("body crop")
        if self.tile_step_size is not None:
            changes.append(f"tile step {self.tile_step_size:g}")
        if not self.resample_logits:
            changes.append("labels resampled (not logits)")
        if self.wrapper_grid is not WrapperGrid.REFERENCE:
            changes.append("voxel-centred wrapper grid")
        return ", ".join(changes) or "reference"

    def short(self, postprocessing: bool = True) -> str:
        """The changes in a few characters, for the SEG's algorithm version (``""``: none);
        ``postprocessing=False`` (CADS's ``--no-postprocessing``) adds ``nopp``."""
        changes = []
        if self.body_crop:
            changes.append("crop")
        if self.tile_step_size is not None:
            changes.append(f"step{self.tile_step_size:g}")
        if not self.resample_logits:
            changes.append("labels")
        if self.wrapper_grid is not WrapperGrid.REFERENCE:
            changes.append("centred")
        if not postprocessing:
            changes.append("nopp")
        return "+".join(changes)


#: The presets: ``reference`` changes nothing (the card's settings, its tool's pipeline);
#: ``quick`` is body crop + tile step 0.75 + label resampling (omas-idc's former ``--fast``)
#: + the voxel-centred wrapper grid.
PRESETS: dict[Speed, SpeedSettings] = {
    Speed.REFERENCE: SpeedSettings(),
    Speed.QUICK: SpeedSettings(
        body_crop=True,
        tile_step_size=0.75,
        resample_logits=False,
        wrapper_grid=WrapperGrid.CENTRED,
    ),
}

#: What omas-idc's former ``--fast`` became, and where TotalSegmentator's ``--fast`` is.
FAST_RENAMED = (
    "--fast is no longer an option of omas-idc, so that it cannot be mistaken for "
    "TotalSegmentator's --fast. omas-idc's --fast (body crop, tile step 0.75, labels resampled "
    "instead of logits) is now --speed quick (or --body-crop, --tile-step 0.75, --resample "
    "labels, each alone). TotalSegmentator's --fast, its 3 mm model (task 297), is "
    "--model totalseg-3mm; its --fastest (6 mm, task 298) is --model totalseg-6mm (with "
    "--task total_v3: --model totalseg-v3-3mm, totalseg-v3-6mm)."
)


def fast_option_error() -> ConfigurationError:
    """The error for the retired ``--fast`` option (exit 2): what it became."""
    return ConfigurationError(FAST_RENAMED, reason="option")


def speed_settings(
    speed: str | Speed = Speed.REFERENCE,
    *,
    body_crop: bool | None = None,
    tile_step_size: float | None = None,
    resample: str | LabelResampling | None = None,
    wrapper_grid: str | WrapperGrid | None = None,
) -> SpeedSettings:
    """A preset's settings with explicit options on top.

    Parameters
    ----------
    speed
        ``"reference"`` (the card's settings) or ``"quick"`` (see :data:`PRESETS`).
    body_crop, tile_step_size, resample, wrapper_grid
        Explicit settings; each replaces the preset's where not ``None`` (``resample``:
        ``"logits"`` or ``"labels"``; ``wrapper_grid``: ``"reference"`` or ``"centred"``).

    Raises
    ------
    ConfigurationError
        For an unknown preset or resampling name (with the closest one), or a tile step
        outside (0, 1].
    """
    preset = PRESETS[Speed.parse(speed, "speed preset")]
    return SpeedSettings(
        body_crop=preset.body_crop if body_crop is None else bool(body_crop),
        tile_step_size=preset.tile_step_size if tile_step_size is None else float(tile_step_size),
        resample_logits=(
            preset.resample_logits
            if resample is None
            else LabelResampling.parse(resample, "resampling") is LabelResampling.LOGITS
        ),
        wrapper_grid=(
            preset.wrapper_grid
            if wrapper_grid is None
            else WrapperGrid.parse(wrapper_grid, "wrapper grid")
        ),
    )

"""Run configuration: frozen dataclasses loaded from TOML (``pipelines/*.toml``).

A configuration names what to select, which model to run, how to write SEGs, the QA
thresholds and where outputs go; the CLI maps command-line options (and the Batch environment
variables) onto it. Nothing here reads the environment.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from omas_idc.choices import suggestion
from omas_idc.encode.seg import LAYOUTS
from omas_idc.engine.speed import SpeedSettings, speed_settings
from omas_idc.errors import ConfigurationError
from omas_idc.resources import pipelines_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "ModelSettings",
    "OutputSettings",
    "QASettings",
    "RunConfig",
    "RunSettings",
    "SelectionSettings",
    "load_config",
    "packaged_config",
]


@dataclass(frozen=True)
class SelectionSettings:
    """Which IDC series to process (see :class:`omas_idc.select.SelectionFilters`)."""

    collections: tuple[str, ...] = ()
    modality: str = "CT"
    min_slices: int | None = 50
    body_parts: tuple[str, ...] = ()
    licenses: tuple[str, ...] = ()
    series_uids: tuple[str, ...] = ()
    per_study: str = "all"
    source: str = "index"
    drop_irregular: bool = True


@dataclass(frozen=True)
class ModelSettings:
    """The model to run: a card name (``cads``, ``totalseg``, ``demo``) or a folder path.

    ``speed`` is a preset of :mod:`omas_idc.engine.speed` (``reference``: the card's settings;
    ``quick``: body crop, tile step 0.75, labels resampled, voxel-centred wrapper grid);
    ``body_crop``, ``tile_step_size``, ``resample`` (``logits`` or ``labels``) and
    ``wrapper_grid`` (``reference`` or ``centred``) replace the preset's where set. ``structures``
    runs only the tasks that label them and writes only them.
    """

    name: str = "cads"
    variant: str = ""
    tasks: tuple[str, ...] = ()
    structures: tuple[str, ...] = ()
    device: str = "auto"
    speed: str = "reference"
    body_crop: bool | None = None
    tile_step_size: float | None = None
    resample: str | None = None
    wrapper_grid: str | None = None
    weights_dir: str | None = None
    postprocessing: bool = True

    def __post_init__(self) -> None:
        # Checked here, so that a TOML file and a command-line override are refused alike.
        self.speed_settings()
        if self.tasks and self.structures:
            raise ConfigurationError(
                "model.tasks and model.structures were both given; give one: structures run "
                "the tasks that label them (and the tasks those depend on)",
                reason="invalid-setting",
            )

    def speed_settings(self) -> SpeedSettings:
        """The engine's speed settings: the preset with the explicit settings on top."""
        return speed_settings(
            self.speed,
            body_crop=self.body_crop,
            tile_step_size=self.tile_step_size,
            resample=self.resample,
            wrapper_grid=self.wrapper_grid,
        )


@dataclass(frozen=True)
class QASettings:
    """Thresholds of the QA stage (IDC's rules for its TotalSegmentator release as defaults)."""

    min_volume_ml: float = 5.0
    previews: bool = True


@dataclass(frozen=True)
class OutputSettings:
    """Where and how outputs are written.

    ``seg_layout`` is ``"labelmap"`` (one LABELMAP SEG per task) or ``"binary"``.
    ``delete_downloads`` removes a series' DICOM once all its outputs exist.
    """

    seg_layout: str = "labelmap"
    delete_downloads: bool = True

    def __post_init__(self) -> None:
        # Checked here, so that a TOML file and a command-line override are refused alike.
        if self.seg_layout not in LAYOUTS:
            raise ConfigurationError(
                f"output.seg_layout must be one of {list(LAYOUTS)}, got {self.seg_layout!r}."
                f"{suggestion(self.seg_layout, LAYOUTS)}",
                reason="invalid-setting",
            )


@dataclass(frozen=True)
class RunSettings:
    """How the run behaves: retries and parallelism."""

    max_attempts: int = 3
    fetch_workers: int = 2
    fetch_source: str = "aws"
    queue_size: int = 2


@dataclass(frozen=True)
class RunConfig:
    """A whole run configuration."""

    name: str = "omas-idc"
    description: str = ""
    selection: SelectionSettings = field(default_factory=SelectionSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    qa: QASettings = field(default_factory=QASettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    run: RunSettings = field(default_factory=RunSettings)

    def with_overrides(self, **sections: dict[str, Any]) -> RunConfig:
        """A copy with some settings replaced, e.g. ``with_overrides(model={"name": "demo"})``."""
        changed: dict[str, Any] = {}
        for section, values in sections.items():
            current = getattr(self, section)
            changed[section] = _build(type(current), {**_as_dict(current), **values}, section)
        return replace(self, **changed)


def _as_dict(obj: object) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}  # type: ignore[arg-type]


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigurationError(
            f"[{where}] has unknown settings {unknown}; known settings: {sorted(known)}",
            reason="unknown-setting",
        )
    converted: dict[str, Any] = {}
    for key, value in values.items():
        default = getattr(cls(), key) if key in known else None
        if isinstance(default, tuple) and isinstance(value, (list, tuple)):
            value = tuple(str(v) for v in value)
        elif isinstance(default, tuple) and isinstance(value, str):
            value = (value,)
        converted[key] = value
    return cls(**converted)


_SECTIONS = {
    "selection": SelectionSettings,
    "model": ModelSettings,
    "qa": QASettings,
    "output": OutputSettings,
    "run": RunSettings,
}


def config_from_dict(data: dict[str, Any], where: str = "configuration") -> RunConfig:
    """A :class:`RunConfig` from parsed TOML."""
    release = data.get("release", {})
    unknown = sorted(set(data) - {"release", *_SECTIONS})
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown sections {unknown}; known: {['release', *_SECTIONS]}",
            reason="unknown-section",
        )
    sections = {
        name: _build(cls, dict(data.get(name, {})), f"{where}: {name}")
        for name, cls in _SECTIONS.items()
    }
    config = RunConfig(
        name=str(release.get("name", "omas-idc")),
        description=str(release.get("description", "")),
        **sections,
    )
    _validate(config, where)
    return config


def _validate(config: RunConfig, where: str) -> None:
    if config.selection.per_study not in ("all", "one"):
        raise ConfigurationError(
            f"{where}: selection.per_study must be 'all' or 'one'", reason="invalid-setting"
        )
    if config.run.max_attempts < 1:
        raise ConfigurationError(
            f"{where}: run.max_attempts must be >= 1", reason="invalid-setting"
        )
    if not config.qa.min_volume_ml >= 0:
        raise ConfigurationError(
            f"{where}: qa.min_volume_ml must be a volume >= 0 (mL), got "
            f"{config.qa.min_volume_ml!r}",
            reason="invalid-setting",
        )


def load_config(path: str | Path) -> RunConfig:
    """Load a run configuration from a TOML file.

    Raises
    ------
    ConfigurationError
        If the file is missing, not TOML, or holds unknown or invalid settings.
    """
    target = Path(path)
    try:
        data = tomllib.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigurationError(f"no configuration file at {target}", reason="missing") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigurationError(f"{target} is not valid TOML: {err}", reason="toml") from err
    return config_from_dict(data, str(target))


def packaged_config(name: str) -> RunConfig:
    """A configuration shipped in ``pipelines/`` by name, e.g. ``packaged_config("nlst")``."""
    path = pipelines_dir() / f"{name}.toml"
    if not path.is_file():
        available = sorted(p.stem for p in pipelines_dir().glob("*.toml"))
        raise ConfigurationError(
            f"no packaged configuration {name!r}; available: {available}", reason="missing"
        )
    return load_config(path)

"""Speed options: named so nobody mistakes them for TotalSegmentator's ``--fast``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from omas_idc.cli import app
from omas_idc.engine.speed import PRESETS, Speed, SpeedSettings, WrapperGrid, speed_settings
from omas_idc.engine.synthetic import SyntheticModel, make_model_folder
from omas_idc.errors import ConfigurationError
from omas_idc.run.config import ModelSettings, RunConfig, config_from_dict

torch = pytest.importorskip("torch")


def test_reference_changes_nothing_and_quick_is_the_former_fast() -> None:
    assert speed_settings() == SpeedSettings(False, None, True)  # the card's settings
    assert speed_settings("reference").describe() == "reference"
    quick = speed_settings("quick")
    assert quick == SpeedSettings(
        body_crop=True,
        tile_step_size=0.75,
        resample_logits=False,
        wrapper_grid=WrapperGrid.CENTRED,
    )
    assert quick.describe() == (
        "body crop, tile step 0.75, labels resampled (not logits), voxel-centred wrapper grid"
    )
    assert quick.short() == "crop+step0.75+labels+centred"
    assert speed_settings().short() == ""
    assert speed_settings().short(postprocessing=False) == "nopp"
    assert quick.short(postprocessing=False) == "crop+step0.75+labels+centred+nopp"
    assert set(PRESETS) == set(Speed)


def test_explicit_options_replace_the_presets_settings() -> None:
    centred = WrapperGrid.CENTRED
    assert speed_settings("quick", tile_step_size=0.5) == SpeedSettings(True, 0.5, False, centred)
    assert speed_settings("quick", body_crop=False, resample="logits") == SpeedSettings(
        False, 0.75, True, centred
    )
    assert speed_settings(tile_step_size=0.8, resample="labels") == SpeedSettings(False, 0.8, False)
    assert speed_settings("quick", wrapper_grid="reference").wrapper_grid is WrapperGrid.REFERENCE
    assert speed_settings(wrapper_grid="centred") == SpeedSettings(wrapper_grid=centred)


def test_unknown_names_and_bad_steps_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="Did you mean 'quick'"):
        speed_settings("quik")
    with pytest.raises(ConfigurationError, match="Did you mean 'labels'"):
        speed_settings(resample="label")
    with pytest.raises(ConfigurationError, match="Did you mean 'centred'"):
        speed_settings(wrapper_grid="centered")
    with pytest.raises(ConfigurationError, match=r"\(0, 1\]"):
        speed_settings(tile_step_size=1.5)


@pytest.mark.parametrize("command", [["segment", "."], ["run"]])
def test_fast_says_what_it_became_and_where_totalsegmentators_fast_is(
    command: list[str], tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, [*command, "--fast", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "--speed quick" in text
    assert "--model totalseg-3mm" in text
    assert "--model totalseg-6mm" in text
    assert not (tmp_path / "out").exists()


def test_run_configuration_carries_speed_and_structures() -> None:
    settings = RunConfig().with_overrides(model={"speed": "quick", "tile_step_size": 0.6})
    assert settings.model.speed_settings() == SpeedSettings(True, 0.6, False, WrapperGrid.CENTRED)
    settings = RunConfig().with_overrides(model={"wrapper_grid": "centred"})
    assert settings.model.speed_settings() == SpeedSettings(wrapper_grid=WrapperGrid.CENTRED)
    loaded = config_from_dict({"model": {"name": "totalseg", "structures": ["liver", "heart"]}})
    assert loaded.model.structures == ("liver", "heart")
    assert loaded.model.speed_settings() == SpeedSettings()
    with pytest.raises(ConfigurationError, match="Did you mean 'reference'"):
        config_from_dict({"model": {"speed": "referense"}})
    with pytest.raises(ConfigurationError, match="give one"):
        ModelSettings(tasks=("551",), structures=("liver",))


def test_build_engine_applies_the_preset_and_the_structures(tmp_path: Path) -> None:
    from omas_idc.run.engine_setup import build_engine

    folder = make_model_folder(tmp_path, SyntheticModel(labels=("liver", "spleen")))
    settings = ModelSettings(
        name=str(folder), device="cpu", speed="quick", resample="logits", structures=("spleen",)
    )
    engine, _info = build_engine(settings)
    try:
        assert (engine.config.body_crop, engine.config.resample_logits) == (True, True)
        assert engine.tile_step_size == 0.75
        assert engine.model.keep == {engine.model.tasks[0].id: frozenset({2})}
    finally:
        engine.close()
    reference, _ = build_engine(ModelSettings(name=str(folder), device="cpu"))
    try:
        assert reference.config.body_crop is False
        assert reference.tile_step_size == reference.model.card.tile_step_size
        assert reference.model.keep is None
    finally:
        reference.close()

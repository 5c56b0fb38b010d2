"""CPU options: body crop and label (not logit) resampling stay close to the default path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nnunet_reference import dice, volume_from_array

from omas_idc.engine.model import load_model
from omas_idc.engine.segmenter import Segmenter, SegmenterConfig
from omas_idc.engine.synthetic import SyntheticModel, make_model_folder
from omas_idc.phantom import PhantomOptions, render_phantom

torch = pytest.importorskip("torch")

# a 384 mm field of view with air around the body, as in a real CT
OPTIONS = PhantomOptions(shape=(40, 96, 96), pixel_spacing=(4.0, 4.0), slice_spacing=5.0)


def _volume() -> Any:
    """The phantom with its largest organ at 1000 HU, so that a threshold model labels three
    solid regions (air, body, organ) and no partial-volume shells, whose Dice means little."""
    geometry, hu, labels, _ = render_phantom(OPTIONS)
    organ = np.bincount(labels.ravel())[2:].argmax() + 2
    hu = np.where(labels == organ, 1000.0, hu)
    return volume_from_array(np.round(hu).astype(np.int16), geometry)


def _run(folder: Path, config: SegmenterConfig) -> tuple[Any, int]:
    """The label map and the number of tiles that went through the network."""
    model = load_model(folder)
    tiles = 0

    def count(_module: Any, inputs: tuple[Any, ...], _output: Any) -> None:
        nonlocal tiles
        tiles += int(inputs[0].shape[0])

    handle = model.tasks[0].networks[0].register_forward_hook(count)
    try:
        labels = Segmenter(model, config).segment(_volume())[0].array
    finally:
        handle.remove()
    return labels, tiles


@pytest.mark.slow
def test_body_crop_and_label_resampling_agree_with_the_default(tmp_path: Path) -> None:
    folder = make_model_folder(
        tmp_path,
        SyntheticModel(
            weights="threshold",
            thresholds_hu=(-500.0, 500.0),
            # finer along z, coarser in-plane than the series (as CADS's 1.5 mm on a typical
            # CT): resampling both ways, so resample_logits matters
            spacing=(4.0, 5.0, 5.0),
            patch_size=(16, 32, 32),
        ),
    )
    reference, reference_tiles = _run(folder, SegmenterConfig(batch_size=4))
    cropped, cropped_tiles = _run(folder, SegmenterConfig(batch_size=4, body_crop=True))
    nearest, _ = _run(folder, SegmenterConfig(batch_size=4, resample_logits=False))
    assert {int(v) for v in reference.ravel()[::7]} == {0, 1, 2}
    for label in (0, 1, 2):
        assert dice(cropped, reference, label) >= 0.97, ("body_crop", label)
        assert dice(nearest, reference, label) >= 0.97, ("resample_logits=False", label)
    assert cropped_tiles <= 0.8 * reference_tiles, (cropped_tiles, reference_tiles)

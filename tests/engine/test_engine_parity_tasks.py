"""Parity with nnUNetPredictor for a model card of several tasks run in one pass.

The engine batches the sliding-window tiles of a series through every network of the tasks that
share plans (patch, spacing, transpose, normalisation); tasks with other plans get their own tile
grid in the same pass. Each task's result must still be exactly what nnU-Net's predictor makes of
that task's folder alone.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nnunet_reference import nnunet_predictor, volume_from_phantom

from omas_idc.engine.model import load_model
from omas_idc.engine.nnunet_reference import float32_accumulators
from omas_idc.engine.preprocessing import CanonicalOrientation
from omas_idc.engine.segmenter import Segmenter, SegmenterConfig
from omas_idc.engine.synthetic import SyntheticModel, make_model_folder
from omas_idc.phantom import PhantomOptions

torch = pytest.importorskip("torch")
pytest.importorskip("nnunetv2")

OPTIONS = PhantomOptions(shape=(24, 40, 44), pixel_spacing=(3.0, 3.2), slice_spacing=5.0)
BATCH_SIZE = 3


def _second_task(layout: str) -> dict[str, Any]:
    """How the second task differs from the first beyond its labels and architecture."""
    if layout == "shared_tiles":
        return {"patch_size": (16, 16, 16), "transpose_forward": (0, 1, 2)}
    return {"patch_size": (16, 24, 16), "transpose_forward": (2, 0, 1)}


@pytest.mark.parametrize("layout", ["shared_tiles", "separate_grids"])
def test_each_task_of_a_card_matches_nnunet_on_its_own_folder(tmp_path: Path, layout: str) -> None:
    volume = volume_from_phantom(OPTIONS)
    orientation = CanonicalOrientation.of(volume.geometry)
    spacing = orientation.spacing
    specs = {
        "911": SyntheticModel(
            dataset_id=911,
            dataset_name="Tissue",
            labels=("soft_tissue", "bone"),
            architecture="plain",
            patch_size=(16, 16, 16),
            folds=("0", "1"),
            seed=3,
        ),
        "912": SyntheticModel(
            dataset_id=912,
            dataset_name="Organs",
            labels=("liver", "spleen", "kidney", "lung"),
            architecture="resenc",
            folds=("all",),
            seed=7,
            **_second_task(layout),
        ),
    }
    # both at the volume's spacing (in their transposed axis order): no resampling
    specs = {
        task_id: dataclasses.replace(
            spec, spacing=tuple(spacing[i] for i in spec.transpose_forward)
        )
        for task_id, spec in specs.items()
    }
    tasks = []
    for task_id, spec in specs.items():
        make_model_folder(tmp_path, spec)
        tasks.append(
            {
                "id": task_id,
                "dataset": f"Dataset{spec.dataset_id}_{spec.dataset_name}",
                "trainer": spec.trainer_name,
                "plans": spec.plans_name,
                "folds": list(spec.folds),
            }
        )
    card_path = tmp_path / "two_tasks.json"
    card = {
        "name": "two_tasks",
        "recipe": "nnunet-native",
        "variants": {"local": {"licence": ""}},
        "tasks": tasks,
    }
    card_path.write_text(json.dumps(card))

    # as a user runs it: the card, one segment call for the volume
    model = load_model(card_path)
    first, second = model.tasks
    assert (first.group_key() == second.group_key()) == (layout == "shared_tiles")
    # the tiles each network sees (a test-side hook; the engine is not instrumented)
    seen: dict[tuple[str, int], list[torch.Tensor]] = {}
    hooks = []
    for task in model.tasks:
        for fold, network in enumerate(task.networks):
            calls = seen.setdefault((task.id, fold), [])
            hooks.append(
                network.register_forward_pre_hook(
                    lambda _m, args, calls=calls: calls.append(args[0])
                )
            )
    segmenter = Segmenter(model, SegmenterConfig(batch_size=BATCH_SIZE))
    maps = segmenter.segment(volume)
    for hook in hooks:
        hook.remove()

    assert [m.task for m in maps] == ["911", "912"]
    assert all(m.model == "two_tasks" for m in maps)
    for label_map, spec in zip(maps, specs.values(), strict=True):
        assert dict(label_map.labels) == {i + 1: name for i, name in enumerate(spec.labels)}
        assert label_map.array.shape == volume.hu.shape

    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

    logits = segmenter.predict_logits(volume)
    assert sorted(logits) == ["911", "912"]
    canonical = orientation.to_canonical(torch.from_numpy(volume.hu).float()).numpy()[None]
    properties = {"spacing": list(spacing)}
    for label_map, (task_id, spec) in zip(maps, specs.items(), strict=True):
        predictor = nnunet_predictor(
            tmp_path / f"Dataset{spec.dataset_id}_{spec.dataset_name}" / spec.folder_name,
            spec.folds,
        )
        data, _, _ = DefaultPreprocessor(verbose=False).run_case_npy(
            canonical.astype(np.float32),
            None,
            properties,
            predictor.plans_manager,
            predictor.configuration_manager,
            predictor.dataset_json,
        )
        # nnU-Net summing tile logits in float32 as we do (test_engine_parity.py shows that its
        # float16 sums alone flip voxels at the faces)
        with float32_accumulators():
            exact = orientation.to_source(predictor.predict_single_npy_array(canonical, properties))
            reference_logits = predictor.predict_logits_from_preprocessed_data(
                torch.from_numpy(data)
            )
        ours = label_map.array
        classes = len(spec.labels) + 1
        assert set(np.unique(ours)) <= set(range(classes))
        assert len(np.unique(ours)) == classes, task_id  # every class somewhere
        assert logits[task_id].shape == reference_logits.shape
        assert float((logits[task_id] - reference_logits).abs().max()) <= 1e-4, task_id
        # the same window logic and the same float32 sums: the same labels, voxel for voxel
        assert np.array_equal(ours, exact), (task_id, int((ours != exact).sum()))

        # one pass: each of nnU-Net's tiles went once through each network of the task
        n_tiles = len(predictor._internal_get_sliding_window_slicers(data.shape[1:]))
        for fold in range(len(spec.folds)):
            batches = seen[(task_id, fold)]
            assert sum(len(b) for b in batches) == n_tiles, (task_id, fold)
            assert all(tuple(b.shape[2:]) == spec.patch_size for b in batches)
            assert max(len(b) for b in batches) == min(BATCH_SIZE, n_tiles)

    # both tasks ran in the one call; with shared plans the very same tile batches went
    # through both tasks' networks (the engine cut and normalised each tile once)
    first_batches = [id(b) for b in seen[("911", 0)]]
    second_batches = [id(b) for b in seen[("912", 0)]]
    if layout == "shared_tiles":
        assert first_batches == second_batches
        assert [id(b) for b in seen[("911", 1)]] == first_batches
    else:
        assert not set(first_batches) & set(second_batches)

"""The engine holds the accumulators of one group of tasks at a time (issue 20: memory)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nnunet_reference import two_group_model, volume_from_phantom

from omas_idc.engine.segmenter import Segmenter, SegmenterConfig
from omas_idc.phantom import PhantomOptions


class _Recording(Segmenter):
    """Records the groups whose jobs are active (accumulators allocated) at each batch."""

    groups_at_once: list[int]

    def _step_windows(self, active):  # type: ignore[no-untyped-def]
        self.groups_at_once.append(len({job.key for job in active}))
        super()._step_windows(active)


# the serial worker, and the overlapped one (the next group's job prepared ahead waits outside
# the active jobs until the active group is done)
@pytest.mark.parametrize("overlap", [False, True], ids=["serial", "overlapped"])
def test_jobs_of_other_groups_wait_until_the_active_group_is_done(
    tmp_path: Path, overlap: bool
) -> None:
    model = two_group_model(tmp_path)
    volumes = [
        volume_from_phantom(
            PhantomOptions(seed=s, shape=(12, 16, 16), pixel_spacing=(6.0, 6.0), slice_spacing=6.0)
        )
        for s in (0, 1)
    ]
    config = SegmenterConfig(batch_size=2, postprocessing=False, overlap_cpu_work=overlap)
    engine = _Recording(model, config)
    engine.groups_at_once = []
    with engine:
        futures = [engine.submit(volume) for volume in volumes]
        results = [future.result() for future in futures]
    # plenty of memory (8 GB) for both groups of both series, yet one group at a time
    assert engine.groups_at_once
    assert max(engine.groups_at_once) == 1
    with Segmenter(model, SegmenterConfig(postprocessing=False)) as alone:
        for volume, maps in zip(volumes, results, strict=True):
            assert [m.task for m in maps] == ["551", "559"]
            for ours, single in zip(maps, alone.segment(volume), strict=True):
                assert np.array_equal(ours.array, single.array)

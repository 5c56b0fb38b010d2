"""benchmarks/stages.py keeps working: its quick mode measures every stage of a series, and the
CADS-like networks it builds have ResEnc-L's topology."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "stages.py"
STAGES = (
    "fetch (loopback S3)",
    "read",
    "resample to 1.5 mm",
    "network windows: accumulate",
    "network windows: forward",
    "resample from 1.5 mm",
    "post-processing",
    "segment: other",
    "encode (LABELMAP SEGs)",
    "QA + SR",
    "publish (previews + upload)",
)


def test_resenc_l_plan_is_nnunets_for_a_192_patch() -> None:
    from omas_idc.testing.resenc_plans import RESENC_L_CT_1P5MM, resenc_plan

    plan = RESENC_L_CT_1P5MM
    assert plan.patch_size == (192, 192, 192)
    assert plan.features_per_stage == (32, 64, 128, 256, 320, 320)
    assert plan.n_blocks_per_stage == (1, 3, 4, 6, 6, 6)
    assert plan.strides == ((1, 1, 1),) + ((2, 2, 2),) * 5
    kwargs = plan.arch_kwargs()
    assert kwargs["n_conv_per_stage_decoder"] == [1] * 5
    # pooling stops at 4 voxels: 32 -> 16 -> 8 -> 4
    assert resenc_plan((32, 32, 32), base_features=4).n_stages == 4


def test_cads_like_folders_load_as_the_cads_card_with_the_plans_network(tmp_path: Path) -> None:
    from omas_idc.engine.model import load_model
    from omas_idc.testing.resenc_plans import (
        cads_label_names,
        make_cads_like_folders,
        resenc_plan,
    )

    plan = resenc_plan((32, 32, 32), base_features=4, max_features=16)
    make_cads_like_folders(tmp_path, ["551", "559"], plan)
    model = load_model("cads", weights_dir=tmp_path, tasks=["551", "559"])
    names = cads_label_names()
    assert [t.id for t in model.tasks] == ["551", "559"]
    for task in model.tasks:
        assert task.folder.configuration.patch_size == (32, 32, 32)
        assert task.folder.configuration.spacing == (1.5, 1.5, 1.5)
        assert task.folder.num_classes == len(names[task.id]) + 1
        (network,) = task.networks
        encoder: Any = network.encoder
        decoder: Any = network.decoder
        assert [len(stage.blocks) for stage in encoder.stages] == [1, 3, 4, 6]
        assert decoder.seg_layers[-1].out_channels == task.folder.num_classes
    # each task its own group (own normalisation), as CADS's datasets are
    assert len({t.group_key() for t in model.tasks}) == 2


@pytest.mark.slow
def test_stages_benchmark_quick_mode_measures_every_stage() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("2 inputs on ")
    tables = [i for i, line in enumerate(lines) if line.startswith("input q")]
    assert len(tables) == 2, result.stdout
    for start in tables:
        rows = {}
        for line in lines[start + 2 : start + 2 + len(STAGES)]:
            match = re.fullmatch(
                r"  (.+?)\s+([\d.]+)\s+([\d.]+|-)\s+([\d.]+)( \(extrapolated\))?", line
            )
            assert match is not None, line
            rows[match.group(1)] = (float(match.group(2)), float(match.group(4)))
        assert tuple(rows) == STAGES, result.stdout
        # every stage did work (CPU) in a process that holds at least the interpreter
        for stage, (cpu, peak) in rows.items():
            if stage not in (
                "read",
                "resample from 1.5 mm",
                "network windows: accumulate",
                "segment: other",
            ):
                assert cpu > 0.0, (stage, result.stdout)
            assert 0.05 < peak < 8.0, (stage, result.stdout)
        total = float(lines[start + 2 + len(STAGES)].split()[-1])
        assert total == pytest.approx(sum(cpu for cpu, _ in rows.values()), abs=0.02)
        windows = next(line for line in lines[start:] if "per task) x" in line)
        match = re.search(r": (\d+) .* x ([\d.]+) CPU s per window .* = ([\d.]+) CPU s", windows)
        assert match is not None, windows
        count, per_window, extrapolated = (float(g) for g in match.groups())
        assert count >= 2  # 2 tasks, at least one window each
        assert extrapolated == pytest.approx(count * per_window, rel=0.02, abs=0.1)
        assert rows["network windows: forward"][0] == pytest.approx(extrapolated, abs=0.06)
    assert "2 windows measured" in result.stdout  # --quick measures 2 windows of one task
    table = [line for line in lines if line.startswith("| ")]
    assert [row.split(" | ")[0][2:] for row in table[1:-2]] == list(STAGES)

"""benchmarks/engine_gpu.py cannot rot while no GPU is at hand: its quick mode runs on the CPU."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "engine_gpu.py"


@pytest.mark.slow
def test_gpu_benchmark_quick_mode_runs_on_the_cpu() -> None:
    pytest.importorskip("nnunetv2")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "wrote 2 ResEnc-L folders (5 classes)" in out
    assert "omas-idc: 2 series x 2 tasks" in out
    ours = re.search(r"omas-idc: (\d+) series x 2 tasks in ([\d.]+) s -> ([\d.]+) series/hour", out)
    assert ours is not None, out
    count, seconds, rate = int(ours.group(1)), float(ours.group(2)), float(ours.group(3))
    assert count == 2, ours.group(0)
    assert seconds > 0.0, ours.group(0)
    assert rate > 0.0, ours.group(0)
    theirs = re.search(
        r"nnU-Net: 1 series x 1 task in ([\d.]+) s -> ([\d.]+) series/hour for 2 tasks; "
        r"omas-idc is ([\d.]+)x faster per series",
        out,
    )
    assert theirs is not None, out
    assert float(theirs.group(1)) > 0.0, theirs.group(0)
    assert float(theirs.group(2)) > 0.0, theirs.group(0)
    assert 0.01 < float(theirs.group(3)) < 100.0, theirs.group(0)

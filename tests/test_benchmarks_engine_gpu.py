"""benchmarks/engine_gpu.py cannot rot while no GPU is at hand: its quick mode runs on the CPU."""

from __future__ import annotations

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
    assert "series/hour" in out
    assert "nnU-Net: 1 series x 1 task" in out

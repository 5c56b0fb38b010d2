"""benchmarks/pipeline.py keeps working: its quick mode runs both ways and prints the rates."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "pipeline.py"


@pytest.mark.slow
def test_pipeline_benchmark_quick_mode_prints_rates() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("3 series of")
    assert any(line.startswith("stage shares (sequential): fetch") for line in lines)
    for kind in ("sequential", "pipelined"):
        assert any(line.startswith(kind) and line.endswith("series/hour") for line in lines)
    assert any(line.startswith("ratio") for line in lines)
    cpu = next(line for line in lines if line.startswith("run CPU"))
    assert 0.0 < float(cpu.split()[2]) < 60.0, cpu
    saved = next(line for line in lines if line.startswith("saved parse per series"))
    seconds = [float(value) for value in re.findall(r"(\d+\.\d+) s", saved)]
    assert len(seconds) == 3, saved  # the fetch check, the encoder's re-read, their sum
    assert all(0.0 < value < 60.0 for value in seconds), saved
    assert abs(seconds[0] + seconds[1] - seconds[2]) < 0.002, saved

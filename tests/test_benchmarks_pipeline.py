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
        line = next(line for line in lines if line.startswith(f"{kind} "))
        match = re.fullmatch(rf"{kind}\s+([\d.]+) s\s+([\d.]+) series/hour", line)
        assert match is not None, line
        wall, rate = float(match.group(1)), float(match.group(2))
        assert wall > 0.0, line
        assert rate == pytest.approx(3600 * 3 / wall, rel=0.02), line  # 3 series
    ratio = next(line for line in lines if line.startswith("ratio"))
    match = re.search(r"x([\d.]+) the sequential rate .*min x([\d.]+), max x([\d.]+)", ratio)
    assert match is not None, ratio
    median, low, high = (float(value) for value in match.groups())
    assert 0.01 < low <= median <= high < 100.0, ratio
    shares = next(line for line in lines if line.startswith("stage shares"))
    percents = [int(value) for value in re.findall(r"(\d+)%", shares)]
    assert 95 <= sum(percents) <= 105, shares  # rounded shares of one whole
    cpu = next(line for line in lines if line.startswith("run CPU"))
    assert 0.0 < float(cpu.split()[2]) < 60.0, cpu
    saved = next(line for line in lines if line.startswith("saved parse per series"))
    seconds = [float(value) for value in re.findall(r"(\d+\.\d+) s", saved)]
    assert len(seconds) == 3, saved  # the fetch check, the encoder's re-read, their sum
    assert all(0.0 < value < 60.0 for value in seconds), saved
    assert abs(seconds[0] + seconds[1] - seconds[2]) < 0.002, saved

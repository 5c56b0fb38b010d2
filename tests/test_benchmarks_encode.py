"""benchmarks/encode.py keeps working: its quick mode runs, prints the ratios to dcmqi and
says for each of issue 5's targets whether this run met it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "encode.py"


@pytest.mark.slow
def test_encode_benchmark_quick_mode_prints_ratios(shared_data: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "61 segments" in lines[0]  # every class of the TotalSegmentator reference
    for layout in ("labelmap", "binary"):
        assert any(line.startswith(f"{layout:9} ratio    speed x") for line in lines), result.stdout
    targets = lines[lines.index(next(line for line in lines if line.startswith("targets"))) :]
    verdicts = [line for line in targets[1:] if line.endswith((": met", ": NOT met"))]
    assert len(verdicts) == 3, result.stdout

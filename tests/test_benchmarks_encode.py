"""benchmarks/encode.py keeps working: its quick mode runs, prints the ratios to dcmqi and
says for each of issue 5's targets whether this run met it."""

from __future__ import annotations

import re
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
        ratio = next(line for line in lines if line.startswith(f"{layout:9} ratio    speed x"))
        match = re.search(r"speed x([\d.]+), memory x([\d.]+), size x([\d.]+)", ratio)
        assert match is not None, ratio
        assert all(0.01 < float(value) < 100.0 for value in match.groups()), ratio
        ours = next(line for line in lines if line.startswith(f"{layout:9} omas-idc"))
        wall, read, encode, peak, size = (float(value) for value in ours.split()[2:])
        assert wall > 0.0, ours
        assert peak > 0.0, ours
        assert size > 0.0, ours
        assert 0.0 < read < wall, ours  # a part of the run's wall time
        assert 0.0 < encode < wall, ours
    targets = lines[lines.index(next(line for line in lines if line.startswith("targets"))) :]
    verdicts = [line for line in targets[1:] if line.endswith((": met", ": NOT met"))]
    assert len(verdicts) == 3, result.stdout
    for verdict in verdicts:  # "  LABELMAP encoding < 5 s: 1.23 s: met"
        value = re.search(r": x?([\d.]+)( s| MB)?: (NOT )?met$", verdict)
        assert value is not None, verdict
        assert 0.0 < float(value.group(1)) < 1000.0, verdict

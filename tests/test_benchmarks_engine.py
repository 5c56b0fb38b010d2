"""The engine benchmark runs (``--quick``) and reports its ratios and Dice."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "engine.py"


@pytest.mark.slow
def test_engine_benchmark_quick_prints_ratios() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("nnunetv2")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for role in ("ours", "nnunet", "fast"):
        line = re.search(
            rf"^{role}\s+wall\s+([\d.]+) s\s+compute\s+([\d.]+) s\s+CPU\s+([\d.]+) s\s+"
            r"peak RSS\s+([\d.]+) GiB$",
            done.stdout,
            re.MULTILINE,
        )
        assert line is not None, done.stdout
        wall, compute, cpu, rss = (float(value) for value in line.groups())
        assert wall > 0.0, line.group(0)
        assert cpu > 0.0, line.group(0)
        assert 0.0 < rss < 1000.0, line.group(0)
        assert 0.0 < compute <= wall, line.group(0)  # compute is a part of the wall time
    same = re.search(r"identical settings\): time ([\d.]+)x.*Dice min ([\d.]+)", done.stdout)
    fast = re.search(
        r"fast \(body crop, step 0.75\): time ([\d.]+)x.*Dice min ([\d.]+)", done.stdout
    )
    assert same is not None, done.stdout
    assert fast is not None, done.stdout
    # the same weights on the same volume give the same labels as nnU-Net's predictor
    assert float(same.group(2)) >= 0.99
    assert 0.0 <= float(fast.group(2)) <= 1.0, fast.group(0)
    for match in (same, fast):
        line = done.stdout[match.start() :].splitlines()[0]
        ratios = re.findall(r"([\d.]+)x", line)  # time, compute, CPU, peak memory
        assert len(ratios) == 4, line
        assert all(0.01 < float(value) < 100.0 for value in ratios), line

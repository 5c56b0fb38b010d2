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
        assert re.search(rf"^{role}\s+wall\s+[\d.]+ s", done.stdout, re.MULTILINE), done.stdout
    same = re.search(r"identical settings\): time ([\d.]+)x.*Dice min ([\d.]+)", done.stdout)
    fast = re.search(
        r"fast \(body crop, step 0.75\): time ([\d.]+)x.*Dice min ([\d.]+)", done.stdout
    )
    assert same is not None, done.stdout
    assert fast is not None, done.stdout
    # the same weights on the same volume give the same labels as nnU-Net's predictor
    assert float(same.group(2)) >= 0.99

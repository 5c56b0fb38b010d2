"""The read benchmark runs (``--quick``) and reports its ratios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "read.py"


@pytest.mark.slow
def test_read_benchmark_quick_prints_ratios(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## encode\n\nkept\n")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for syntax in ("explicit", "jpeg2000"):
        assert f"{syntax}  omas-idc" in done.stdout
    assert "ratio" in done.stdout
    text = results.read_text()
    assert "## read" in text
    assert "## encode\n\nkept" in text  # other sections are left alone

"""The read benchmark runs (``--quick``) and reports its ratios."""

from __future__ import annotations

import re
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
    rows = re.findall(
        r"^(\S+)\s+(\S+)\s+([\d.]+) s \(CPU\s+([\d.]+) s\)\s+ratio \S+ = ([\d.]+)$",
        done.stdout,
        re.MULTILINE,
    )
    assert {syntax for syntax, *_ in rows} == {"explicit", "jpeg2000"}, done.stdout
    for syntax, reader, seconds, cpu, ratio in rows:
        assert float(seconds) > 0.0, (syntax, reader, seconds)
        assert float(cpu) >= 0.0, (syntax, reader, cpu)
        assert 0.01 < float(ratio) < 100.0, (syntax, reader, ratio)
        if reader == "omas-idc":  # the reference of the ratios
            assert float(ratio) == 1.0
    omas = [row for row in rows if row[1] == "omas-idc"]
    assert len(omas) == 2, done.stdout  # one per syntax, the reference of its ratios
    text = results.read_text()
    assert "## read" in text
    assert "## encode\n\nkept" in text  # other sections are left alone

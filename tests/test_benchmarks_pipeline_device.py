"""benchmarks/pipeline_device.py and benchmarks/memory_cads.py keep working (quick modes), and
the emulated accelerator takes its time without the CPU."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_emulated_network_sleeps_outside_the_gil_and_counts_its_busy_time() -> None:
    import torch

    from omas_idc.engine.emulated import DeviceClock, EmulatedNetwork

    clock = DeviceClock()
    network = EmulatedNetwork(3, 0.2, clock)
    tiles = torch.zeros((2, 1, 4, 8, 8))
    tiles[:, :, :, :4] = 1.0
    counted = 0

    def count() -> None:  # runs while the forward sleeps only if the GIL is free
        nonlocal counted
        end = time.perf_counter() + 0.15
        while time.perf_counter() < end:
            counted += 1

    other = threading.Thread(target=count)
    cpu = time.process_time()
    other.start()
    out = network(tiles)
    other.join()
    assert out.shape == (2, 3, 4, 8, 8)
    assert torch.equal(out.argmax(1), (tiles[:, 0] > 0).long())  # class 1 where above 0
    assert counted > 1000
    assert clock.calls == 1
    assert clock.windows == 2
    assert 0.2 <= clock.busy_seconds < 1.0
    assert clock.window_seconds == pytest.approx(clock.busy_seconds)
    assert time.process_time() - cpu < 0.2 + 0.15  # the forward's own CPU is small


def _numbers(line: str) -> list[float]:
    return [float(value) for value in re.findall(r"\d+\.\d+", line)]


@pytest.mark.slow
def test_pipeline_device_benchmark_quick_mode_prints_busy_fractions() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "pipeline_device.py"), "--quick"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("3 series of"), lines
    assert lines[1].startswith("CPU stages"), lines
    cpu_stages = _numbers(lines[1])[0]
    assert 0.0 < cpu_stages < 60.0, lines[1]
    assert any(line.startswith("device s/series |") for line in lines), lines  # the header
    rows = [line for line in lines if re.match(r"device\s+[\d.]+ \|", line)]
    assert len(rows) == 2, lines  # 0.5 and 2 x the CPU stages' time
    devices = []
    for row in rows:
        match = re.fullmatch(
            r"device\s+([\d.]+) \| sequential\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)% \| "
            r"pipelined\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)% \| steady\s+([\d.]+)% \| "
            r"x([\d.]+) x([\d.]+) x([\d.]+) \| ([\d.]+)",
            row,
        )
        assert match is not None, row
        values = [float(value) for value in match.groups()]
        device, seq, seq_rate, seq_busy, wall, rate, busy, steady = values[:8]
        ratio, expected, expected_n, cores = values[8:]
        devices.append(device)
        assert seq_rate == pytest.approx(3600 * 3 / seq, rel=0.02), row
        assert rate == pytest.approx(3600 * 3 / wall, rel=0.02), row
        assert ratio == pytest.approx(seq / wall, abs=0.011), row
        assert 1.0 <= expected <= 2.0, row
        # for 3 series: the first one's CPU stages before the device and the last one's after
        both = 3 * (cpu_stages + device) / (3 * max(cpu_stages, device) + min(cpu_stages, device))
        assert expected_n == pytest.approx(both, abs=0.011), row
        assert 1.0 <= expected_n <= expected, row
        # the device's time is in both runs: its busy share is at most 100 % and the
        # sequential run's wall time holds all of it
        assert 0.0 < seq_busy <= 100.0, row
        assert 0.0 < busy <= steady <= 100.0, row
        assert seq >= 3 * device * 0.95, row
        assert 0.0 < cores < 100.0, row
    assert devices[1] == pytest.approx(4 * devices[0], rel=0.01), rows
    idle = lines[lines.index("device idle within its window (pipelined):") + 1 :]
    assert len(idle) == 2, lines
    for line, device in zip(idle, devices, strict=True):
        match = re.fullmatch(
            r"  device\s+([\d.]+):\s+(-?[\d.]+) s idle =\s+(-?[\d.]+) ms per batch on the device "
            r"thread around the forwards \+\s+(-?[\d.]+) s between batches",
            line,
        )
        assert match is not None, line
        assert float(match.group(1)) == pytest.approx(device, abs=0.001), line
        assert float(match.group(3)) >= 0.0, line  # the forwards are inside the batches


@pytest.mark.slow
def test_memory_cads_benchmark_quick_mode_prints_the_peak() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "memory_cads.py"), "--quick"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("1 series of 512x512x40"), lines
    assert "2 CADS tasks, 27 classes" in lines[0], lines
    peak = next(line for line in lines if line.startswith("peak host memory"))
    gigabytes = _numbers(peak)[0]
    # more than the volume and the torch runtime, far less than the 8 GB goal at this size
    assert 0.05 < gigabytes < 4.0, peak
    assert "8 GB goal" in peak

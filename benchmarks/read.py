"""Benchmark: read a CT series with omas-idc, dcm2niix and SimpleITK.

Writes a phantom series (uncompressed and JPEG 2000 lossless; 512x512x300 by default) and times
reading it with:

- ``omas_idc.read.read_series`` (in memory: int16 HU + geometry, threads for decoding);
- ``dcm2niix -z n`` (the PyPI binary; parses, decodes and writes an uncompressed NIfTI);
- SimpleITK's ``ImageSeriesReader`` (GDCM), in memory.

Each timing is the best of ``--repeats`` runs, the readers taking turns (the file cache is warm
for all three), with the CPU time (user + system, all threads) of that run, which shows how many
cores each reader kept busy. Prints the times and the ratios peer / omas-idc (above 1 means
omas-idc is faster). ``--quick`` uses a small series so that CI can run it in seconds; full
runs replace the "read" section of benchmarks/RESULTS.md. ``--workdir DIR`` keeps the phantom
series in DIR and reuses them on the next run (writing the JPEG 2000 series takes minutes).

Usage: ``python benchmarks/read.py [--quick] [--repeats N] [--results PATH] [--workdir DIR]``
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def _cpu_seconds() -> float:
    """User + system time of this process (all threads) and its waited-for children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _best(readers: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, float]]:
    """Per reader: wall seconds of its fastest run and the CPU seconds of that run.

    The readers take turns (round-robin) so that changes of the machine's load over the
    benchmark hit all of them alike.
    """
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in readers}
    for _ in range(repeats):
        for name, fn in readers.items():
            cpu, start = _cpu_seconds(), time.perf_counter()
            fn()
            runs[name].append((time.perf_counter() - start, _cpu_seconds() - cpu))
    return {name: min(times) for name, times in runs.items()}


def _omas(folder: Path) -> Callable[[], object]:
    from omas_idc.read import read_series

    return lambda: read_series(folder)


def _dcm2niix(folder: Path, out: Path) -> Callable[[], object] | None:
    exe = shutil.which("dcm2niix")
    if exe is None:
        return None

    def run() -> None:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        subprocess.run(
            [exe, "-z", "n", "-o", str(out), str(folder)], check=True, capture_output=True
        )

    return run


def _simpleitk(folder: Path) -> Callable[[], object] | None:
    try:
        import SimpleITK as sitk
    except ImportError:
        return None

    def run() -> object:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        return reader.Execute()

    return run


def _make_series(root: Path, shape: tuple[int, int, int], transfer_syntax: str) -> Path:
    from omas_idc.phantom import PhantomOptions, make_phantom

    folder = root / f"{transfer_syntax}-{'x'.join(map(str, shape))}"
    complete = root / f"{folder.name}.complete"
    if complete.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    # 1.6 x 0.8 mm at 512 columns: the phantom's body fills the field of view.
    scale = 512 / shape[2]
    make_phantom(
        folder,
        PhantomOptions(
            seed=0,
            shape=shape,
            pixel_spacing=(0.8 * scale, 0.8 * scale),
            slice_spacing=400.0 / shape[0],
            transfer_syntax=transfer_syntax,
        ),
    )
    complete.touch()
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small series, one repeat")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--results", type=Path, default=None, help="markdown file to update")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep (and reuse) the phantom series here"
    )
    args = parser.parse_args(argv)
    shape = (12, 64, 64) if args.quick else (300, 512, 512)
    repeats = args.repeats or (1 if args.quick else 3)
    rows = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="omas-read-bench-") as tmp:
        root = Path(tmp)
        series_root = args.workdir or root
        series_root.mkdir(parents=True, exist_ok=True)
        for syntax in ("explicit", "jpeg2000"):
            start = time.perf_counter()
            folder = _make_series(series_root, shape, syntax)
            print(f"{syntax} phantom {shape} ready in {time.perf_counter() - start:.1f} s")
            candidates = {
                "omas-idc": _omas(folder),
                "dcm2niix": _dcm2niix(folder, root / f"nii-{syntax}"),
                "SimpleITK": _simpleitk(folder),
            }
            times = _best({n: fn for n, fn in candidates.items() if fn is not None}, repeats)
            ours = times["omas-idc"][0]
            for name, (seconds, cpu) in times.items():
                ratio = seconds / ours
                rows.append((syntax, name, seconds, cpu, ratio))
                print(
                    f"{syntax:9s} {name:10s} {seconds:8.3f} s (CPU {cpu:7.3f} s)   "
                    f"ratio {name}/omas-idc = {ratio:.2f}"
                )
    load_after = os.getloadavg()[0]
    print(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after")
    size = "x".join(str(v) for v in shape[::-1])
    cpus = os.cpu_count()
    section = [
        "## read",
        "",
        f"`python benchmarks/read.py{' --quick' if args.quick else ''}`: phantom {size} "
        f"(x*y*z), best of {repeats}, {cpus} CPUs, Python {platform.python_version()}, "
        f"{platform.machine()}, load average {load_before:.2f} before and {load_after:.2f} "
        "after the run. omas-idc reads into memory (int16 HU, geometry); dcm2niix "
        "converts to an uncompressed NIfTI; SimpleITK reads into memory. Ratio = peer time / "
        "omas-idc time (above 1: omas-idc is faster). CPU = user + system time of the same "
        "run over all threads (CPU / seconds ~ cores kept busy).",
        "",
        "| series | reader | seconds | CPU s | ratio peer/omas-idc |",
        "|---|---|---|---|---|",
        *(f"| {s} | {n} | {t:.3f} | {c:.3f} | {r:.2f} |" for s, n, t, c, r in rows),
        "",
    ]
    target = args.results or (None if args.quick else RESULTS)
    if target is not None:
        _write_section(target, "\n".join(section))
        print(f"updated {target}")
    return 0


def _write_section(path: Path, section: str) -> None:
    """Replace (or append) the ``## read`` section of a markdown file."""
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    pattern = re.compile(r"^## read\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())

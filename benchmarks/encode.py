"""Encode benchmark: omas-idc's SEG encoder (LABELMAP and BINARY) against dcmqi.

Realistic label shapes: the real TotalSegmentator reference segmentation in
../shared/data/totalsegmentator (61 structures of the ``total`` task), resampled (nearest
neighbour) onto a 512x512x300 phantom CT series and split into task maps as CADS groups them
(7 CADS tasks hold these classes; the 2 classes CADS does not segment stay in a TotalSegmentator
``total`` map). Each tool runs as its own process on the same DICOM series and label maps:
wall time, peak RSS (``wait4``), bytes on disk. The label maps are uncompressed NIfTI (``.nii``)
so that neither tool's wall time is mostly gzip inflating its input (``--gzip`` for ``.nii.gz``).
Targets (issue 5): LABELMAP encoding under 5 s and under 10 MB for all tasks; BINARY at least 3x
faster than dcmqi in wall time. The script prints whether each is met.

Usage: ``python benchmarks/encode.py [--quick] [--gzip] [--keep DIR]``; with ``--keep`` an
existing work folder's series and label maps are reused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REFERENCE = (
    Path(__file__).resolve().parents[2]
    / "shared/data/totalsegmentator/tests/reference_files/example_seg_fast_force_split.nii.gz"
)
FULL = (300, 512, 512)
QUICK = (24, 96, 96)


def _run(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and output of a child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    output = process.stdout.read().decode(errors="replace") if process.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command[0]} failed:\n{output[-3000:]}")
    return elapsed, usage.ru_maxrss / 1024.0, output


def _prepare(work: Path, shape: tuple[int, int, int], suffix: str) -> None:
    """Write the phantom series and the task label maps (NIfTI on its grid); describe them."""
    # Imported here: the workers that are timed import only what `omas-idc encode` does.
    import nibabel as nib
    from scipy import ndimage

    from omas_idc.catalog import load_catalog
    from omas_idc.nifti import write_nifti
    from omas_idc.phantom import PhantomOptions, make_phantom

    spacing = 410.0 / shape[1]
    phantom = make_phantom(
        work / "ct",
        PhantomOptions(
            seed=1, shape=shape, pixel_spacing=(spacing, spacing), slice_spacing=450.0 / shape[0]
        ),
    )
    reference = np.asarray(nib.load(REFERENCE).dataobj).transpose(2, 1, 0)  # (z, y, x)
    zoom = [t / s for t, s in zip(shape, reference.shape, strict=True)]
    labels = ndimage.zoom(reference, zoom, order=0, grid_mode=True, mode="nearest")
    catalog = load_catalog()
    maps: dict[tuple[str, str], dict[int, int]] = {}
    for value in (int(v) for v in np.unique(reference) if v):
        structure = catalog.by_model_label("totalseg", "total", value)
        cads = catalog.label_of(structure.name, "cads")
        if cads is not None:
            key, label = ("cads", cads.task), cads.label
        else:
            key, label = ("totalseg", "total"), value
        maps.setdefault(key, {})[value] = label
    described = []
    for (model, task), members in sorted(maps.items()):
        array = np.zeros(shape, dtype=np.uint8)
        for value, label in members.items():
            array[labels == value] = label
        path = work / f"labels_{model}_{task}{suffix}"
        write_nifti(path, array, phantom.geometry)
        described.append(
            {"model": model, "task": task, "path": str(path), "labels": sorted(members.values())}
        )
    (work / "maps.json").write_text(json.dumps(described))


def _worker(work: Path, layout: str) -> None:
    """Runs in a child process: read, encode every task map, write (what a user would run).

    Prints the seconds spent encoding and writing (after reading the series and the maps).
    """
    from datetime import datetime

    from omas_idc.catalog import load_catalog
    from omas_idc.encode import Provenance, encode_binary, encode_labelmaps, write_dataset
    from omas_idc.labelmap import TaskLabelMap
    from omas_idc.nifti import read_nifti_on_grid
    from omas_idc.read import read_series_headers

    started = time.perf_counter()
    # As `omas-idc encode` does: the grid and source headers, no pixels (not needed to encode).
    volume = read_series_headers(work / "ct")
    catalog = load_catalog()
    labelmaps = []
    for entry in json.loads((work / "maps.json").read_text()):
        structures = catalog.labels_for(entry["model"], entry["task"])
        array = read_nifti_on_grid(entry["path"], volume.geometry).astype(np.uint8, copy=False)
        labelmaps.append(
            TaskLabelMap(
                entry["model"],
                entry["task"],
                array,
                {v: structures[v].name for v in entry["labels"]},
            )
        )
    out = work / f"ours_{layout}"
    read_seconds = time.perf_counter() - started
    start = time.perf_counter()
    for model in ("cads", "totalseg"):
        maps = [m for m in labelmaps if m.model == model]
        provenance = Provenance(model=model, model_version="bench", timestamp=datetime(2026, 1, 1))
        if layout == "labelmap":
            for item in encode_labelmaps(volume, maps, catalog, provenance):
                write_dataset(item.dataset, out / f"{model}_{item.tasks[0]}.dcm")
        else:
            binary = encode_binary(volume, maps, catalog, provenance)
            if binary is not None:
                write_dataset(binary.dataset, out / f"{model}_binary.dcm")
    print(f"ENCODE_SECONDS {time.perf_counter() - start:.3f}")
    print(f"READ_SECONDS {read_seconds:.3f}")


def _dcmqi_metadata(entries: list[dict[str, object]]) -> dict[str, object]:
    from omas_idc.catalog import load_catalog

    catalog = load_catalog()

    def code(c: object) -> dict[str, str]:
        return {
            "CodeValue": c.value,
            "CodingSchemeDesignator": c.scheme,  # type: ignore[attr-defined]
            "CodeMeaning": c.meaning,
        }  # type: ignore[attr-defined]

    attributes = []
    for entry in entries:
        structures = catalog.labels_for(str(entry["model"]), str(entry["task"]))
        segments = []
        for label in entry["labels"]:  # type: ignore[attr-defined]
            s = structures[label]
            item = {
                "labelID": label,
                "SegmentLabel": s.name[:64],
                "SegmentAlgorithmType": "AUTOMATIC",
                "SegmentAlgorithmName": "bench",
                "SegmentedPropertyCategoryCodeSequence": code(s.category),
                "SegmentedPropertyTypeCodeSequence": code(s.type),
                "recommendedDisplayRGBValue": list(s.color_rgb),
            }
            if s.type_modifier is not None:
                item["SegmentedPropertyTypeModifierCodeSequence"] = code(s.type_modifier)
            segments.append(item)
        attributes.append(segments)
    return {
        "ContentCreatorName": "bench^",
        "ClinicalTrialSeriesID": "1",
        "ClinicalTrialTimePointID": "1",
        "SeriesDescription": "bench",
        "SeriesNumber": "300",
        "InstanceNumber": "1",
        "BodyPartExamined": "",
        "segmentAttributes": attributes,
    }


def _dcmqi(work: Path, entries: list[dict[str, object]], layout: str) -> tuple[float, float]:
    tool = shutil.which("itkimage2segimage")
    if tool is None:
        raise SystemExit("itkimage2segimage (PyPI dcmqi) is required")
    out = work / f"dcmqi_{layout}"
    out.mkdir()
    # dcmqi's LABELMAP holds one label image; BINARY takes all images at once.
    groups = [[e] for e in entries] if layout == "labelmap" else [entries]
    total_time, peak = 0.0, 0.0
    for index, group in enumerate(groups):
        meta = work / f"dcmqi_{layout}_{index}.json"
        meta.write_text(json.dumps(_dcmqi_metadata(group)))
        seconds, rss, _ = _run(
            [
                tool,
                "--inputDICOMDirectory",
                str(work / "ct"),
                "--inputMetadata",
                str(meta),
                "--inputImageList",
                ",".join(str(e["path"]) for e in group),
                "--outputDICOM",
                str(out / f"{index}.dcm"),
                "--segmentationType",
                layout,
            ]
        )
        total_time += seconds
        peak = max(peak, rss)
    return total_time, peak


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.glob("*.dcm")) / 1e6


def _seconds(output: str, key: str) -> float:
    return float(output.split(key)[1].split()[0])


def _print_targets(rows: list[tuple], quick: bool) -> None:  # type: ignore[type-arg]
    """Issue 5's targets, as measured in this run."""
    by_layout = {row[0]: row for row in rows}
    _, labelmap, labelmap_mb, _, _ = by_layout["labelmap"]
    _, binary, _, dcmqi_binary, _ = by_layout["binary"]
    encode_s = _seconds(labelmap[2], "ENCODE_SECONDS")
    ratio = dcmqi_binary[0] / binary[0]
    note = " (quick series: the targets are set for 512x512x300)" if quick else ""
    print(f"targets{note}:")
    for name, value, met in (
        ("LABELMAP encoding < 5 s", f"{encode_s:.2f} s", encode_s < 5.0),
        ("LABELMAP size < 10 MB", f"{labelmap_mb:.2f} MB", labelmap_mb < 10.0),
        ("BINARY >= 3x faster than dcmqi (wall)", f"x{ratio:.2f}", ratio >= 3.0),
    ):
        print(f"  {name}: {value}: {'met' if met else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small series, seconds (CI)")
    parser.add_argument("--gzip", action="store_true", help="label maps as .nii.gz")
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the work folder here")
    parser.add_argument(
        "--worker", choices=("prepare", "labelmap", "binary"), help=argparse.SUPPRESS
    )
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = QUICK if args.quick else FULL
    suffix = ".nii.gz" if args.gzip else ".nii"
    if args.worker == "prepare":
        _prepare(args.work, shape, suffix)
        return
    if args.worker:
        _worker(args.work, args.worker)
        return
    work = args.keep or Path(tempfile.mkdtemp(prefix="omas-encode-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    prepared = {"shape": list(shape), "suffix": suffix}
    marker = work / "prepared.json"
    if not (marker.exists() and json.loads(marker.read_text()) == prepared):
        # Prepare in a child: ru_maxrss survives fork+exec, so the parent must stay small.
        prepare = [sys.executable, __file__, "--worker", "prepare", "--work", str(work)]
        subprocess.run(prepare + (["--quick"] if args.quick else []), check=True)
        marker.write_text(json.dumps(prepared))
    for old in [*work.glob("ours_*"), *work.glob("dcmqi_*")]:
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    entries = json.loads((work / "maps.json").read_text())
    segments = sum(len(e["labels"]) for e in entries)  # type: ignore[arg-type, misc]
    print(
        f"series {shape[2]}x{shape[1]}x{shape[0]}, {len(entries)} task maps ({suffix}), "
        f"{segments} segments"
    )
    rows = []
    for layout in ("labelmap", "binary"):
        ours = _run([sys.executable, __file__, "--worker", layout, "--work", str(work)])
        theirs = _dcmqi(work, entries, layout)
        rows.append(
            (
                layout,
                ours,
                _size_mb(work / f"ours_{layout}"),
                theirs,
                _size_mb(work / f"dcmqi_{layout}"),
            )
        )
    header = f"{'layout':9} {'tool':8} {'wall s':>8} {'read s':>7} {'encode s':>9}"
    print(f"{header} {'peak MB':>8} {'size MB':>8}")
    for layout, ours, ours_mb, theirs, theirs_mb in rows:
        encode_s = _seconds(ours[2], "ENCODE_SECONDS")
        read_s = _seconds(ours[2], "READ_SECONDS")
        wall, peak = ours[0], ours[1]
        print(
            f"{layout:9} {'omas-idc':8} {wall:8.2f} {read_s:7.2f} {encode_s:9.2f} "
            f"{peak:8.0f} {ours_mb:8.2f}"
        )
        print(
            f"{layout:9} {'dcmqi':8} {theirs[0]:8.2f} {'-':>7} {'-':>9} {theirs[1]:8.0f} "
            f"{theirs_mb:8.2f}"
        )
        speed, memory = theirs[0] / ours[0], theirs[1] / ours[1]
        print(
            f"{layout:9} ratio    speed x{speed:.2f}, memory x{memory:.2f}, "
            f"size x{theirs_mb / ours_mb:.2f} (dcmqi / omas-idc)"
        )
    _print_targets(rows, args.quick)
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()

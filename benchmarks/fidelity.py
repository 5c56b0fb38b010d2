"""Fidelity benchmark: omas-idc against the reference pipelines its cards reproduce (issue #18).

For each reference (CADS's 9 tasks; TotalSegmentator 2.18's ``total``, ``--fast`` and
``--fastest``) and each case (real CT from ../shared/data and phantom acquisitions: coronal,
feet-first prone, oblique, gantry tilt), both tools get the same CT NIfTI and the same nnU-Net
folders (``omas_idc.testing.reference_models.card_folders``: threshold weights, whose outputs
have few near-ties):

- the reference: TotalSegmentator from PyPI through its own Python API
  (``tests/reference/totalseg_reference.py``; its defaults, as a user runs it), or CADS's
  pipeline with nnU-Net 2.5.2 and TPTBox 0.3.0 in ``.venv-cads-ref``
  (``tests/reference/cads_reference.py``);
- omas-idc: ``load_model`` + ``Segmenter`` with the card's reference settings, in a fresh
  process of its own (this script with ``--omas-worker``), reading the same NIfTI.

Per case and task it prints the Dice of every structure with >= 1000 voxels in either map (the
minimum), the fraction of equal voxels, and the wall time and peak resident memory of both
processes (interpreter start and imports included, as a user waits for them), with the speed
ratio. The criteria of issue #18 are checked and printed as PASS/FAIL: Dice >= 0.995 and >= 99.9 %
of voxels equal; omas-idc >= 1.5x faster with lower peak memory.

``--options`` adds what each speed option changes, measured against the reference settings of
the same tool: the packaged demo model (trained) on phantoms for body crop, tile step 0.75,
label resampling and ``--speed quick``; the CADS and TotalSegmentator cards for the
voxel-centred wrapper grid.

Usage: ``python benchmarks/fidelity.py [--quick] [--references cads,totalseg,...]
[--cases ...] [--options] [--check]``. ``--quick`` (CI): the 6 mm TotalSegmentator card and
CADS on a small real-CT crop and one phantom.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OMAS_IDC_SHARED_DATA", ROOT.parent / "shared" / "data"))
REFERENCE_DIR = ROOT / "tests" / "reference"
sys.path.insert(0, str(REFERENCE_DIR))

#: The references: card, tool, and how the tool is asked for it.
REFERENCES: dict[str, dict[str, Any]] = {
    "cads": {"card": "cads", "tool": "cads"},
    "totalseg": {"card": "totalseg", "tool": "totalseg"},
    "totalseg-3mm": {"card": "totalseg-3mm", "tool": "totalseg"},
    "totalseg-6mm": {"card": "totalseg-6mm", "tool": "totalseg"},
}

#: Phantom acquisitions (omas_idc.phantom options) other than axial head-first supine.
PHANTOMS: dict[str, dict[str, Any]] = {
    "phantom-coronal": {"orientation": "coronal"},
    "phantom-ffp": {"patient_position": "FFP"},
    "phantom-oblique": {"oblique_degrees": 20.0},
    "phantom-tilt": {"gantry_tilt_degrees": 15.0},
}

#: The real CT (TotalSegmentator's test image, 3 mm) and the crop ``--quick`` takes of it.
REAL_CT = "totalsegmentator/tests/reference_files/example_ct_sm.nii.gz"
REAL_CROP = (slice(12, 24), slice(20, 84), slice(30, 94))  # k, j, i of the NIfTI
#: The crop of the full run: every slice, the 80x80 voxels (240 mm) around the body's centre.
REAL_FULL_CROP = (slice(0, 30), slice(10, 90), slice(20, 100))
#: The real DICOM series: TotalSegmentator's own (Siemens PET/CT, 20 slices of 512x512).
REAL_DICOM = "totalsegmentator/tests/reference_files/example_ct_dicom"

DICE_MIN, EQUAL_MIN, SPEED_MIN, MIN_VOXELS = 0.995, 0.999, 1.5, 1000


@dataclass
class ToolRun:
    """One tool's label maps of a case (``[z, y, x]``, task -> map) and its cost."""

    maps: dict[str, np.ndarray]
    wall_s: float
    peak_mb: float


def _wait(command: list[str], env: dict[str, str] | None, log: Path, timeout: float) -> float:
    """Run ``command``; returns its peak RSS (MiB, children included); raises on failure."""
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            raise
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{log.read_text(errors='replace')[-3000:]}")
    del timeout
    return usage.ru_maxrss / 1024.0


# -- cases ------------------------------------------------------------------------------------


def case_volume(name: str, quick: bool) -> Any:
    """The CT volume of a named case."""
    from totalseg_conftest_helpers import geometry_from_affine, volume_from_array

    from omas_idc.nifti import read_nifti
    from omas_idc.phantom import PhantomOptions, render_phantom
    from omas_idc.read import read_series

    if name == "real-ct":
        hu, lps = read_nifti(SHARED / REAL_CT)
        k, j, i = REAL_CROP if quick else REAL_FULL_CROP
        start = np.array([i.start, j.start, k.start, 1.0])
        hu = hu[k, j, i]
        lps = lps.copy()
        lps[:3, 3] = (lps @ start)[:3]
        hu = np.ascontiguousarray(hu)
        return volume_from_array(hu, geometry_from_affine(lps, hu.shape))
    if name == "real-dicom":
        return read_series(SHARED / REAL_DICOM)
    base = PhantomOptions(shape=(24, 40, 48), pixel_spacing=(3.0, 3.5), slice_spacing=4.0)
    if not quick:
        base = replace(base, shape=(32, 64, 72), pixel_spacing=(2.2, 2.4), slice_spacing=3.0)
    geometry, hu, _labels, _structures = render_phantom(replace(base, **PHANTOMS[name]))
    return volume_from_array(hu, geometry)


# -- the tools --------------------------------------------------------------------------------


def run_reference(name: str, ct: Path, weights: Path, out: Path) -> ToolRun:
    """The reference pipeline of ``name`` on ``ct``."""
    spec = REFERENCES[name]
    if spec["tool"] == "totalseg":
        from totalseg_reference import CARD_SETTINGS, install_weights, run_totalseg

        home = out / "home"
        install_weights(home, weights, spec["card"])
        result = run_totalseg(ct, home, out, **CARD_SETTINGS[spec["card"]])
        task = "total" if spec["card"] == "totalseg" else _only_task(spec["card"])
        return ToolRun({task: result.zyx}, result.process_s, result.peak_rss_bytes / 2**20)
    import nibabel as nib

    from omas_idc.engine.card import load_card

    card = load_card("cads")
    models = weights / "cads" / card.variant(None)
    python = ROOT / ".venv-cads-ref" / "bin" / "python"
    if not python.exists():
        raise RuntimeError("the CADS reference venv is missing: run .ci/run (it builds it)")
    started = time.perf_counter()
    peak = _wait(
        [str(python), str(REFERENCE_DIR / "cads_reference.py"), str(ct), str(models), str(out)],
        None,
        out / "cads.log",
        1800,
    )
    wall = time.perf_counter() - started
    case = ct.name.removesuffix(".nii.gz")
    record = json.loads((out / case / f"{case}_reference.json").read_text())
    maps = {
        task: np.asarray(nib.load(path).get_fdata()).astype(np.uint8).transpose(2, 1, 0)
        for task, path in record["files"].items()
    }
    return ToolRun(maps, wall, peak)


def _only_task(card_name: str) -> str:
    from omas_idc.engine.card import load_card

    (task,) = load_card(card_name).tasks
    return task.id


def run_omas(
    card: str, ct: Path, weights: Path, out: Path, settings: dict[str, Any] | None = None
) -> ToolRun:
    """omas-idc on ``ct`` in a fresh process (this script's ``--omas-worker``)."""
    started = time.perf_counter()
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--omas-worker",
        json.dumps(
            {
                "card": card,
                "ct": str(ct),
                "weights": str(weights),
                "out": str(out),
                "settings": settings or {},
            }
        ),
    ]
    peak = _wait(command, None, out / "omas.log", 1800)
    wall = time.perf_counter() - started
    data = np.load(out / "omas_maps.npz")
    return ToolRun({k: data[k] for k in data.files}, wall, peak)


def _omas_worker(spec: dict[str, Any]) -> None:
    from totalseg_conftest_helpers import geometry_from_affine, volume_from_array

    from omas_idc.engine.model import load_model
    from omas_idc.engine.segmenter import Segmenter, SegmenterConfig
    from omas_idc.nifti import read_nifti

    hu, lps = read_nifti(Path(spec["ct"]))
    hu = np.ascontiguousarray(hu).astype(np.int16)
    volume = volume_from_array(hu, geometry_from_affine(lps, hu.shape))
    model = load_model(spec["card"], weights_dir=spec["weights"])
    with Segmenter(model, SegmenterConfig(device="cpu", **spec["settings"])) as segmenter:
        maps = segmenter.segment(volume)
    arrays: dict[str, Any] = {m.task: m.array for m in maps}
    np.savez(Path(spec["out"]) / "omas_maps.npz", **arrays)


# -- comparison -------------------------------------------------------------------------------


def compare(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Per-structure Dice (>= 1000 voxels in either map) and voxel agreement."""
    from totalseg_reference import compare_labelmaps

    return compare_labelmaps(a, b, min_voxels=MIN_VOXELS)


def fidelity_rows(
    references: list[str], cases: list[str], quick: bool, work: Path
) -> list[dict[str, Any]]:
    """Both tools on every (reference, case); one row per task."""
    from omas_idc.nifti import write_nifti
    from omas_idc.testing.reference_models import card_folders

    patch = (32, 64, 64)
    rows = []
    for case in cases:
        volume = case_volume(case, quick)
        for name in references:
            card = REFERENCES[name]["card"]
            if REFERENCES[name]["tool"] == "totalseg" and volume.geometry.is_sheared:
                # TotalSegmentator hands the NIfTI to nnU-Net's SimpleITK reader, which refuses
                # a sheared grid ("ITK only supports orthonormal direction cosines"); CADS
                # writes its resampled image with a diagonal affine and runs
                print(
                    f"{name:>13} {case:>16}  skipped: TotalSegmentator refuses a sheared "
                    "(gantry-tilted) NIfTI",
                    flush=True,
                )
                continue
            out = work / f"{name}-{case}"
            (out / "ref").mkdir(parents=True, exist_ok=True)
            (out / "omas").mkdir(parents=True, exist_ok=True)
            weights = work / "weights"
            if not (weights / card).is_dir():
                card_folders(card, weights, patch_size=patch)
            ct = out / f"{case}.nii.gz"
            write_nifti(ct, volume.hu, volume.geometry)
            reference = run_reference(name, ct, weights, out / "ref")
            omas = run_omas(card, ct, weights, out / "omas")
            for task, ref_map in reference.maps.items():
                if task not in omas.maps:
                    continue
                stats = compare(ref_map, omas.maps[task])
                rows.append(
                    {
                        "reference": name,
                        "case": case,
                        "task": task,
                        "shape": "x".join(str(n) for n in volume.hu.shape),
                        "scored": len(stats["dice"]),
                        "min_dice": stats["worst_dice"],
                        "worst_label": stats["worst_label"],
                        "equal": stats["equal_fraction"],
                        "differing": stats["differing"],
                        "ref_s": reference.wall_s,
                        "omas_s": omas.wall_s,
                        "ref_mb": reference.peak_mb,
                        "omas_mb": omas.peak_mb,
                    }
                )
                print(_row_text(rows[-1]), flush=True)
    return rows


def _row_text(row: dict[str, Any]) -> str:
    ok = row["min_dice"] >= DICE_MIN and row["equal"] >= EQUAL_MIN
    return (
        f"{row['reference']:>13} {row['case']:>16} {row['task']:>6} {row['shape']:>11} "
        f"{row['scored']:>4} {row['min_dice']:>8.4f} {100 * row['equal']:>8.3f}% "
        f"{row['differing']:>7} {'PASS' if ok else 'FAIL'}"
    )


def speed_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Wall time and peak memory of both tools per (reference, case)."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        seen.setdefault((row["reference"], row["case"]), row)
    out = []
    for (name, case), row in seen.items():
        out.append(
            {
                "reference": name,
                "case": case,
                "ref_s": row["ref_s"],
                "omas_s": row["omas_s"],
                "speedup": row["ref_s"] / row["omas_s"],
                "ref_mb": row["ref_mb"],
                "omas_mb": row["omas_mb"],
            }
        )
    return out


# -- speed options ----------------------------------------------------------------------------

OPTIONS: dict[str, dict[str, Any]] = {
    "body crop": {"body_crop": True},
    "tile step 0.75": {"tile_step_size": 0.75},
    "labels resampled": {"resample_logits": False},
    "quick (all)": {
        "body_crop": True,
        "tile_step_size": 0.75,
        "resample_logits": False,
        "wrapper_grid": "centred",
    },
}


def option_rows(cases: list[str], quick: bool, work: Path) -> list[dict[str, Any]]:
    """Dice of each speed option against the reference settings of the same model.

    The packaged demo model (trained, 6 mm) on realistic-size phantoms (the phantom's default
    400 x 320 x 384 mm acquisition) and the real CT: body crop, tile step, label resampling and
    ``--speed quick``; then the demo's folder behind a wrapper card (TotalSegmentator's linear
    and CADS's cubic zoom to 6 mm) for the voxel-centred wrapper grid. Threshold folders would
    exaggerate the grid's effect (every HU band edge is a label border).
    """
    from omas_idc.engine.card import WrapperZoom, load_card
    from omas_idc.engine.model import load_model
    from omas_idc.engine.segmenter import Segmenter, SegmenterConfig
    from omas_idc.phantom import PhantomOptions, render_phantom

    del work
    demo = load_model("demo")
    wrappers = {
        "linear zoom (TotalSegmentator)": WrapperZoom(1, "nearest", "int32", True),
        "cubic zoom (CADS)": WrapperZoom(3, "constant", "int32", False),
    }
    rows = []
    for case in cases:
        if case.startswith("phantom-") and not quick:
            from totalseg_conftest_helpers import volume_from_array

            geometry, hu, _l, _s = render_phantom(PhantomOptions(**PHANTOMS[case]))
            volume = volume_from_array(hu, geometry)
        else:
            volume = case_volume(case, quick)
        with Segmenter(demo, SegmenterConfig()) as segmenter:
            base = segmenter.segment(volume)
        for option, settings in OPTIONS.items():
            with Segmenter(demo, SegmenterConfig(**settings)) as segmenter:
                changed = segmenter.segment(volume)
            rows.extend(_option_stats(demo.card.name, case, option, base, changed))
        for label, zoom in wrappers.items():
            card = replace(load_card("demo"), recipe="totalseg", spacing_mm=6.0, wrapper_zoom=zoom)
            model = load_model(card)
            with Segmenter(model, SegmenterConfig()) as segmenter:
                base = segmenter.segment(volume)
            with Segmenter(model, SegmenterConfig(wrapper_grid="centred")) as segmenter:
                changed = segmenter.segment(volume)
            rows.extend(_option_stats(f"demo, {label}", case, "centred grid", base, changed))
    return rows


def _option_stats(
    model: str, case: str, option: str, base: list[Any], changed: list[Any]
) -> list[dict[str, Any]]:
    rows = []
    for a, b in zip(base, changed, strict=True):
        stats = compare(a.array, b.array)
        dice = list(stats["dice"].values())
        rows.append(
            {
                "model": model,
                "case": case,
                "option": option,
                "task": a.task,
                "scored": len(dice),
                "min_dice": min(dice) if dice else 1.0,
                "mean_dice": float(np.mean(dice)) if dice else 1.0,
                "equal": stats["equal_fraction"],
            }
        )
        print(
            f"{model:>36} {case:>16} {option:>17} {a.task:>6} {len(dice):>4} "
            f"{rows[-1]['min_dice']:>8.4f} {rows[-1]['mean_dice']:>8.4f} "
            f"{100 * stats['equal_fraction']:>8.3f}%",
            flush=True,
        )
    return rows


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small cases, two references")
    parser.add_argument("--references", default=None, help="comma-separated (default: all)")
    parser.add_argument("--cases", default=None, help="comma-separated (default: all)")
    parser.add_argument("--options", action="store_true", help="also the speed options' Dice")
    parser.add_argument("--options-only", action="store_true", help="only the speed options")
    parser.add_argument("--check", action="store_true", help="exit 1 unless every row passes")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    parser.add_argument("--omas-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.omas_worker is not None:
        _omas_worker(json.loads(args.omas_worker))
        return 0
    references = (
        []
        if args.options_only
        else args.references.split(",")
        if args.references
        else (["totalseg-6mm", "cads"] if args.quick else list(REFERENCES))
    )
    cases = (
        args.cases.split(",")
        if args.cases
        else (["real-ct", "phantom-coronal"] if args.quick else ["real-ct", *PHANTOMS])
    )
    print(f"# fidelity, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs", flush=True)
    print(
        f"{'reference':>13} {'case':>16} {'task':>6} {'shape':>11} {'n':>4} {'min Dice':>8} "
        f"{'equal':>9} {'differ':>7}"
    )
    with tempfile.TemporaryDirectory(prefix="omas-fidelity-") as tmp:
        work = Path(tmp)
        rows = fidelity_rows(references, cases, args.quick, work)
        print("\n# cost (wall time and peak RSS of each process, interpreter start included)")
        print(
            f"{'reference':>13} {'case':>16} {'ref s':>7} {'omas s':>7} {'ratio':>6} "
            f"{'ref MiB':>8} {'omas MiB':>8}"
        )
        speeds = speed_rows(rows)
        for s in speeds:
            fast = s["speedup"] >= SPEED_MIN and s["omas_mb"] < s["ref_mb"]
            print(
                f"{s['reference']:>13} {s['case']:>16} {s['ref_s']:>7.1f} {s['omas_s']:>7.1f} "
                f"{s['speedup']:>5.2f}x {s['ref_mb']:>8.0f} {s['omas_mb']:>8.0f} "
                f"{'PASS' if fast else 'FAIL'}"
            )
        options: list[dict[str, Any]] = []
        if args.options or args.options_only:
            print("\n# speed options against the reference settings (Dice >= 1000 voxels)")
            print(
                f"{'model':>36} {'case':>16} {'option':>17} {'task':>6} {'n':>4} "
                f"{'min Dice':>8} {'mean':>8} {'equal':>9}"
            )
            option_cases = [c for c in cases if c != "real-dicom"]
            options = option_rows(option_cases, args.quick, work)
    failed = [r for r in rows if r["min_dice"] < DICE_MIN or r["equal"] < EQUAL_MIN]
    print(
        f"\n{len(rows) - len(failed)} of {len(rows)} (reference, case, task) rows meet "
        f"Dice >= {DICE_MIN} and >= {100 * EQUAL_MIN:.1f} % equal voxels"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"fidelity": rows, "cost": speeds, "options": options}, indent=1, default=str
            )
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this driver's own peak RSS: {peak:.0f} MiB)")
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Cases for the TotalSegmentator reference tests: CT volumes, their NIfTI, both tools' maps.

Both tools get the same voxels: a :class:`~omas_idc.volume.CTVolume` is written with
``omas_idc.nifti.write_nifti`` (NIfTI data ``(i, j, k)`` = the volume's ``[z, y, x]``
transposed, RAS affine of its LPS affine), TotalSegmentator reads that file, and its label map
comes back on the same grid (:attr:`ReferenceResult.zyx` is then in the volume's order). A case
is run once per test session (:func:`run_case`: every card and case in two TotalSegmentator
subprocesses side by side) and shared by the harness and fidelity tests.
"""

from __future__ import annotations

import atexit
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from totalseg_reference import (
    CARD_SETTINGS,
    ReferenceResult,
    TotalSegBatch,
    TotalSegJob,
    install_weights,
)

from omas_idc.geometry import LPS_TO_RAS, VolumeGeometry
from omas_idc.nifti import read_nifti, write_nifti
from omas_idc.testing.reference_models import card_folders
from omas_idc.train.evaluate import volume_from_array
from omas_idc.volume import CTVolume

#: The real CT (TotalSegmentator's own test image, 3 mm, RAS) of ../shared/data.
REAL_CT = "totalsegmentator/tests/reference_files/example_ct_sm.nii.gz"

#: Options that stop no output from changing: one export worker instead of six (each is a
#: spawned interpreter importing torch, which costs more than it saves on two cores).
QUIET_WORKERS: dict[str, Any] = {"nr_thr_saving": 1}

#: Patch size of the synthetic folders (all cases fit a few tiles).
PATCH = (32, 64, 64)


def geometry_from_affine(
    lps: npt.NDArray[np.float64], shape: tuple[int, int, int]
) -> VolumeGeometry:
    """The grid of an LPS voxel ``(x, y, z)`` affine and a ``[z, y, x]`` shape."""
    column_step, row_step, slice_step = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    col_spacing = float(np.linalg.norm(column_step))
    row_spacing = float(np.linalg.norm(row_step))
    orientation = [*(column_step / col_spacing), *(row_step / row_spacing)]
    positions = lps[:3, 3] + np.arange(shape[0])[:, None] * slice_step
    return VolumeGeometry.from_slices(
        orientation, (row_spacing, col_spacing), positions, shape[1], shape[2]
    )


def real_ct_volume(shared_data: Path, *, k: slice, j: slice, i: slice) -> CTVolume:
    """A crop of the real CT (NIfTI index ranges ``i, j, k``) as a CTVolume."""
    hu, lps = read_nifti(shared_data / REAL_CT)
    start = np.array([i.start or 0, j.start or 0, k.start or 0, 1.0])
    cropped = np.ascontiguousarray(hu[k, j, i])
    affine = lps.copy()
    affine[:3, 3] = (lps @ start)[:3]
    return volume_from_array(cropped, geometry_from_affine(affine, cropped.shape))


def phantom_volume(**changes: Any) -> CTVolume:
    """A small phantom acquisition as a CTVolume (no DICOM round trip)."""
    from omas_idc.phantom import PhantomOptions, render_phantom

    base = PhantomOptions(shape=(24, 40, 48), pixel_spacing=(3.0, 3.5), slice_spacing=4.0)
    geometry, hu, _labels, _structures = render_phantom(replace(base, **changes))
    return volume_from_array(hu, geometry)


#: The real CT crop: 64 x 64 x 12 voxels of 3 mm (upper abdomen: liver, spleen, ribs, spine).
REAL_CROP = {"k": slice(12, 24), "j": slice(20, 84), "i": slice(30, 94)}

#: Phantom acquisitions other than axial head-first supine.
PHANTOMS: dict[str, dict[str, Any]] = {
    "coronal": {"orientation": "coronal"},
    "feet-first-prone": {"patient_position": "FFP"},
}


#: The cases of every card, in the order they run.
CASES = ("real-ct", *PHANTOMS)

#: ../shared/data beside the checkout (as tests/conftest.py finds it), or None where absent.
SHARED_DATA: Path | None = Path(__file__).resolve().parents[3] / "shared" / "data"
if not SHARED_DATA.is_dir():
    SHARED_DATA = None


def case_volume(name: str, shared_data: Path | None = None) -> CTVolume:
    """The CT of a named case: ``"real-ct"`` (needs ``shared_data``) or a :data:`PHANTOMS` key."""
    if name == "real-ct":
        if shared_data is None:
            raise ValueError("the real CT case needs the shared data folder")
        return real_ct_volume(shared_data, **REAL_CROP)
    return phantom_volume(**PHANTOMS[name])


@dataclass
class CaseRun:
    """One case through both tools (arrays in the volume's ``[z, y, x]`` order)."""

    volume: CTVolume
    reference: ReferenceResult
    omas: npt.NDArray[np.unsignedinteger]
    omas_s: float
    omas_cpu_s: float


_RUNS: dict[tuple[str, str], CaseRun] = {}


def omas_labels(
    card: str, weights_root: Path, volume: CTVolume
) -> tuple[npt.NDArray[np.unsignedinteger], float]:
    """omas-idc's combined label map of ``volume`` (``[z, y, x]``) and its seconds."""
    from omas_idc.engine.model import load_model
    from omas_idc.engine.segmenter import Segmenter, SegmenterConfig

    model = load_model(card, weights_dir=weights_root)
    started = time.perf_counter()
    with Segmenter(model, SegmenterConfig(device="cpu")) as segmenter:
        maps = segmenter.segment(volume)
    seconds = time.perf_counter() - started
    if len(maps) != 1:
        raise AssertionError(f"{card}: expected one combined map, got {[m.task for m in maps]}")
    return maps[0].array, seconds


#: TotalSegmentator subprocesses run at once (each mostly on one core: imports, spawned workers).
LANES = max(1, min(2, os.cpu_count() or 1))

#: Relative cost of one TotalSegmentator call per card (the 5-part model spawns 5x the workers).
COST = {"totalseg": 5, "totalseg-3mm": 1, "totalseg-6mm": 1}

#: (card, case) -> (the batch running it, its index there, the weights, the volume).
_PENDING: dict[tuple[str, str], tuple[TotalSegBatch, int, Path, CTVolume]] = {}
_BATCHES: list[TotalSegBatch] = []


@atexit.register
def _stop_batches() -> None:
    # a session that ran only some of the tests leaves no TotalSegmentator running
    for batch in _BATCHES:
        batch.kill()


def _start_all(root: Path) -> None:
    """Start TotalSegmentator on every (card, case), spread over :data:`LANES` subprocesses
    (one home each, holding all cards) balanced by :data:`COST`."""
    names = [n for n in CASES if n != "real-ct" or SHARED_DATA is not None]
    work = sorted(
        ((card, case) for card in CARD_SETTINGS for case in names),
        key=lambda item: -COST[item[0]],
    )
    lanes: list[list[tuple[str, str]]] = [[] for _ in range(LANES)]
    for item in work:
        min(lanes, key=lambda lane: sum(COST[c] for c, _ in lane)).append(item)
    weights_root = root / "weights"
    for card in CARD_SETTINGS:
        if not (weights_root / card).is_dir():
            card_folders(card, weights_root, patch_size=PATCH)
    for number, lane in enumerate(lanes):
        if not lane:
            continue
        # one home per subprocess: TotalSegmentator rewrites its config.json on every run
        home = root / f"home-{number}"
        for card in CARD_SETTINGS:
            install_weights(home, weights_root, card)
        jobs, volumes = [], []
        for card, case in lane:
            volume = case_volume(case, SHARED_DATA)
            case_dir = root / "cases" / f"{card}-{case}"
            case_dir.mkdir(parents=True, exist_ok=True)
            ct = case_dir / "ct.nii.gz"
            write_nifti(ct, volume.hu, volume.geometry)
            volumes.append(volume)
            jobs.append(TotalSegJob(ct, case_dir, **CARD_SETTINGS[card], extra=QUIET_WORKERS))
        batch = TotalSegBatch(jobs, home)
        _BATCHES.append(batch)
        for index, ((card, case), volume) in enumerate(zip(lane, volumes, strict=True)):
            _PENDING[(card, case)] = (batch, index, weights_root, volume)


def run_case(root: Path, card: str, name: str) -> CaseRun:
    """Both tools on the case :func:`case_volume` names.

    The first request starts TotalSegmentator on every card of :data:`CARD_SETTINGS` and every
    available case (the real CT where ../shared/data is present, and :data:`PHANTOMS`) in
    :data:`LANES` background subprocesses; omas-idc then runs the requested case. Later
    requests (the harness and the fidelity tests) reuse these runs.
    """
    if (card, name) not in _RUNS:
        if name == "real-ct" and SHARED_DATA is None:
            raise ValueError(f"case {name!r} needs ../shared/data, which is absent")
        if not _PENDING:
            _start_all(root)
        batch, index, weights_root, volume = _PENDING[(card, name)]
        cpu = time.process_time()  # omas-idc first: it overlaps the TotalSegmentator lanes
        omas, seconds = omas_labels(card, weights_root, volume)
        cpu = time.process_time() - cpu
        reference = batch.results()[index]
        _RUNS[(card, name)] = CaseRun(volume, reference, omas, seconds, cpu)
    return _RUNS[(card, name)]


def ras_affine(volume: CTVolume) -> npt.NDArray[np.float64]:
    """The NIfTI (RAS) affine ``write_nifti`` gives the volume."""
    return LPS_TO_RAS @ volume.geometry.affine


def report(title: str, stats: dict[str, Any], run: CaseRun | None = None) -> str:
    """A printable summary of :func:`compare_labelmaps`' result (and the run's cost)."""
    lines = [
        f"{title}: equal voxels {stats['equal_fraction']:.5f} "
        f"({stats['differing']} differ), worst Dice {stats['worst_dice']:.4f} "
        f"(label {stats['worst_label']}), {len(stats['dice'])} scored labels"
    ]
    if run is not None:
        lines.append(
            f"  TotalSegmentator {run.reference.wall_s:.1f} s in the call, "
            f"{run.reference.process_s:.1f} s and {run.reference.cpu_s:.1f} CPU s in all, "
            f"peak {run.reference.peak_rss_bytes / 2**20:.0f} MiB; "
            f"omas-idc {run.omas_s:.1f} s ({run.omas_cpu_s:.1f} CPU s)"
        )
    low = sorted(stats["dice"].items(), key=lambda kv: kv[1])[:5]
    lines.append("  lowest Dice: " + ", ".join(f"{k}={v:.4f}" for k, v in low))
    return "\n".join(lines)

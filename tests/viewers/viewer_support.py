"""What the viewer tests share: the outputs of demo-model runs on phantoms in two acquisition
orientations (both SEG layouts), their truth, a loopback Orthanc holding them, OHIF served
beside it, and where the viewer tools are (``.ci/run`` installs them into ``.viewers/``).

Every missing piece skips the tests that need it, with its name and how to install it
(see ``ohif_missing`` and ``tests/orthanc.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from omas_idc.catalog import load_catalog
from omas_idc.catalog.model import Structure
from omas_idc.phantom import PhantomOptions, make_phantom

ROOT = Path(__file__).resolve().parents[2]
#: Where .ci/run installs OHIF's dist and puppeteer-core (git-ignored).
VIEWERS = Path(os.environ.get("OMAS_IDC_VIEWERS", ROOT / ".viewers"))
OHIF_DIST = VIEWERS / "ohif" / "package" / "dist"
NODE_MODULES = VIEWERS / "node" / "node_modules"
#: slicer-core's own venv (its VTK), built by .ci/run for the Slicer module's tests too.
SLICER_PYTHON = Path(
    os.environ.get("OMAS_IDC_SLICER_PYTHON", ROOT / ".venv-slicer" / "bin" / "python")
)
CHROMIUM = Path("/usr/lib/chromium/chromium")
#: Screenshots and logs kept for people to look at (git-ignored).
ARTIFACTS = ROOT / "test-artifacts" / "viewers"

MODEL, TASK = "omas-demo", "900"
#: The demo model's labels (its card), as phantom structure names.
DEMO_LABELS = {
    1: "liver",
    2: "spleen",
    3: "kidney_left",
    4: "kidney_right",
    5: "heart",
    6: "urinary_bladder",
    7: "hip_left",
    8: "hip_right",
}
#: Lateral pairs: (left, right) structure names.
LATERAL_PAIRS = (("kidney_left", "kidney_right"), ("hip_left", "hip_right"))
#: Acquisitions: axial head-first supine and coronal; a study each (different seeds).
ACQUISITIONS = {
    "axial-HFS": PhantomOptions(
        seed=7, shape=(40, 48, 56), pixel_spacing=(8.0, 8.0), slice_spacing=8.0
    ),
    "coronal": PhantomOptions(
        seed=8,
        shape=(48, 40, 56),
        pixel_spacing=(8.0, 8.0),
        slice_spacing=8.0,
        orientation="coronal",
    ),
}


@dataclass(frozen=True)
class Case:
    """One acquisition's run outputs and truth.

    ``truth`` is the phantom's label map in the demo model's numbering (z, y, x on the source
    grid), ``encoded`` the demo model's label map that the SEGs hold, ``affine`` the voxel
    (x, y, z indices) -> LPS matrix, ``segs`` the SEG file per layout, ``structures`` the
    catalog entry per label.
    """

    name: str
    series_dir: Path
    study_instance_uid: str
    truth: npt.NDArray[np.uint8]
    encoded: npt.NDArray[np.uint8]
    affine: npt.NDArray[np.float64]
    segs: dict[str, Path]
    series_descriptions: dict[str, str]
    structures: dict[int, Structure] = field(default_factory=dict)

    def world(self, zyx: tuple[int, int, int]) -> list[float]:
        """The LPS position (mm) of a voxel centre."""
        z, y, x = zyx
        return [float(v) for v in (self.affine @ np.array([x, y, z, 1.0]))[:3]]

    def interior_point(self, label: int) -> tuple[int, int, int]:
        """A voxel deep inside ``label``: its in-plane 3x3 neighbourhood is all ``label``, on
        the slice where that interior is largest, nearest to the interior's centroid."""
        mask = (self.truth == label) & (self.encoded == label)
        inside = ndimage.binary_erosion(mask, structure=np.ones((1, 3, 3), dtype=bool))
        if not inside.any():
            inside = mask
        k = int(np.argmax(inside.sum(axis=(1, 2))))
        ys, xs = np.nonzero(inside[k])
        cy, cx = ys.mean(), xs.mean()
        i = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
        return k, int(ys[i]), int(xs[i])


def _cli(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "omas_idc.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "1000"},
    )
    assert done.returncode == 0, f"omas-idc {' '.join(args)}: {done.stdout}{done.stderr}"


def make_case(name: str, options: PhantomOptions, root: Path) -> Case:
    phantom = make_phantom(root / "ct", options)
    labels = root / "labels"
    _cli("segment", str(root / "ct"), "--model", "demo", "--out", str(labels), "--device", "cpu")
    segs = {}
    for layout in ("labelmap", "binary"):
        out = root / layout
        _cli(
            "encode",
            str(root / "ct"),
            str(labels / f"{MODEL}_{TASK}.nii.gz"),
            "--out",
            str(out),
            "--model",
            MODEL,
            "--task",
            TASK,
            "--layout",
            layout,
            "--model-version",
            "1.0.0",
            "--timestamp",
            "2026-05-01T00:00:00",
        )
        (segs[layout],) = sorted(out.glob("*.dcm"))
    import pydicom

    descriptions = {
        layout: str(pydicom.dcmread(path, stop_before_pixels=True).SeriesDescription)
        for layout, path in segs.items()
    }
    by_name = {v: k for k, v in phantom.label_names.items()}
    truth = np.zeros(phantom.labels.shape, dtype=np.uint8)
    for label, structure in DEMO_LABELS.items():
        truth[phantom.labels == by_name[structure]] = label
    import nibabel as nib

    # omas-idc writes the NIfTI on the series' own grid, data in (x, y, z) order.
    image = nib.load(labels / f"{MODEL}_{TASK}.nii.gz")
    encoded = np.asarray(image.dataobj, dtype=np.uint8).transpose(2, 1, 0)
    assert encoded.shape == truth.shape, (encoded.shape, truth.shape)
    catalog = load_catalog()
    resolved = catalog.resolve_labels(MODEL, TASK, {k: v for k, v in DEMO_LABELS.items()})
    return Case(
        name=name,
        series_dir=root / "ct",
        study_instance_uid=phantom.study_instance_uid,
        truth=truth,
        encoded=encoded,
        affine=np.asarray(phantom.geometry.affine, dtype=np.float64),
        segs=segs,
        series_descriptions=descriptions,
        structures=dict(resolved),
    )


def ohif_missing() -> str | None:
    """Why OHIF cannot be driven here, or ``None``."""
    if shutil.which("node") is None:
        return "node is not installed (Debian package nodejs)"
    if not CHROMIUM.is_file():
        return f"Chromium is not installed at {CHROMIUM} (Debian package chromium)"
    if not (OHIF_DIST / "index.html").is_file():
        return f"OHIF's prebuilt dist is not at {OHIF_DIST} (npm pack @ohif/app@3.13.2; .ci/run)"
    if not (NODE_MODULES / "puppeteer-core").is_dir():
        return f"puppeteer-core is not installed in {NODE_MODULES} (.ci/run installs it)"
    return None


def run_ohif(spec: dict[str, object], workdir: Path) -> dict[str, object]:
    """Run ohif_check.js on ``spec``; its JSON report."""
    spec_file = workdir / "spec.json"
    spec_file.write_text(json.dumps({"chromium": str(CHROMIUM), **spec}))
    done = subprocess.run(
        ["node", str(Path(__file__).parent / "ohif_check.js"), str(spec_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout))

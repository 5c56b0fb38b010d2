"""CPU cost of the per-series stages that stay on a VM's CPUs, measured on this machine.

:func:`calibrate` writes a phantom CT series of 512 x 512 pixels at two slice counts, then runs
on each, one after the other in this process, the stages a GPU run leaves to the CPU: read
(DICOM files -> ``CTVolume``), encode (one LABELMAP SEG per task of the model's label table),
QA (measurements, TID 1500 SR, release rows) and publish (previews, copies into a folder store,
the ``DONE.json`` marker). The label maps are made, not segmented: each task's labels fill
contiguous runs of the phantom's body voxels, every other run left background, so that every
structure of the table occurs once (the encoder and QA see the label count of the real model).
The CPU time of each stage (``time.process_time``: user + system of this process) is fitted as
``fixed + per_slice * slices`` through the two sizes.

The segmentation itself is not calibrated here: on a GPU machine it is the accelerator's time
(``--gpu-seconds`` of ``omas-idc batch estimate``, measured on a device or stated as an
assumption).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from omas_idc.errors import ConfigurationError

__all__ = [
    "CALIBRATED_STAGES",
    "Calibration",
    "StageCost",
    "calibrate",
    "load_calibration",
    "stored_calibration",
]

#: The stages :func:`calibrate` measures, in the order a series passes them.
CALIBRATED_STAGES = ("read", "encode", "qa", "publish")


@dataclass(frozen=True)
class StageCost:
    """CPU-seconds of one stage for a series of ``slices`` slices of 512 x 512 pixels.

    Attributes
    ----------
    fixed_seconds
        CPU-seconds per series whatever its size.
    per_slice_seconds
        CPU-seconds per slice.
    """

    fixed_seconds: float
    per_slice_seconds: float

    def seconds(self, slices: float) -> float:
        """CPU-seconds for one series of ``slices`` slices (never below 0)."""
        return max(0.0, self.fixed_seconds + self.per_slice_seconds * slices)


@dataclass(frozen=True)
class Calibration:
    """Measured CPU costs per stage, and where and when they were measured.

    Attributes
    ----------
    stages
        Stage name -> :class:`StageCost`.
    measured_at
        UTC time of the measurement (ISO 8601).
    machine
        Where: host name, CPU model, CPU count, load average before the run, Python.
    phantom
        What: the matrix, slice counts and model label table the stages ran on.
    samples
        The raw measurements: per slice count, stage -> CPU-seconds (and wall seconds).
    note
        Free text (e.g. "shared machine, 2 vCPUs, noisy").
    """

    stages: Mapping[str, StageCost]
    measured_at: str
    machine: Mapping[str, Any]
    phantom: Mapping[str, Any]
    samples: Sequence[Mapping[str, Any]] = ()
    note: str = ""
    source: str = field(default="", compare=False)

    def cpu_seconds(self, slices: float) -> dict[str, float]:
        """Stage -> CPU-seconds for one series of ``slices`` slices."""
        return {name: cost.seconds(slices) for name, cost in self.stages.items()}

    def where(self) -> str:
        """One line: where and when this was measured."""
        machine = self.machine
        return (
            f"{machine.get('hostname', '?')} ({machine.get('cpu_count', '?')} CPUs, "
            f"{machine.get('cpu_model', '?')}), {self.measured_at}"
            + (f"; {self.note}" if self.note else "")
        )

    def to_dict(self) -> dict[str, Any]:
        """The calibration as JSON-ready data (:func:`load_calibration` reads it back)."""
        data = asdict(self)
        data.pop("source")
        data["stages"] = {name: asdict(cost) for name, cost in self.stages.items()}
        return data


def _parse(data: Mapping[str, Any], source: str) -> Calibration:
    try:
        stages = {
            str(name): StageCost(float(cost["fixed_seconds"]), float(cost["per_slice_seconds"]))
            for name, cost in dict(data["stages"]).items()
        }
        return Calibration(
            stages=stages,
            measured_at=str(data["measured_at"]),
            machine=dict(data.get("machine", {})),
            phantom=dict(data.get("phantom", {})),
            samples=list(data.get("samples", [])),
            note=str(data.get("note", "")),
            source=source,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigurationError(
            f"{source} is not a calibration: {err!r}. Write one with "
            "`omas-idc batch calibrate --out calibration.json`.",
            reason="calibration",
        ) from err


def load_calibration(path: Path) -> Calibration:
    """Read a calibration written by ``omas-idc batch calibrate``.

    Raises
    ------
    ConfigurationError
        If the file cannot be read or lacks a field.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigurationError(
            f"cannot read the calibration {path}: {err}. Write one with "
            "`omas-idc batch calibrate --out calibration.json`.",
            reason="calibration",
        ) from err
    return _parse(data, str(path))


def stored_calibration() -> Calibration:
    """The calibration shipped with omas-idc (``calibration.json``; where and when inside).

    Raises
    ------
    ConfigurationError
        If the shipped file is malformed (a broken installation).
    """
    text = (
        resources.files("omas_idc.run.batch")
        .joinpath("calibration.json")
        .read_text(encoding="utf-8")
    )
    return _parse(json.loads(text), "omas_idc/run/batch/calibration.json (shipped)")


def _machine() -> dict[str, Any]:
    cpu_model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(v, 2) for v in load],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _labelmaps(body: npt.NDArray[np.bool_], model: str) -> list[Any]:
    """One label map per task of ``model``: its labels fill runs of the body's voxels."""
    from omas_idc.catalog import load_catalog
    from omas_idc.labelmap import TaskLabelMap

    catalog = load_catalog()
    flat = np.flatnonzero(body.ravel())
    maps = []
    for task in catalog.tasks(model):
        labels = sorted(catalog.labels_for(model, task))
        names = {label: catalog.label_row(model, task, label).label_name for label in labels}
        dtype = np.uint8 if max(labels) < 256 else np.uint16
        array: npt.NDArray[np.unsignedinteger] = np.zeros(body.size, dtype=dtype)
        runs = np.array_split(flat, 2 * len(labels))
        for label, run in zip(labels, runs[1::2], strict=False):
            array[run] = label
        maps.append(TaskLabelMap(model, task, array.reshape(body.shape), names))
    return maps


def _measure(folder: Path, slices: int, model: str) -> dict[str, Any]:
    """Write a phantom of ``slices`` slices and time each stage on it."""
    from omas_idc.catalog import load_catalog
    from omas_idc.encode import Provenance
    from omas_idc.identity import ModelIdentity
    from omas_idc.phantom import PhantomOptions, make_phantom
    from omas_idc.publish.folder_store import FolderStore
    from omas_idc.publish.store import publish_series
    from omas_idc.read import read_series
    from omas_idc.run.finish import encode_step, preview_step, qa_step
    from omas_idc.series_ref import SeriesRef

    phantom = make_phantom(
        folder / "ct",
        PhantomOptions(
            seed=1,
            shape=(slices, 512, 512),
            pixel_spacing=(0.7, 0.7),
            slice_spacing=2.5,
            noise=10.0,
        ),
    )
    catalog = load_catalog()
    provenance = Provenance.for_model(
        ModelIdentity(model, "calibration"), datetime(2026, 1, 1, tzinfo=UTC)
    )
    staging = folder / "staging"
    cpu: dict[str, float] = {}
    wall: dict[str, float] = {}

    def timed(stage: str, action: Callable[[], Any]) -> Any:
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        result = action()
        cpu[stage] = time.process_time() - cpu_start
        wall[stage] = time.perf_counter() - wall_start
        return result

    volume = timed("read", lambda: read_series(folder / "ct"))
    labelmaps = _labelmaps(phantom.labels > 0, model)
    encoded = timed("encode", lambda: encode_step(volume, labelmaps, catalog, provenance, staging))
    checked = timed("qa", lambda: qa_step(volume, labelmaps, encoded, catalog, provenance, staging))
    ref = SeriesRef(
        series_instance_uid=phantom.series_instance_uid,
        study_instance_uid=phantom.study_instance_uid,
        patient_id="CALIBRATION",
        collection_id="calibration",
        modality="CT",
        crdc_series_uuid="00000000-0000-4000-8000-000000000000",
        instance_count=slices,
        size_bytes=sum(p.stat().st_size for p in phantom.files),
        aws_bucket="idc-open-data",
        idc_version=0,
    )
    store = FolderStore(str(folder / "out"))

    def publish() -> None:
        outputs = [*encoded.outputs, *checked.outputs]
        outputs += preview_step(volume, labelmaps, catalog, staging)
        publish_series(store, ref, outputs, {"calibration": True})

    timed("publish", publish)
    return {
        "slices": slices,
        "size_bytes": ref.size_bytes,
        "cpu_seconds": {k: round(v, 4) for k, v in cpu.items()},
        "wall_seconds": {k: round(v, 4) for k, v in wall.items()},
    }


def _fit(samples: Sequence[Mapping[str, Any]]) -> dict[str, StageCost]:
    """Least-squares line ``fixed + per_slice * slices`` per stage (per slice >= 0)."""
    slices = np.array([float(s["slices"]) for s in samples])
    stages: dict[str, StageCost] = {}
    for stage in CALIBRATED_STAGES:
        seconds = np.array([float(s["cpu_seconds"][stage]) for s in samples])
        if len(set(slices)) < 2:
            stages[stage] = StageCost(0.0, float(seconds.mean() / slices.mean()))
            continue
        slope, intercept = np.polyfit(slices, seconds, 1)
        if slope < 0:  # noise on a shared machine: fall back to a proportional cost
            stages[stage] = StageCost(0.0, float(seconds.sum() / slices.sum()))
        else:
            stages[stage] = StageCost(round(float(intercept), 4), round(float(slope), 6))
    return stages


def calibrate(
    slice_counts: Sequence[int] = (32, 126),
    *,
    model: str = "cads",
    note: str = "",
    work_dir: Path | None = None,
) -> Calibration:
    """Measure the CPU stages on phantoms of 512 x 512 x ``slice_counts`` (see the module).

    Parameters
    ----------
    slice_counts
        The phantom sizes; two or more distinct counts give a fixed and a per-slice cost.
    model
        The model family whose label table the label maps follow (``"cads"``: 9 tasks).
    note
        Stored with the result (e.g. whether the machine was shared).
    work_dir
        Where to write the phantoms and outputs (a temporary folder by default; removed).

    Raises
    ------
    ConfigurationError
        If ``slice_counts`` is empty or holds a count below 8.
    """
    if not slice_counts or min(slice_counts) < 8:
        raise ConfigurationError(
            f"calibration slice counts {list(slice_counts)} must be given and at least 8 each",
            reason="calibration",
        )
    machine = _machine()
    measured_at = datetime.now(UTC).isoformat(timespec="seconds")
    samples = []
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="omas-calibrate-") as tmp:
        for number, slices in enumerate(slice_counts):
            folder = Path(tmp, f"s{number}")
            samples.append(_measure(folder, int(slices), model))
            shutil.rmtree(folder, ignore_errors=True)
    return Calibration(
        stages=_fit(samples),
        measured_at=measured_at,
        machine=machine,
        phantom={
            "rows": 512,
            "columns": 512,
            "slice_counts": [int(s) for s in slice_counts],
            "pixel_spacing_mm": 0.7,
            "slice_spacing_mm": 2.5,
            "transfer_syntax": "explicit VR little endian (uncompressed)",
            "label_table": model,
            "seg_layout": "LABELMAP",
        },
        samples=samples,
        note=note,
    )

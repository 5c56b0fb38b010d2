"""TotalSegmentator 2.18 itself (the PyPI package) as the reference of the totalseg cards.

:func:`install_weights` lays omas-idc's synthetic nnU-Net folders (made by
``omas_idc.testing.reference_models.card_folders``) out where TotalSegmentator looks for its
weights: ``$TOTALSEG_HOME_DIR/nnunet/results/Dataset.../{trainer}__{plans}__3d_fullres``
(``totalsegmentator.config.get_weights_dir``; ``libs.download_pretrained_weights`` downloads
nothing when that folder exists), with a ``config.json`` that turns the usage statistics off
(``config.send_usage_stats``) and marks the statistics notice as shown.

:func:`run_totalseg` runs ``totalsegmentator.python_api.totalsegmentator`` (``ml=True``,
``device="cpu"``, NIfTI output, no preview or statistics) in a fresh interpreter (this file run
as a script) with ``TOTALSEG_HOME_DIR`` set before TotalSegmentator is imported, and every
internet connection and remote name lookup refused and recorded: a run that tried the network
fails. Everything else is TotalSegmentator's default: resampling order 1, tile step 0.8 for
``total``, no crop, no ``roi_subset``, its large-image z-split. :func:`run_totalseg_batch`
(:class:`TotalSegBatch` in the background) runs several calls in one interpreter.

:func:`compare_labelmaps` gives per-label Dice and voxel agreement of two label maps (also used
by ``benchmarks/fidelity.py``).

Arrays: TotalSegmentator returns its label map on the input NIfTI's own grid, as the NIfTI data
array ``(i, j, k)``; omas-idc's arrays are ``[z, y, x]`` = ``(k, j, i)`` of a NIfTI that
``omas_idc.nifti`` wrote (:attr:`ReferenceResult.zyx` transposes).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "TOTALSEG_VERSION",
    "ReferenceResult",
    "TotalSegBatch",
    "TotalSegJob",
    "TotalSegmentatorError",
    "compare_labelmaps",
    "install_weights",
    "run_totalseg",
    "run_totalseg_batch",
    "totalseg_available",
]

#: The TotalSegmentator release the cards reproduce (``.ci/run`` installs it).
TOTALSEG_VERSION = "2.18.0"

#: TotalSegmentator's own settings per card: task and speed flags of its Python API.
CARD_SETTINGS: Mapping[str, Mapping[str, Any]] = {
    "totalseg": {"task": "total", "fast": False, "fastest": False},
    "totalseg-3mm": {"task": "total", "fast": True, "fastest": False},
    "totalseg-6mm": {"task": "total", "fast": False, "fastest": True},
}


class TotalSegmentatorError(RuntimeError):
    """TotalSegmentator failed, touched the network, or returned a map on another grid."""


@dataclass(frozen=True)
class ReferenceResult:
    """What one TotalSegmentator run produced.

    Attributes
    ----------
    labels
        The combined multilabel map (uint8), shape and axis order of the input NIfTI's data
        array ``(i, j, k)``.
    affine
        The output NIfTI's affine (equal to the input's).
    wall_s
        Seconds of the ``totalsegmentator(...)`` call inside the subprocess (weights loading,
        resampling, prediction, writing the output).
    process_s
        Seconds of the whole subprocess (interpreter start and imports included; all jobs of
        a :func:`run_totalseg_batch`).
    peak_rss_bytes
        Peak resident memory of the subprocess and the worker processes it waited for
        (``os.wait4``'s ``ru_maxrss``; the batch's peak).
    cpu_s
        User and system CPU seconds of the subprocess and its workers (steadier than wall
        time on a shared machine; the batch's).
    log
        The subprocess's stdout and stderr.
    """

    labels: npt.NDArray[np.uint8]
    affine: npt.NDArray[np.float64]
    wall_s: float
    process_s: float
    peak_rss_bytes: int
    cpu_s: float
    log: str = field(repr=False, default="")

    @property
    def zyx(self) -> npt.NDArray[np.uint8]:
        """The labels in omas-idc's ``[z, y, x]`` order (``omas_idc.nifti`` conventions)."""
        return np.ascontiguousarray(self.labels.transpose(2, 1, 0))


def totalseg_available() -> bool:
    """Whether ``TotalSegmentator==2.18.0`` is installed (without importing it or torch)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("TotalSegmentator") == TOTALSEG_VERSION
    except PackageNotFoundError:
        return False


def install_weights(home: Path, weights_root: Path, card_name: str) -> None:
    """Place a card's nnU-Net folders where TotalSegmentator looks for its weights.

    Parameters
    ----------
    home
        TotalSegmentator's home folder (``TOTALSEG_HOME_DIR``); created where missing. Several
        cards may share one home.
    weights_root
        The folder ``card_folders(card_name, weights_root)`` wrote
        (``weights_root/<card>/<variant>/Dataset.../...``).
    card_name
        A totalseg card (``"totalseg"``, ``"totalseg-3mm"``, ``"totalseg-6mm"``).

    Raises
    ------
    FileNotFoundError
        Where a task's result folder is missing under ``weights_root``.
    """
    from omas_idc.engine.card import load_card

    card = load_card(card_name)
    base = Path(weights_root) / card.name / card.variant(None)
    results = Path(home) / "nnunet" / "results"
    results.mkdir(parents=True, exist_ok=True)
    for task in card.tasks:
        folder = base / task.result_folder
        if not (folder / "plans.json").is_file():
            raise FileNotFoundError(
                f"{folder} holds no plans.json: write the card's folders first with "
                f"omas_idc.testing.reference_models.card_folders({card.name!r}, {weights_root})"
            )
        target = results / task.dataset
        if target.is_symlink() or target.exists():
            if target.resolve() == (base / task.dataset).resolve():
                continue
            raise FileExistsError(f"{target} already holds other weights; use another home")
        target.symlink_to((base / task.dataset).resolve(), target_is_directory=True)
    config = Path(home) / "config.json"
    settings: dict[str, Any] = {}
    if config.is_file():
        settings = json.loads(config.read_text())
    settings.update(
        {
            "totalseg_id": "totalseg_OFFLINE0",
            "send_usage_stats": False,
            "statistics_disclaimer_shown": True,
        }
    )
    settings.setdefault("prediction_counter", 0)
    config.write_text(json.dumps(settings, indent=4))


@dataclass(frozen=True)
class TotalSegJob:
    """One TotalSegmentator call: input, output folder, settings (see :func:`run_totalseg`)."""

    ct_nifti: Path
    out_dir: Path
    task: str = "total"
    fast: bool = False
    fastest: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def spec(self) -> dict[str, Any]:
        """The job as the subprocess reads it."""
        out_dir = Path(self.out_dir).resolve()
        options: dict[str, Any] = {
            "ml": True,
            "task": self.task,
            "fast": self.fast,
            "fastest": self.fastest,
            "device": "cpu",
            "output_type": "nifti",
            "preview": False,
            "statistics": False,
            "quiet": True,
        }
        options.update(self.extra)
        return {
            "input": str(Path(self.ct_nifti).resolve()),
            "output": str(out_dir / "totalseg.nii.gz"),
            "report": str(out_dir / "totalseg_run.json"),
            "options": options,
        }


def run_totalseg(
    ct_nifti: Path,
    home: Path,
    out_dir: Path,
    *,
    task: str = "total",
    fast: bool = False,
    fastest: bool = False,
    extra: dict[str, Any] | None = None,
    timeout_s: float = 900.0,
) -> ReferenceResult:
    """Run TotalSegmentator's Python API on a CT NIfTI in a fresh interpreter.

    Parameters
    ----------
    ct_nifti
        The input CT (HU).
    home
        TotalSegmentator's home with the weights (:func:`install_weights`).
    out_dir
        Where the output ``totalseg.nii.gz``, the run's JSON and its log are written.
    task, fast, fastest
        TotalSegmentator's ``task``, ``fast`` (3 mm, task 297) and ``fastest`` (6 mm, 298).
    extra
        More keyword arguments of ``totalsegmentator(...)`` (e.g. ``{"nr_thr_saving": 1}``,
        which changes no output); TotalSegmentator's defaults otherwise.
    timeout_s
        The subprocess (and its workers) are killed after this many seconds.

    Raises
    ------
    TotalSegmentatorError
        Where the run fails, tries to reach the network, times out, or its output does not lie
        on the input's grid.
    """
    job = TotalSegJob(Path(ct_nifti), Path(out_dir), task, fast, fastest, dict(extra or {}))
    return run_totalseg_batch([job], home, timeout_s=timeout_s)[0]


def run_totalseg_batch(
    jobs: Sequence[TotalSegJob], home: Path, *, timeout_s: float = 1800.0
) -> list[ReferenceResult]:
    """Run several TotalSegmentator calls one after the other in one fresh interpreter.

    Saves an interpreter start and TotalSegmentator's imports per job (tests). Each result's
    ``wall_s`` is its own call (the first one also imports ``totalsegmentator.nnunet``);
    ``process_s``, ``cpu_s`` and ``peak_rss_bytes`` are the whole subprocess's.

    Raises
    ------
    TotalSegmentatorError
        As :func:`run_totalseg`, for the first job that fails.
    """
    return TotalSegBatch(jobs, home, timeout_s=timeout_s).results()


class TotalSegBatch:
    """A :func:`run_totalseg_batch` started in the background: :meth:`results` waits for it.

    Several batches may run at once (on a machine with idle cores); each is killed, with its
    workers, after ``timeout_s`` or when the waiting is interrupted.
    """

    def __init__(self, jobs: Sequence[TotalSegJob], home: Path, *, timeout_s: float = 1800.0):
        if not jobs:
            raise ValueError("a TotalSegmentator batch needs at least one job")
        self.jobs = list(jobs)
        self.timeout_s = timeout_s
        self.specs = []
        for job in self.jobs:
            Path(job.out_dir).mkdir(parents=True, exist_ok=True)
            self.specs.append(job.spec())
        first = Path(self.jobs[0].out_dir)
        jobs_file, self.log_path = first / "totalseg_jobs.json", first / "totalseg.log"
        jobs_file.write_text(json.dumps(self.specs, indent=1))
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("nnUNet_") and k != "TOTALSEG_WEIGHTS_PATH"
        }
        env["TOTALSEG_HOME_DIR"] = str(Path(home).resolve())
        command = [sys.executable, str(Path(__file__).resolve()), "--jobs", str(jobs_file)]
        self.started = time.perf_counter()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.timer = threading.Timer(timeout_s, _kill_group, (self.process.pid,))
        self.timer.daemon = True
        self.timer.start()
        self._results: list[ReferenceResult] | None = None

    def kill(self) -> None:
        """Stop the subprocess and its workers where it still runs (no results then)."""
        if self._results is None and self.process.poll() is None:
            _kill_group(self.process.pid)
            self.process.wait()
        self.timer.cancel()

    def results(self) -> list[ReferenceResult]:
        """Wait for the subprocess; the jobs' results in order.

        Raises
        ------
        TotalSegmentatorError
            As :func:`run_totalseg`, for the first job that fails.
        """
        if self._results is None:
            self._results = self._wait()
        return self._results

    def _wait(self) -> list[ReferenceResult]:
        import nibabel as nib

        try:
            _, status, usage = os.wait4(self.process.pid, 0)
        except BaseException:  # interrupted: leave no TotalSegmentator behind
            _kill_group(self.process.pid)
            raise
        finally:
            self.timer.cancel()
        self.process.returncode = os.waitstatus_to_exitcode(status)
        process_s = time.perf_counter() - self.started
        text = self.log_path.read_text(errors="replace")
        if self.process.returncode != 0:
            raise TotalSegmentatorError(
                f"TotalSegmentator exited with {self.process.returncode} after {process_s:.0f} s "
                f"(timeout {self.timeout_s:.0f} s); its output:\n{text[-4000:]}"
            )
        results = []
        for job, spec in zip(self.jobs, self.specs, strict=True):
            run = json.loads(Path(spec["report"]).read_text())
            if run["network"]:
                raise TotalSegmentatorError(f"TotalSegmentator tried the network: {run['network']}")
            image = nib.load(spec["output"])
            source = nib.load(str(job.ct_nifti))
            same = image.shape == source.shape and np.allclose(
                image.affine, source.affine, atol=1e-4
            )
            if not same:
                raise TotalSegmentatorError(
                    f"TotalSegmentator's output {image.shape} does not lie on the input grid "
                    f"{source.shape} of {job.ct_nifti}"
                )
            results.append(
                ReferenceResult(
                    labels=np.asarray(image.dataobj).astype(np.uint8),
                    affine=np.asarray(image.affine, dtype=np.float64),
                    wall_s=float(run["wall_s"]),
                    process_s=process_s,
                    peak_rss_bytes=int(usage.ru_maxrss) * 1024,
                    cpu_s=float(usage.ru_utime + usage.ru_stime),
                    log=text,
                )
            )
        return results


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def compare_labelmaps(
    a: npt.NDArray[np.integer], b: npt.NDArray[np.integer], min_voxels: int = 1000
) -> dict[str, Any]:
    """Per-label Dice and voxel agreement of two label maps on the same grid.

    Parameters
    ----------
    a, b
        Label maps of the same shape and axis order (e.g. the reference's and omas-idc's).
    min_voxels
        Labels with at least this many voxels in either map are scored.

    Returns
    -------
    dict
        ``dice`` (label -> Dice of the scored labels), ``voxels`` (label -> (count in ``a``,
        count in ``b``) of every non-zero label present), ``equal_fraction`` (fraction of
        voxels with the same label, background included), ``differing`` (number of voxels
        that differ), ``worst_label`` and ``worst_dice`` (the lowest scored Dice; ``None`` and
        1.0 where no label reaches ``min_voxels``).
    """
    if a.shape != b.shape:
        raise ValueError(f"label maps differ in shape: {a.shape} vs {b.shape}")
    x = np.asarray(a).ravel().astype(np.int64)
    y = np.asarray(b).ravel().astype(np.int64)
    size = int(max(x.max(initial=0), y.max(initial=0))) + 1
    joint = np.bincount(x * size + y, minlength=size * size).reshape(size, size)
    in_a, in_b, both = joint.sum(axis=1), joint.sum(axis=0), np.diag(joint)
    voxels = {int(k): (int(in_a[k]), int(in_b[k])) for k in range(1, size) if in_a[k] or in_b[k]}
    dice = {
        k: 2.0 * int(both[k]) / (na + nb)
        for k, (na, nb) in voxels.items()
        if max(na, nb) >= min_voxels
    }
    worst = min(dice, key=lambda k: dice[k]) if dice else None
    equal = int(both.sum())
    return {
        "dice": dice,
        "voxels": voxels,
        "equal_fraction": equal / x.size if x.size else 1.0,
        "differing": int(x.size - equal),
        "worst_label": worst,
        "worst_dice": dice[worst] if worst is not None else 1.0,
    }


# --- the subprocess ------------------------------------------------------------------------


def _refuse_network(attempts: list[str]) -> None:
    """Make every internet socket connection and remote name lookup fail, recording them.

    Unix-domain sockets (nnU-Net's multiprocessing manager) and loopback lookups still work.
    """
    import socket

    original_connect, original_connect_ex = socket.socket.connect, socket.socket.connect_ex
    original_getaddrinfo = socket.getaddrinfo
    local = {None, "localhost", "127.0.0.1", "::1", b"localhost"}

    def refused(what: str) -> OSError:
        attempts.append(what)
        return OSError(f"network access refused by the TotalSegmentator harness: {what}")

    def connect(self: socket.socket, address: Any) -> None:
        if self.family == socket.AF_UNIX:
            return original_connect(self, address)
        raise refused(f"connect {address!r}")

    def connect_ex(self: socket.socket, address: Any) -> int:
        if self.family == socket.AF_UNIX:
            return original_connect_ex(self, address)
        raise refused(f"connect_ex {address!r}")

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in local:
            return original_getaddrinfo(host, *args, **kwargs)
        raise refused(f"getaddrinfo {host!r}")

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo


def _main(argv: list[str] | None = None) -> int:
    import resource

    parser = argparse.ArgumentParser(description="Run TotalSegmentator offline (test harness)")
    parser.add_argument("--jobs", required=True, help="JSON list of TotalSegJob.spec() dicts")
    args = parser.parse_args(argv)
    if "TOTALSEG_HOME_DIR" not in os.environ:
        parser.error("TOTALSEG_HOME_DIR must be set")
    attempts: list[str] = []
    _refuse_network(attempts)
    from totalsegmentator.python_api import totalsegmentator

    for spec in json.loads(Path(args.jobs).read_text()):
        started = time.perf_counter()
        totalsegmentator(spec["input"], spec["output"], **spec["options"])
        wall_s = time.perf_counter() - started
        report = {
            "wall_s": wall_s,
            "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "workers_maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
            "network": list(attempts),
            "options": spec["options"],
        }
        Path(spec["report"]).write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(_main())

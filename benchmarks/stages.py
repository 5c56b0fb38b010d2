"""Per-stage CPU cost of one series through the whole run, at real sizes, with CADS's networks.

    python benchmarks/stages.py [--quick] [--inputs 126,300,real] [--tasks 551,552,...]
                                [--windows 1] [--workdir DIR]

Inputs (``--inputs``): ``126``, a 512x512x126 phantom (0.7 x 0.7 x 2.5 mm, uncompressed);
``300``, a 512x512x300 phantom (0.7 x 0.7 x 1.25 mm, JPEG 2000 lossless); ``real``, the real
Philips CT series of ../shared/data (dcm_qa_ct S21570/S2010). Each series is served by a
loopback S3 server (moto_server) in IDC's bucket layout. The model: CADS's 9 tasks (``--tasks``
for fewer) as nnU-Net ResEnc-L networks (``nnUNetResEncUNetLPlans``, 192^3 patch, 102 M
parameters each; omas_idc.testing.resenc_plans) with random weights, loaded through the cads
card (its 1.5 mm wrapper, its post-processing rules).

Each input runs in a child process, one series end to end as the run does it: fetch (s5cmd from
the loopback S3 server, no content check), read, segment (the run's Segmenter, split into the
resampling to 1.5 mm, the network windows, the resampling back and CADS's post-processing),
encode (one LABELMAP SEG per task), QA + SR (measurements, the TID 1500 SR, the release rows)
and publish (previews, then every output uploaded with s5cmd to a bucket of the same server).

Measured per stage: CPU seconds (user + system of every thread of the process, plus its
s5cmd children; not the S3 server's), wall seconds, and the peak resident set of the process
while the stage ran (the kernel's high-water mark, reset at each stage: torch's memory
included). The stages run one after another (no pipelining), so each one's CPU is its own.

The networks: a real-size ResEnc-L window takes more than a minute of CPU on 2 cores, so only
the first ``--windows`` windows of each of the first ``--measured-tasks`` tasks go through the
network (measured: CPU seconds per window); every other window reuses a measured output (the
accumulation into the logits runs for every window). The network stage of a series is then
*extrapolated*: its window count x the measured CPU per window. Later inputs reuse the first
input's CPU per window (same networks, same patch). The output says which numbers are
measured and which extrapolated.

The label maps come from random networks (and, for windows not run, stand-in outputs seeded
by the class count): fragmented, unlike anatomy, so the stages whose cost depends on the
content (post-processing, encode, QA) are measured on other label maps than real CADS output
gives. The table's SEG line says how many structures were found.

``--quick`` (CI): two small phantoms, 2 tasks with small ResEnc networks (32^3 patch), every
window through the network. Nothing is asserted here.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
REAL_SERIES = "dcm_qa_ct/In/Philips/S21570/S2010"
BUCKET = "idc-open-data"
OUT_BUCKET = "omas-out"
GB = 1e9

#: name -> (shape (slices, rows, columns), pixel mm, slice mm, transfer syntax)
PHANTOMS: dict[str, tuple[tuple[int, int, int], float, float, str]] = {
    "126": ((126, 512, 512), 0.7, 2.5, "explicit"),
    "300": ((300, 512, 512), 0.7, 1.25, "jpeg2000"),
    "q20": ((20, 40, 40), 1.5, 3.0, "explicit"),
    "q24": ((24, 40, 40), 1.5, 2.0, "jpeg2000"),
}
QUICK_INPUTS = ("q20", "q24")
QUICK_TASKS = ("551", "559")
QUICK_PATCH = (32, 32, 32)

#: Stages in table order; the segment's parts are indented by name.
STAGES = (
    "fetch (loopback S3)",
    "read",
    "resample to 1.5 mm",
    "network windows: accumulate",
    "network windows: forward",
    "resample from 1.5 mm",
    "post-processing",
    "segment: other",
    "encode (LABELMAP SEGs)",
    "QA + SR",
    "publish (previews + upload)",
)
FORWARD = "network windows: forward"
EXCLUDED = "benchmark overhead"


# -- measuring -------------------------------------------------------------------------------


def _cpu_seconds() -> float:
    """User + system CPU of this process (all threads) and its waited-for children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Meter:
    """CPU, wall and peak resident set per stage; one stage at a time (nested ones pause the
    outer one). The peak is the kernel's high-water mark (VmHWM), reset at each switch."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self.peak_gb: dict[str, float] = {}
        self.current: str | None = None
        self._cpu = _cpu_seconds()
        self._wall = time.perf_counter()
        self._resettable = True
        self._reset_peak()

    def _reset_peak(self) -> None:
        if self._resettable:
            try:
                with open("/proc/self/clear_refs", "w") as refs:
                    refs.write("5")
            except OSError:
                self._resettable = False  # the peak is then the process's peak so far

    def switch(self, stage: str | None) -> str | None:
        """Close the current stage's interval and open ``stage``'s; return the one closed."""
        cpu, wall = _cpu_seconds(), time.perf_counter()
        closed = self.current
        if closed is not None:
            self.cpu[closed] = self.cpu.get(closed, 0.0) + cpu - self._cpu
            self.wall[closed] = self.wall.get(closed, 0.0) + wall - self._wall
            peak = _status_kb("VmHWM") * 1024 / GB
            self.peak_gb[closed] = max(self.peak_gb.get(closed, 0.0), peak)
        self._reset_peak()
        self.current, self._cpu, self._wall = stage, _cpu_seconds(), time.perf_counter()
        return closed

    @contextmanager
    def within(self, stage: str) -> Iterator[None]:
        """Attribute the block to ``stage``, then resume the stage it interrupted."""
        previous = self.switch(stage)
        try:
            yield
        finally:
            self.switch(previous)


# -- inputs ----------------------------------------------------------------------------------


def _phantom(root: Path, name: str) -> Path:
    """The phantom series ``name`` under ``root`` (kept: a 512x512x300 JPEG 2000 series takes
    minutes to write)."""
    from omas_idc.phantom import PhantomOptions, make_phantom

    shape, pixel, slice_mm, syntax = PHANTOMS[name]
    folder = root / f"phantom-{name}"
    complete = root / f"phantom-{name}.complete"
    if not complete.exists():
        shutil.rmtree(folder, ignore_errors=True)
        make_phantom(
            folder,
            PhantomOptions(
                seed=int(name.strip("q")),
                shape=shape,
                pixel_spacing=(pixel, pixel),
                slice_spacing=slice_mm,
                transfer_syntax=syntax,
            ),
        )
        complete.touch()
    return folder


def _describe(name: str) -> str:
    if name == "real":
        return f"real CT ({REAL_SERIES})"
    shape, pixel, slice_mm, syntax = PHANTOMS[name]
    kind = "JPEG 2000 lossless" if syntax == "jpeg2000" else "uncompressed"
    return f"phantom {shape[2]}x{shape[1]}x{shape[0]} ({pixel}/{slice_mm} mm, {kind})"


def _upload(client: Any, folder: Path, name: str) -> dict[str, Any]:
    """Put a series' files into the bucket as IDC lays them out; its SeriesRef fields."""
    import pydicom

    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    series_uid = str(first.SeriesInstanceUID)
    crdc = str(uuid.uuid5(uuid.NAMESPACE_OID, series_uid))
    total = 0
    for i, path in enumerate(files):
        body = path.read_bytes()
        total += len(body)
        client.put_object(Bucket=BUCKET, Key=f"{crdc}/{i:04d}.dcm", Body=body)
    return {
        "series_instance_uid": series_uid,
        "study_instance_uid": str(first.StudyInstanceUID),
        "patient_id": str(first.get("PatientID", "")) or f"P-{name}",
        "collection_id": "bench",
        "modality": "CT",
        "crdc_series_uuid": crdc,
        "instance_count": len(files),
        "size_bytes": total,
        "aws_bucket": BUCKET,
        "idc_version": 25,
    }


# -- the child: one series end to end --------------------------------------------------------


def _timed_segmenter(meter: Meter, windows: int, measured_tasks: int) -> tuple[type, dict]:
    """A Segmenter whose worker reports its parts to ``meter``; only the first ``windows``
    windows of the first ``measured_tasks`` networks run through the network."""
    import torch

    from omas_idc.engine import segmenter as module
    from omas_idc.engine.segmenter import Segmenter

    stats: dict[str, Any] = {"windows": {}, "forward_cpu": [], "forward_peak_gb": 0.0}
    outputs: dict[int, torch.Tensor] = {}
    real: dict[int, int] = {}
    original_postprocess = module.postprocess

    def postprocess(*args: Any, **kwargs: Any) -> Any:
        with meter.within("post-processing"):
            return original_postprocess(*args, **kwargs)

    module.postprocess = postprocess  # this child process only

    class TimedSegmenter(Segmenter):
        def _prepare_series(self, *args: Any) -> Any:
            with meter.within("resample to 1.5 mm"):
                return super()._prepare_series(*args)

        def _prepare_job(self, job: Any) -> None:
            with meter.within("resample to 1.5 mm"):
                super()._prepare_job(job)
            for task in job.tasks:
                stats["windows"][task.id] = len(job.starts) * len(task.networks)

        def _step_windows(self, active: list[Any]) -> None:
            with meter.within("network windows: accumulate"):
                super()._step_windows(active)

        def _predict(
            self, network: torch.nn.Module, tiles: torch.Tensor, axes: tuple[int, ...] | None
        ) -> torch.Tensor:
            key = id(network)
            if key not in real and len(real) < measured_tasks:
                real[key] = 0
            if key in real and real[key] < windows:
                real[key] += tiles.shape[0]
                cpu = _cpu_seconds()
                with meter.within(FORWARD):
                    out = super()._predict(network, tiles, axes)
                stats["forward_cpu"].append((_cpu_seconds() - cpu) / tiles.shape[0])
                stats["forward_peak_gb"] = meter.peak_gb[FORWARD]
                outputs.setdefault(key, out[:1].clone())
                return out
            with meter.within(EXCLUDED):
                if key not in outputs:
                    # seeded by the class count: the same stand-in content on every run
                    classes = network.decoder.seg_layers[-1].out_channels  # type: ignore[union-attr,index]
                    generator = torch.Generator().manual_seed(classes)
                    outputs[key] = torch.randn(
                        (1, classes, *tiles.shape[2:]), generator=generator
                    ).to(tiles.device)
                return outputs[key].expand(tiles.shape[0], *outputs[key].shape[1:])

        def _finish_job(self, job: Any) -> None:
            super()._finish_job(job)
            # the stand-in outputs of this job's networks go with the job: a real run holds
            # one batch's outputs at a time, not one per task
            for task in job.tasks:
                for network in task.networks:
                    outputs.pop(id(network), None)

        def _labels_on_working_grid(self, job: Any, task: Any) -> Any:
            with meter.within("resample from 1.5 mm"):
                return super()._labels_on_working_grid(job, task)

        def _finish_series(self, series: Any) -> Any:
            # labels back to the source grid (nearest) and orientation; post-processing inside
            with meter.within("resample from 1.5 mm"):
                return super()._finish_series(series)

    return TimedSegmenter, stats


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    from omas_idc.catalog import load_catalog
    from omas_idc.encode import Provenance
    from omas_idc.engine.model import load_model
    from omas_idc.engine.segmenter import SegmenterConfig
    from omas_idc.fetch import FetchOptions, fetch_series
    from omas_idc.publish.object_store import ObjectStore
    from omas_idc.publish.store import publish_series
    from omas_idc.read import read_series
    from omas_idc.run.finish import encode_step, preview_step, qa_step
    from omas_idc.series_ref import SeriesRef

    meter = Meter()
    work = Path(spec["work"])
    endpoint = spec["endpoint"]
    ref = SeriesRef(**spec["ref"])
    with meter.within("load model"):
        model = load_model("cads", weights_dir=spec["weights"], tasks=spec["tasks"])
        catalog = load_catalog()
    provenance = Provenance(
        model=model.card.name, model_version="bench", timestamp=datetime(2026, 1, 1)
    )
    segmenter_class, stats = _timed_segmenter(meter, spec["windows"], spec["measured_tasks"])
    # One window per forward pass (the run's default is 2): the CPU per window is the same
    # and a 192^3 ResEnc-L batch of 2 would need twice the memory on this small machine.
    config = SegmenterConfig(device="cpu", batch_size=1)
    with meter.within("fetch (loopback S3)"):
        options = FetchOptions(endpoint_url=endpoint, check_contents=False, attempts=1)
        folder = fetch_series(ref, work / "dicom", options).path
    with meter.within("read"):
        volume = read_series(folder, series_instance_uid=ref.series_instance_uid)
    with segmenter_class(model, config) as engine:
        with meter.within("segment: other"):
            maps = engine.segment(volume)
    staging = work / "staging"
    with meter.within("encode (LABELMAP SEGs)"):
        encoded = encode_step(volume, maps, catalog, provenance, staging)
    with meter.within("QA + SR"):
        checked = qa_step(volume, maps, encoded, catalog, provenance, staging)
    with meter.within("publish (previews + upload)"):
        outputs = [*encoded.outputs, *checked.outputs]
        outputs += preview_step(volume, maps, catalog, staging)
        store = ObjectStore(f"s3://{OUT_BUCKET}/out", endpoint_url=endpoint)
        publish_series(store, ref, outputs, {"source_series_instance_uid": ref.series_instance_uid})
    meter.switch(None)
    result: dict[str, Any] = {
        "cpu": meter.cpu,
        "wall": meter.wall,
        "peak_gb": meter.peak_gb,
        "shape": list(volume.shape),
        "spacing": list(volume.geometry.spacing),
        "windows": stats["windows"],
        "forward_cpu": stats["forward_cpu"],
        "forward_peak_gb": stats["forward_peak_gb"],
        "segs": len(encoded.segs),
        "segments": sum(len(item.segments) for item in encoded.segs),
        "classes": sum(t.folder.num_classes - 1 for t in model.tasks),
    }
    # kept beside the networks (in --workdir), for --replay
    saved = Path(spec["weights"]).parent / f"stages-{spec['input']}.json"
    saved.write_text(json.dumps(result, indent=1))
    return result


# -- the parent ------------------------------------------------------------------------------


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"the child for {spec['input']} failed:\n{result.stderr[-6000:]}")
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def _rows(data: dict[str, Any], window_cpu: float) -> list[tuple[str, float, float, float]]:
    """(stage, CPU s, wall s, peak GB) per stage; the forward row extrapolated."""
    rows = []
    n_windows = sum(data["windows"].values())
    for stage in STAGES:
        if stage == FORWARD:
            rows.append((stage, n_windows * window_cpu, float("nan"), data["forward_peak_gb"]))
            continue
        rows.append(
            (
                stage,
                data["cpu"].get(stage, 0.0),
                data["wall"].get(stage, 0.0),
                data["peak_gb"].get(stage, 0.0),
            )
        )
    return rows


def _print_input(name: str, data: dict[str, Any], window_cpu: float, source: str) -> None:
    n_windows = sum(data["windows"].values())
    per_task = sorted(set(data["windows"].values()))
    shape = data["shape"]
    spacing = ", ".join(f"{s:.3g}" for s in data["spacing"])
    print(
        f"input {name}: {_describe(name)}: {shape[2]}x{shape[1]}x{shape[0]} at ({spacing}) mm, "
        f"{len(data['windows'])} tasks, {data['classes']} classes, {data['segs']} SEGs"
        + (f" of {data['segments']} segments" if "segments" in data else "")
    )
    print(f"  {'stage':<32} {'CPU s':>9} {'wall s':>8} {'peak GB':>8}")
    total = 0.0
    for stage, cpu, wall, peak in _rows(data, window_cpu):
        total += cpu
        mark = " (extrapolated)" if stage == FORWARD else ""
        wall_text = "-" if wall != wall else f"{wall:.2f}"
        print(f"  {stage:<32} {cpu:9.2f} {wall_text:>8} {peak:8.2f}{mark}")
    print(f"  {'total per series':<32} {total:9.2f}")
    print(
        f"  network windows: {n_windows} ({'/'.join(map(str, per_task))} per task) x "
        f"{window_cpu:.2f} CPU s per window ({source}) = {n_windows * window_cpu:.1f} CPU s "
        "(extrapolated)"
    )
    other = total - n_windows * window_cpu
    print(
        f"  CPU stages without the network: {other:.2f} CPU s; load model (once per run) "
        f"{data['cpu'].get('load model', 0.0):.2f} CPU s; peak of the process "
        f"{max([*data['peak_gb'].values(), data['forward_peak_gb']]):.2f} GB"
    )


def _markdown(results: dict[str, tuple[dict[str, Any], float]]) -> None:
    """The table of RESULTS.md: CPU s (peak GB) per stage and input."""
    names = list(results)
    print()
    print("| stage | " + " | ".join(f"{_describe(n)}" for n in names) + " |")
    print("|---|" + "---:|" * len(names))
    table = {n: _rows(data, cpu) for n, (data, cpu) in results.items()}
    for i, stage in enumerate(STAGES):
        cells = []
        for n in names:
            _, cpu, _, peak = table[n][i]
            star = "*" if stage == FORWARD else ""
            cells.append(f"{cpu:.1f}{star} ({peak:.1f} GB)")
        print(f"| {stage} | " + " | ".join(cells) + " |")
    totals = [sum(row[1] for row in table[n]) for n in names]
    print("| **total CPU s per series** | " + " | ".join(f"{t:.0f}" for t in totals) + " |")
    no_net = [sum(row[1] for row in table[n] if row[0] != FORWARD) for n in names]
    print("| total without the network | " + " | ".join(f"{t:.1f}" for t in no_net) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 small phantoms, 2 small tasks")
    parser.add_argument("--inputs", default=None, help="comma-separated: 126, 300, real")
    parser.add_argument("--tasks", default=None, help="comma-separated CADS task ids (all 9)")
    parser.add_argument(
        "--windows", type=int, default=None, help="windows measured per task (1; 2 with --quick)"
    )
    parser.add_argument(
        "--measured-tasks", type=int, default=1, help="tasks whose windows are measured"
    )
    parser.add_argument("--workdir", default=None, help="keep phantoms and networks here")
    parser.add_argument(
        "--shared", default=str(SHARED), help="the shared data folder (../shared/data)"
    )
    parser.add_argument(
        "--replay", default=None, help="print the tables again from a --workdir's saved results"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return
    inputs = (
        args.inputs.split(",")
        if args.inputs
        else (list(QUICK_INPUTS) if args.quick else ["126", "300", "real"])
    )
    tasks = args.tasks.split(",") if args.tasks else (list(QUICK_TASKS) if args.quick else None)
    args.windows = args.windows or (2 if args.quick else 1)
    real = Path(args.shared) / REAL_SERIES
    if "real" in inputs and not real.is_dir():
        print(f"skipping input real: {real} is absent")
        inputs.remove("real")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "x")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "x")
    if args.replay:
        saved = {n: Path(args.replay) / f"stages-{n}.json" for n in inputs}
        _report({n: json.loads(p.read_text()) for n, p in saved.items() if p.exists()}, args)
        return
    keep = Path(args.workdir) if args.workdir else None
    with tempfile.TemporaryDirectory(prefix="omas-stages-") as temporary:
        root = keep or Path(temporary)
        root.mkdir(parents=True, exist_ok=True)
        weights = _networks(root, tasks, args.quick)
        folders = {n: (real if n == "real" else _phantom(root / "phantoms", n)) for n in inputs}
        raw = _measure(Path(temporary), weights, folders, tasks, args)
    _report(raw, args)


def _with_windows(raw: dict[str, dict[str, Any]]) -> dict[str, tuple[dict[str, Any], float]]:
    """Each input with the CPU s per window its forward row uses: the first input's mean."""
    results: dict[str, tuple[dict[str, Any], float]] = {}
    window_cpu: float | None = None
    for name, data in raw.items():
        measured = data["forward_cpu"]
        if window_cpu is None:
            if not measured:
                raise SystemExit(f"no window of input {name} went through a network")
            window_cpu = sum(measured) / len(measured)
            data["window_source"] = "measured here"
        else:
            data["window_source"] = "measured on the first input"
            data["forward_peak_gb"] = next(iter(results.values()))[0]["forward_peak_gb"]
        results[name] = (data, window_cpu)
    return results


def _report(raw: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    results = _with_windows(raw)
    print(
        f"{len(results)} inputs on {os.cpu_count()} CPUs; CADS networks: "
        + ("small ResEnc (32^3 patch; --quick)" if args.quick else "ResEnc-L, 192^3 patch")
        + ", random weights; CPU s of each stage measured, except the network forward "
        "(extrapolated: windows x measured CPU s per window)"
    )
    for name, (data, window_cpu) in results.items():
        _print_input(name, data, window_cpu, data["window_source"])
    first_data = next(iter(results.values()))[0]
    measured = first_data["forward_cpu"]
    print(
        f"forward: {len(measured)} windows measured ({', '.join(f'{c:.2f}' for c in measured)} "
        f"CPU s); peak {first_data['forward_peak_gb']:.2f} GB while one ran"
    )
    _markdown(results)


def _networks(root: Path, tasks: list[str] | None, quick: bool) -> Path:
    from omas_idc.testing.resenc_plans import (
        RESENC_L_CT_1P5MM,
        make_cads_like_folders,
        resenc_plan,
    )

    weights = root / ("networks-quick" if quick else "networks")
    complete = weights / f"{','.join(tasks or ['all'])}.complete"
    if not complete.exists():
        plan = resenc_plan(QUICK_PATCH, base_features=4, max_features=16) if quick else None
        make_cads_like_folders(weights, tasks, plan or RESENC_L_CT_1P5MM)
        complete.touch()
    return weights


def _measure(
    temporary: Path,
    weights: Path,
    folders: dict[str, Path],
    tasks: list[str] | None,
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:

    from omas_idc.testing.resenc_plans import cads_label_names
    from omas_idc.testing.s3server import loopback_client, make_public_bucket, moto_server

    results: dict[str, dict[str, Any]] = {}
    with moto_server() as endpoint:
        client = loopback_client(endpoint)
        make_public_bucket(client, BUCKET)
        client.create_bucket(Bucket=OUT_BUCKET)
        first = True
        for name, folder in folders.items():
            ref = _upload(client, folder, name)
            spec = {
                "input": name,
                "work": str(temporary / f"work-{name}"),
                "endpoint": endpoint,
                "ref": ref,
                "weights": str(weights),
                "tasks": tasks or sorted(cads_label_names()),
                # later inputs reuse the first one's CPU per window (same networks and patch)
                "windows": args.windows if first else 0,
                "measured_tasks": args.measured_tasks,
            }
            results[name] = _run_child(spec)
            first = False
    return results


if __name__ == "__main__":
    main()

"""Pipeline benchmark: series per hour of ``omas-idc run`` against the stages run one by one.

Phantom CT series are served from a loopback S3 server (moto_server) in IDC's bucket layout.
The same model (a threshold network in nnU-Net's format), the same series, fresh work folders:

- *sequential*: for each series fetch, read, segment, encode/QA, publish, one after another;
- *pipelined*: ``omas_idc.run`` (fetch and read of the next series and encode/QA of the
  previous one overlap with segmentation).

Prints series per hour of each, the share of each stage in the sequential time, and the
ratio. Usage: ``python benchmarks/pipeline.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from omas_idc.testing.s3server import moto_server

FULL = {"series": 6, "shape": (48, 160, 160), "spacing": (2.5, 2.5), "slice": 5.0}
QUICK = {"series": 3, "shape": (10, 40, 40), "spacing": (9.0, 9.0), "slice": 20.0}
BUCKET = "idc-open-data"
STAGES = ("fetch", "read", "segment", "encode", "qa", "publish")


def _upload(endpoint: str, root: Path, size: dict[str, object]) -> list[object]:

    from omas_idc.phantom import PhantomOptions, make_phantom
    from omas_idc.series_ref import SeriesRef
    from omas_idc.testing.s3server import loopback_client, make_public_bucket

    client = loopback_client(endpoint)
    make_public_bucket(client, BUCKET)
    refs = []
    for seed in range(int(size["series"])):  # type: ignore[call-overload]
        phantom = make_phantom(
            root / f"s{seed}",
            PhantomOptions(
                seed=seed,
                shape=size["shape"],
                pixel_spacing=size["spacing"],  # type: ignore[arg-type]
                slice_spacing=size["slice"],  # type: ignore[arg-type]
            ),
        )
        crdc = str(uuid.uuid5(uuid.NAMESPACE_OID, phantom.series_instance_uid))
        total = 0
        for i, path in enumerate(phantom.files):
            body = path.read_bytes()
            total += len(body)
            client.put_object(Bucket=BUCKET, Key=f"{crdc}/{i:04d}.dcm", Body=body)
        refs.append(
            SeriesRef(
                series_instance_uid=phantom.series_instance_uid,
                study_instance_uid=phantom.study_instance_uid,
                patient_id=f"P{seed}",
                collection_id="bench",
                modality="CT",
                crdc_series_uuid=crdc,
                instance_count=len(phantom.files),
                size_bytes=total,
                aws_bucket=BUCKET,
                idc_version=25,
            )
        )
    return refs


def _model(root: Path, size: dict[str, object]) -> Path:
    from omas_idc.engine.synthetic import SyntheticModel, make_model_folder

    spacing = size["spacing"]
    return make_model_folder(
        root,
        SyntheticModel(
            labels=("liver", "vertebrae_L1"),
            weights="threshold",
            thresholds_hu=(-200.0, 250.0),
            spacing=(float(size["slice"]), float(spacing[0]), float(spacing[1])),  # type: ignore[index, arg-type]
            patch_size=(16, 64, 64) if size is FULL else (8, 16, 16),
            features=8,
            folds=("all",),
        ),
    )


def _sequential(refs: list[object], model_dir: Path, endpoint: str, work: Path) -> dict[str, float]:
    from omas_idc.engine.model import load_model
    from omas_idc.engine.segmenter import Segmenter, SegmenterConfig

    model = load_model(model_dir)
    with Segmenter(model, SegmenterConfig(device="cpu")) as engine:
        return sequential_stages(refs, model, engine, endpoint, work)


def sequential_stages(
    refs: list[Any], model: Any, engine: Any, endpoint: str, work: Path
) -> dict[str, float]:
    """Every stage of each series with ``engine``, one after another; seconds per stage
    (also the sequential baseline of benchmarks/pipeline_device.py)."""
    from omas_idc.catalog import load_catalog
    from omas_idc.encode import Provenance
    from omas_idc.fetch import FetchOptions, fetch_series
    from omas_idc.publish.folder_store import FolderStore
    from omas_idc.publish.store import publish_series
    from omas_idc.read import read_series
    from omas_idc.run.finish import encode_step, preview_step, qa_step

    catalog = load_catalog()
    store = FolderStore(str(work / "out"))
    provenance = Provenance(
        model=model.card.name, model_version="bench", timestamp=datetime(2026, 1, 1)
    )
    times = dict.fromkeys(STAGES, 0.0)
    for ref in refs:
        t = time.perf_counter()
        folder = fetch_series(ref, work / "dicom", FetchOptions(endpoint_url=endpoint)).path
        times["fetch"] += time.perf_counter() - t
        t = time.perf_counter()
        volume = read_series(folder)
        times["read"] += time.perf_counter() - t
        t = time.perf_counter()
        maps = engine.segment(volume)
        times["segment"] += time.perf_counter() - t
        t = time.perf_counter()
        staging = work / "staging" / ref.series_instance_uid
        encoded = encode_step(volume, maps, catalog, provenance, staging)
        times["encode"] += time.perf_counter() - t
        t = time.perf_counter()
        checked = qa_step(volume, maps, encoded, catalog, provenance, staging)
        times["qa"] += time.perf_counter() - t
        t = time.perf_counter()
        outputs = [*encoded.outputs, *checked.outputs]
        outputs += preview_step(volume, maps, catalog, staging)
        publish_series(store, ref, outputs, {"source_series_instance_uid": ref.series_instance_uid})
        times["publish"] += time.perf_counter() - t
    return times


def _pipelined(
    refs: list[object], model_dir: Path, endpoint: str, work: Path
) -> tuple[float, dict[str, object]]:
    from omas_idc.run.config import RunConfig
    from omas_idc.run.engine_setup import build_engine
    from omas_idc.run.runner import RunRequest, execute_run

    config = RunConfig(name="bench").with_overrides(
        model={"name": str(model_dir), "device": "cpu"}, output={"delete_downloads": False}
    )
    engine, info = build_engine(config.model)
    request = RunRequest(
        config=config,
        out=str(work / "out"),
        work_dir=work / "work",
        endpoint_url=endpoint,
        timestamp=datetime(2026, 1, 1),
    )
    cpu = time.process_time()
    try:
        result = execute_run(request, engine, info, refs=refs)  # type: ignore[arg-type]
    finally:
        engine.close()
    cpu = time.process_time() - cpu
    report = json.loads(result.report_path.read_text())
    # CPU seconds of this process (every thread of the run; not the S3 server's) per series.
    report["cpu_seconds_per_series"] = cpu / len(refs)
    # The pipeline's own time (as the sequential loop, without loading the model).
    wall = float(report["seconds"])
    if report["done"] != len(refs):
        raise SystemExit(f"pipelined run finished {report['done']} of {len(refs)} series: {report}")
    return wall, report


def _saved_parses(series_dir: Path) -> dict[str, float]:
    """Seconds of the two parses of a series the run no longer makes (best of 3): the fetch's
    full-file check and the encoder's second read of the source headers."""
    import pydicom

    from omas_idc.fetch.verify import check_dicom_file

    files = sorted(p for p in series_dir.iterdir() if p.is_file())
    best = {"fetch check": float("inf"), "encoder re-read": float("inf")}
    for _ in range(3):
        t = time.perf_counter()
        for path in files:
            check_dicom_file(path)
        best["fetch check"] = min(best["fetch check"], time.perf_counter() - t)
        t = time.perf_counter()
        for path in files:
            pydicom.dcmread(path, stop_before_pixels=True)
        best["encoder re-read"] = min(best["encoder re-read"], time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 tiny series (seconds; CI)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="rounds of both runs, in alternating order (default: 3; 1 with --quick)",
    )
    args = parser.parse_args()
    size = QUICK if args.quick else FULL
    repeats = args.repeats or (1 if args.quick else 3)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "x")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "x")
    rounds: list[tuple[dict[str, float], float]] = []
    cpu_per_series: list[float] = []
    with (
        moto_server() as endpoint,
        tempfile.TemporaryDirectory(prefix="omas-pipeline-bench-") as folder,
    ):
        root = Path(folder)
        refs = _upload(endpoint, root / "phantoms", size)
        model_dir = _model(root / "model", size)
        _sequential(refs[:1], model_dir, endpoint, root / "warmup")  # load code paths once
        for r in range(repeats):
            # Alternate which goes first, so that neither always finds the caches warm.
            if r % 2 == 0:
                times = _sequential(refs, model_dir, endpoint, root / f"sequential{r}")
                wall, report = _pipelined(refs, model_dir, endpoint, root / f"pipelined{r}")
            else:
                wall, report = _pipelined(refs, model_dir, endpoint, root / f"pipelined{r}")
                times = _sequential(refs, model_dir, endpoint, root / f"sequential{r}")
            rounds.append((times, wall))
            cpu_per_series.append(float(report["cpu_seconds_per_series"]))  # type: ignore[arg-type]
        fetched = next((root / "sequential0" / "dicom").rglob("*.dcm")).parent
        saved = _saved_parses(fetched)
    n = len(refs)
    shape = size["shape"]
    print(f"{n} series of {shape[2]}x{shape[1]}x{shape[0]} from a loopback S3 server")  # type: ignore[index]
    ratios = []
    for r, (times, wall) in enumerate(rounds):
        total = sum(times.values())
        ratios.append(total / wall)
        first = "sequential first" if r % 2 == 0 else "pipelined first"
        print(f"round {r + 1} ({first}): sequential {total:.2f} s, pipelined {wall:.2f} s")
    times = {stage: sum(t[stage] for t, _ in rounds) / len(rounds) for stage in rounds[0][0]}
    total = sum(times.values())
    wall = statistics.median(w for _, w in rounds)
    print(
        "stage shares (sequential): "
        + ", ".join(f"{stage} {100 * seconds / total:.0f}%" for stage, seconds in times.items())
    )
    print(f"sequential {total:8.2f} s  {3600 * n / total:10.1f} series/hour")
    print(f"pipelined  {wall:8.2f} s  {3600 * n / wall:10.1f} series/hour")
    print(
        f"ratio      pipelined is x{statistics.median(ratios):.2f} the sequential rate "
        f"(median of {len(ratios)} rounds; min x{min(ratios):.2f}, max x{max(ratios):.2f})"
    )
    print(
        f"run CPU    {statistics.median(cpu_per_series):.3f} s per series (median of "
        f"{len(cpu_per_series)} pipelined runs; min {min(cpu_per_series):.3f}, "
        f"max {max(cpu_per_series):.3f})"
    )
    print(
        "saved parse per series: "
        + ", ".join(f"{what} {seconds:.3f} s" for what, seconds in saved.items())
        + f" ({sum(saved.values()):.3f} s)"
    )


if __name__ == "__main__":
    main()

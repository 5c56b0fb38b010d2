"""A projected cost of a cohort run: series/hour per VM, VM-hours, wall-clock and dollars.

The model, stated so that each number can be checked by hand:

- A VM runs one ``omas-idc run`` (one Batch task at a time). Its stages overlap (the run is
  pipelined), so a VM's rate is set by its slowest resource, the *limiting stage*:
  the CPU stages (read, encode, QA, publish: CPU-seconds per series from a calibration, spread
  over the VM's vCPUs), or the accelerator (``gpu_seconds`` per series of ``gpu_slices``
  slices, scaled by each series' slice count, divided by the VM's GPUs), or the download
  (bytes over an assumed bandwidth). Seconds per series = the largest of the three.
- VM-hours = the selection's total of that per-series time (summed per resource, the largest
  total wins) / 3600, plus a start-up overhead per task (boot, image pull, model download).
- Wall-clock for ``tasks`` tasks run at once = VM-hours / tasks (each task a VM).
- Cost = VM-hours x the machine's price per hour (on-demand and spot; GPUs attached to N1 are
  priced per GPU on top). Disks, bucket storage and egress are not included.

Every input is reported with whether it was measured (where, when) or assumed
(:attr:`Estimate.assumptions`).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from omas_idc.errors import ConfigurationError
from omas_idc.run.batch.calibrate import Calibration
from omas_idc.run.batch.machines import MachineTable
from omas_idc.series_ref import SeriesRef

__all__ = [
    "NLST_REFERENCE",
    "Assumption",
    "Estimate",
    "EstimateOptions",
    "estimate_run",
]

#: A published reference point (not a projection of ours), printed next to the projection.
NLST_REFERENCE = (
    "IDC's CloudSegmentator run of TotalSegmentator (104 classes) on about 126,000 NLST CT "
    "series cost about $1,011 on NVIDIA T4 GPUs (reference point from issue 20, not a "
    "projection of omas-idc)"
)


@dataclass(frozen=True)
class Assumption:
    """One input of the estimate and its provenance.

    Attributes
    ----------
    name
        What it is (``"accelerator seconds per series"``).
    value
        Its value, as text with its unit.
    status
        ``"measured"``, ``"assumed"``, ``"given"`` (by the selection or the machine table).
    source
        Where and when it was measured, or why it is assumed.
    """

    name: str
    value: str
    status: str
    source: str


@dataclass(frozen=True)
class EstimateOptions:
    """The inputs of an estimate besides the selection, the calibration and the machine.

    Attributes
    ----------
    gpu_seconds
        Accelerator seconds per series of ``gpu_slices`` slices (all tasks of the model).
    gpu_seconds_source
        Where it was measured; empty: an assumption (printed as such).
    gpu_slices
        The slice count ``gpu_seconds`` refers to; each series scales in proportion.
    tasks
        Batch tasks (VMs) running at once.
    download_mb_per_s
        Assumed download bandwidth of one VM from IDC's bucket (MB/s).
    task_overhead_minutes
        Assumed start-up time per task (boot, image pull, model download), billed.
    priced
        False: project time only (no price needed).
    """

    gpu_seconds: float
    gpu_seconds_source: str = ""
    gpu_slices: int = 126
    tasks: int = 100
    download_mb_per_s: float = 100.0
    task_overhead_minutes: float = 5.0
    priced: bool = True

    def __post_init__(self) -> None:
        for name in ("gpu_seconds", "download_mb_per_s"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(
                    f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}",
                    reason="estimate",
                )
        if self.gpu_slices < 1 or self.tasks < 1 or self.task_overhead_minutes < 0:
            raise ConfigurationError(
                f"gpu slices ({self.gpu_slices}) and tasks ({self.tasks}) must be at least 1, "
                f"task overhead ({self.task_overhead_minutes} min) not negative",
                reason="estimate",
            )


@dataclass(frozen=True)
class Estimate:
    """A projected run (every number is a projection, not a measurement of a run).

    Attributes
    ----------
    machine_type, vcpus, gpu_type, gpu_count
        The VM.
    series, total_bytes, median_slices
        The selection.
    seconds_per_series
        Resource -> mean seconds per series on one VM (``"cpu"``, ``"accelerator"``,
        ``"download"``); ``"cpu"`` is CPU-seconds / vCPUs.
    cpu_seconds_per_stage
        Stage -> mean CPU-seconds per series (before dividing by the vCPUs).
    limiting_stage
        The resource that sets the rate.
    series_per_hour
        Per VM.
    vm_hours
        Including the start-up overhead of every task.
    tasks, wall_clock_hours
        Tasks at once, and the wall-clock time of the run with them.
    on_demand_usd, spot_usd
        Cost; ``None`` when the estimate is not priced.
    price_per_hour
        ``(on-demand, spot)`` of the VM with its GPUs, or ``None``.
    assumptions
        Every input with its provenance.
    """

    machine_type: str
    vcpus: int
    gpu_type: str | None
    gpu_count: int
    series: int
    total_bytes: int
    median_slices: float
    seconds_per_series: dict[str, float]
    cpu_seconds_per_stage: dict[str, float]
    limiting_stage: str
    series_per_hour: float
    vm_hours: float
    tasks: int
    wall_clock_hours: float
    on_demand_usd: float | None
    spot_usd: float | None
    price_per_hour: tuple[float, float] | None
    assumptions: tuple[Assumption, ...]
    reference: str = NLST_REFERENCE

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data, with ``"projected": true``."""
        return {"projected": True, **asdict(self)}


_LIMITS = {
    "cpu": "CPU stages (read, encode, QA, publish) on the VM's vCPUs",
    "accelerator": "the accelerator (segmentation)",
    "download": "the download from IDC's bucket",
}


def _machine(table: MachineTable, machine_type: str) -> tuple[Any, int, str | None]:
    from omas_idc.choices import suggestion

    machine = table.machines.get(machine_type)
    if machine is None:
        raise ConfigurationError(
            f"machine type {machine_type!r} is not in the machine table; estimate needs its "
            f"vCPUs, GPUs and price.{suggestion(machine_type, table.machines)} Give a table "
            "with --machines FILE.",
            reason="estimate",
        )
    if machine.gpu_count == 0:
        raise ConfigurationError(
            f"{machine_type} has no GPU: estimate projects GPU runs (the network's CPU cost "
            "is not calibrated). Choose a G2, A2 or N1 machine (with --gpu-type for N1).",
            reason="estimate",
        )
    return machine, machine.gpu_count or 0, machine.gpu_type


def _prices(
    table: MachineTable, machine: Any, gpu_type: str, gpu_count: int
) -> tuple[float, float]:
    od, spot = machine.on_demand_usd_hour, machine.spot_usd_hour
    where = f"{table.price_region or 'the table'}"
    if od is None or spot is None:
        raise ConfigurationError(
            f"the machine table has no on-demand and spot price for {machine.name} in {where}: "
            "estimate does not invent one. Give a table with the price you checked "
            "(--machines FILE, columns on_demand_usd_hour and spot_usd_hour), or project the "
            "time only with --no-cost.",
            reason="unpriced-machine",
        )
    if machine.gpu_count is None:  # N1: GPUs attached and billed per GPU
        gpu_od, gpu_spot = table.gpu_prices.get((machine.family, gpu_type), (None, None))
        if gpu_od is None or gpu_spot is None:
            raise ConfigurationError(
                f"the machine table has no price for {gpu_type} attached to {machine.family} "
                f"in {where}: estimate does not invent one. Give a table with it "
                "(--machines FILE), or --no-cost.",
                reason="unpriced-machine",
            )
        return od + gpu_count * gpu_od, spot + gpu_count * gpu_spot
    return od, spot


def estimate_run(
    refs: Sequence[SeriesRef],
    calibration: Calibration,
    table: MachineTable,
    machine_type: str,
    options: EstimateOptions,
    *,
    gpu_type: str | None = None,
    gpu_count: int | None = None,
    selection_source: str = "the selection",
) -> Estimate:
    """Project a run of ``refs`` on ``machine_type`` (see the module docstring for the model).

    Parameters
    ----------
    refs
        The selection (instance count = slices, size in bytes).
    calibration
        CPU-seconds per stage (:func:`~omas_idc.run.batch.calibrate.calibrate`).
    table
        Machines: vCPUs, GPUs and prices.
    machine_type
        The VM type.
    options
        Accelerator time, tasks, bandwidth, overhead.
    gpu_type, gpu_count
        For N1 machines, the attached GPUs (``gpu_count`` defaults to 1).
    selection_source
        Where ``refs`` come from, for the assumptions.

    Raises
    ------
    ConfigurationError
        If the selection is empty, the machine is unknown, has no GPU, or has no price (and
        the estimate is priced).
    """
    if not refs:
        raise ConfigurationError(f"{selection_source} holds no series", reason="estimate")
    machine, built_in, built_in_type = _machine(table, machine_type)
    if machine.gpu_count is None:  # N1
        gpus = gpu_count or 1
        gpu = gpu_type or (table.gpus_taken(machine_type) or ("?",))[0]
        if gpu not in (table.gpus_taken(machine_type) or ()):
            raise ConfigurationError(
                f"{gpu} does not attach to {machine_type}; it takes "
                f"{', '.join(table.gpus_taken(machine_type) or ())}",
                reason="estimate",
            )
    else:
        gpus, gpu = built_in, built_in_type or "?"
    price = _prices(table, machine, gpu, gpus) if options.priced else None

    slices = [max(1, ref.instance_count) for ref in refs]
    total_slices = float(sum(slices))
    total_bytes = sum(ref.size_bytes for ref in refs)
    n = len(refs)
    # CPU-seconds summed per series (the fixed part counts once per series).
    stage_totals = {
        stage: sum(cost.seconds(s) for s in slices) for stage, cost in calibration.stages.items()
    }
    totals = {
        "cpu": sum(stage_totals.values()) / machine.vcpus,
        "accelerator": options.gpu_seconds * total_slices / options.gpu_slices / gpus,
        "download": total_bytes / (options.download_mb_per_s * 1e6),
    }
    limiting = max(totals, key=lambda k: totals[k])
    busy_hours = totals[limiting] / 3600.0
    overhead_hours = options.tasks * options.task_overhead_minutes / 60.0
    vm_hours = busy_hours + overhead_hours
    series_per_hour = n / busy_hours
    on_demand = spot = None
    if price is not None:
        on_demand, spot = vm_hours * price[0], vm_hours * price[1]

    def share(stage_total: float) -> float:
        return stage_total / n

    assumptions = [
        Assumption(
            "selection",
            f"{n} series, {total_bytes / 1e12:.3f} TB, median {statistics.median(slices):g} slices",
            "given",
            selection_source,
        ),
        Assumption(
            "CPU-seconds per series per stage (fixed + per slice x slices, 512x512 slices)",
            ", ".join(
                f"{k} {c.fixed_seconds:.3g} + {c.per_slice_seconds:.3g}/slice"
                for k, c in calibration.stages.items()
            ),
            "measured",
            f"{calibration.source or 'calibration'}: {calibration.where()}",
        ),
        Assumption(
            "CPU stages use all vCPUs of the VM",
            f"{machine.vcpus} vCPUs",
            "assumed",
            "perfect scaling of the run's loader and finisher threads (optimistic: one run's "
            "Python stages share the GIL; calibration CPUs may be faster or slower)",
        ),
        Assumption(
            "accelerator seconds per series",
            f"{options.gpu_seconds:g} s per {options.gpu_slices}-slice series on {gpu}, "
            "in proportion to slices",
            "measured" if options.gpu_seconds_source else "assumed",
            options.gpu_seconds_source
            or "no device measurement (no accelerator was lent); given with --gpu-seconds",
        ),
        Assumption(
            "download bandwidth per VM",
            f"{options.download_mb_per_s:g} MB/s",
            "assumed",
            "IDC bucket to a VM in the same cloud; --download-mb-per-s",
        ),
        Assumption(
            "start-up per task (boot, image pull, model download)",
            f"{options.task_overhead_minutes:g} min x {options.tasks} tasks",
            "assumed",
            "--task-overhead-minutes",
        ),
        Assumption(
            "stages overlap (pipelined run)",
            "rate = slowest resource",
            "assumed",
            "the pipelined run keeps the limiting resource busy (issue 20 item 2 measures it)",
        ),
        Assumption(
            "not included",
            "disks, bucket storage, egress, failed/retried series, spot pre-emption rework",
            "assumed",
            "spot pre-emption loses only in-flight series (DONE markers) plus a restart",
        ),
    ]
    if price is not None:
        assumptions.append(
            Assumption(
                "price per VM-hour",
                f"${price[0]:.4f} on-demand, ${price[1]:.4f} spot ({machine_type}"
                + (f" + {gpus} x {gpu}" if machine.gpu_count is None else "")
                + ")",
                "given",
                table.price_source or "the machine table",
            )
        )
    return Estimate(
        machine_type=machine_type,
        vcpus=machine.vcpus,
        gpu_type=gpu,
        gpu_count=gpus,
        series=n,
        total_bytes=total_bytes,
        median_slices=float(statistics.median(slices)),
        seconds_per_series={k: v / n for k, v in totals.items()},
        cpu_seconds_per_stage={k: share(v) for k, v in stage_totals.items()},
        limiting_stage=limiting,
        series_per_hour=series_per_hour,
        vm_hours=vm_hours,
        tasks=options.tasks,
        wall_clock_hours=vm_hours / options.tasks,
        on_demand_usd=on_demand,
        spot_usd=spot,
        price_per_hour=price,
        assumptions=tuple(assumptions),
    )


def limiting_description(stage: str) -> str:
    """A readable name of a limiting stage."""
    return _LIMITS.get(stage, stage)

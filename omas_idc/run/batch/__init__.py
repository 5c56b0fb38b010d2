"""Google Cloud Batch jobs that run ``omas-idc run`` over shards of a release.

One module per step: :mod:`~omas_idc.run.batch.machines` (the machine families, types and GPUs
of ``machines.csv``), :mod:`~omas_idc.run.batch.options` (what a job asks for, checked),
:mod:`~omas_idc.run.batch.render` (the job as Batch's ``Job`` JSON; the decisions it takes are
listed there), ``write_config.py`` (the code the job's first runnable runs in the VM) and
:mod:`~omas_idc.run.batch.submit` (creating the job in Cloud Batch).
"""

from __future__ import annotations

from omas_idc.run.batch.machines import GPU_TYPES, MachineType, machine_table
from omas_idc.run.batch.options import BatchJobOptions
from omas_idc.run.batch.render import (
    CONFIGURATION_EXIT_CODE,
    GCS_MOUNT_ROOT,
    PREEMPTION_EXIT_CODE,
    WORK_DIR,
    job_json,
    render_job,
    resolve_config_path,
    validate_job,
)
from omas_idc.run.batch.submit import default_job_id, submit_job

__all__ = [
    "CONFIGURATION_EXIT_CODE",
    "GCS_MOUNT_ROOT",
    "GPU_TYPES",
    "PREEMPTION_EXIT_CODE",
    "WORK_DIR",
    "BatchJobOptions",
    "MachineType",
    "default_job_id",
    "job_json",
    "machine_table",
    "render_job",
    "resolve_config_path",
    "submit_job",
    "validate_job",
]

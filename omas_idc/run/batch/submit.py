"""Creating a rendered job in Google Cloud Batch (google-cloud-batch, imported when used)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from omas_idc.errors import ConfigurationError
from omas_idc.run.batch.render import validate_job

__all__ = ["default_job_id", "submit_job"]

logger = logging.getLogger(__name__)

_JOB_ID = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")


def default_job_id(release_name: str, now: datetime | None = None) -> str:
    """A job ID from the release name and the time (UTC), e.g. ``omas-idc-nlst-20250101-120000``."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    base = re.sub(r"[^a-z0-9-]+", "-", release_name.lower()).strip("-")
    if not base or not base[0].isalpha():
        base = f"omas-{base}".rstrip("-")
    return f"{base[: 62 - len(stamp)].rstrip('-')}-{stamp}"


def submit_job(
    job: Mapping[str, Any],
    *,
    project: str,
    region: str,
    job_id: str,
    client: Any | None = None,
) -> str:
    """Create ``job`` in Cloud Batch and return its resource name.

    Parameters
    ----------
    job
        A job from :func:`render_job`.
    project, region
        Where the job is created (``projects/PROJECT/locations/REGION``).
    job_id
        The job's ID: lower-case letters, digits and hyphens, at most 63 characters.
    client
        A ``batch_v1.BatchServiceClient`` (default: one with Application Default Credentials).

    Raises
    ------
    ConfigurationError
        If the ID is invalid, no credentials are found, or Batch refuses the job.
    """
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions
    from google.cloud import batch_v1

    if not _JOB_ID.match(job_id):
        raise ConfigurationError(
            f"job ID {job_id!r} is invalid: use 1-63 lower-case letters, digits and hyphens, "
            "starting with a letter",
            reason="batch-job",
        )
    if not project or not region:
        raise ConfigurationError("submitting needs --project and --region", reason="batch-job")
    request = batch_v1.CreateJobRequest(
        parent=f"projects/{project}/locations/{region}", job_id=job_id, job=validate_job(job)
    )
    try:
        service = client if client is not None else batch_v1.BatchServiceClient()
        created = service.create_job(request=request)
    except auth_exceptions.DefaultCredentialsError as err:
        raise ConfigurationError(
            f"no Google credentials: {err}. Run `gcloud auth application-default login` "
            "or set GOOGLE_APPLICATION_CREDENTIALS",
            reason="credentials",
        ) from err
    except api_exceptions.GoogleAPICallError as err:
        raise ConfigurationError(
            f"Cloud Batch refused job {job_id} in projects/{project}/locations/{region}: "
            f"{err.message}. Check that the Batch API is enabled, that you may create jobs, "
            "and that the job ID is not taken",
            reason="batch-api",
        ) from err
    name = str(created.name)
    logger.info("created Cloud Batch job %s", name)
    return name

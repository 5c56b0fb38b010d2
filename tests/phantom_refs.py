"""The SeriesRef a selection would hold for a phantom series kept outside a bucket (a DICOMweb
service, a local folder): the same identifiers the bucket tests' uploads give it."""

from __future__ import annotations

import uuid
from pathlib import Path

from omas_idc.phantom import Phantom
from omas_idc.series_ref import SeriesRef


def phantom_ref(phantom: Phantom, seed: int) -> SeriesRef:
    """``phantom``'s SeriesRef (patient ``PHANTOM-<seed>``, a crdc UUID derived from its UID)."""
    uid = phantom.series_instance_uid
    return SeriesRef(
        series_instance_uid=uid,
        study_instance_uid=phantom.study_instance_uid,
        patient_id=f"PHANTOM-{seed}",
        collection_id="phantom_collection",
        modality="CT",
        crdc_series_uuid=str(uuid.uuid5(uuid.NAMESPACE_OID, uid)),
        instance_count=len(phantom.files),
        size_bytes=sum(Path(f).stat().st_size for f in phantom.files),
        aws_bucket="idc-open-data",
        idc_version=25,
    )

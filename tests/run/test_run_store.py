"""Output stores and work folders: the marker comes last, SQLite never lives on a FUSE mount."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from omas_idc.errors import ConfigurationError, PublishError
from omas_idc.publish.object_store import ObjectStore
from omas_idc.publish.store import DONE_MARKER, OutputKind, SeriesOutput, publish_series
from omas_idc.run.folders import check_work_dir, default_work_dir, filesystem_type
from omas_idc.series_ref import SeriesRef

OUTPUT_BUCKET = "omas-release"

#: /proc/self/mounts of a Cloud Batch VM whose job mounts the output bucket with gcsfuse.
MOUNTS = """\
/dev/root / ext4 rw,relatime 0 0
/dev/nvme0n1 /mnt/disks/work ext4 rw,relatime 0 0
omas-release /mnt/disks/gcs/omas-release fuse.gcsfuse rw,nosuid,nodev 0 0
/dev/sdb /mnt/disks/gcs/omas-release/not\\040a\\040bucket ext4 rw 0 0
"""


def test_file_system_type_is_that_of_the_longest_containing_mount_point() -> None:
    assert filesystem_type("/mnt/disks/gcs/omas-release/nlst/x", MOUNTS) == "fuse.gcsfuse"
    assert filesystem_type("/mnt/disks/gcs/omas-release", MOUNTS) == "fuse.gcsfuse"
    assert filesystem_type("/mnt/disks/work/state", MOUNTS) == "ext4"
    assert filesystem_type("/mnt/disks/gcs/omas-release-2", MOUNTS) == "ext4"
    assert filesystem_type("/mnt/disks/gcs/omas-release/not a bucket/x", MOUNTS) == "ext4"
    assert filesystem_type(Path.cwd()) != ""  # this machine's own /proc/self/mounts


def test_work_folder_defaults_to_local_disk_and_refuses_a_fuse_mount() -> None:
    assert default_work_dir("/data/release", MOUNTS) == Path("/data/release/.omas-idc-work")
    on_mount = default_work_dir("/mnt/disks/gcs/omas-release/nlst", MOUNTS)
    in_bucket = default_work_dir("s3://omas-release/nlst", MOUNTS)
    for work in (on_mount, in_bucket):
        assert not work.is_absolute()
        assert work.parts[0] == "omas-idc-work"
        assert filesystem_type(work.absolute(), MOUNTS) != "fuse.gcsfuse"
    # One state per output: two releases run from the same folder never share one.
    assert on_mount != in_bucket != default_work_dir("s3://omas-release/other", MOUNTS)
    assert check_work_dir(Path("/mnt/disks/work"), MOUNTS) == Path("/mnt/disks/work")
    with pytest.raises(ConfigurationError, match="FUSE") as refused:
        check_work_dir(Path("/mnt/disks/gcs/omas-release/work"), MOUNTS)
    assert refused.value.reason == "work-on-fuse"


def test_publish_puts_the_marker_last_so_a_failed_upload_leaves_no_marker(
    s3_server: str, s3_client: Any, tmp_path: Path
) -> None:
    store = ObjectStore(f"s3://{OUTPUT_BUCKET}/marker-test", endpoint_url=s3_server)
    ref = SeriesRef(
        series_instance_uid="1.2.3",
        study_instance_uid="1.2",
        patient_id="P1",
        collection_id="c1",
        modality="CT",
        crdc_series_uuid="00000000-0000-0000-0000-000000000001",
        instance_count=1,
        size_bytes=1,
        aws_bucket="idc-open-data",
        idc_version=21,
    )
    first = tmp_path / "seg_551.dcm"
    first.write_bytes(b"first output")
    outputs = [
        SeriesOutput("seg_551.dcm", first, OutputKind.DICOM),
        SeriesOutput("sr.dcm", tmp_path / "gone.dcm", OutputKind.DICOM),  # cannot upload
    ]
    marker = {"source_series_instance_uid": "1.2.3"}
    with pytest.raises(PublishError) as failed:
        publish_series(store, ref, outputs, marker)
    assert failed.value.reason == "upload"
    listing = s3_client.list_objects_v2(Bucket=OUTPUT_BUCKET, Prefix="marker-test/c1/P1/1.2/1.2.3/")
    keys = {o["Key"].rsplit("/", 1)[1] for o in listing.get("Contents", [])}
    assert "seg_551.dcm" in keys
    assert DONE_MARKER not in keys
    assert store.done_series() == {}

    (tmp_path / "gone.dcm").write_bytes(b"second output")
    publish_series(store, ref, outputs, marker)
    assert set(store.done_series()) == {"1.2.3"}

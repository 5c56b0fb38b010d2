"""``omas_idc.paths``: one encoding for values that become path parts, one containment check."""

from __future__ import annotations

from pathlib import Path

import pytest

from omas_idc.errors import FetchError, ModelError, SelectionError
from omas_idc.paths import inside, path_part
from omas_idc.series_ref import check_uid, check_uuid


@pytest.mark.parametrize(
    "value", ["1.2.840.10008.5.1.4.1.1.2", "nlst", "LIDC-IDRI-0001", "a_b.c-d"]
)
def test_plain_values_are_used_as_they_are(value: str) -> None:
    assert path_part(value) == value


@pytest.mark.parametrize("value", ["..", ".", "../../x", "/etc/passwd", "a/b", "a\\b", ".hidden"])
def test_other_values_become_one_harmless_name(value: str, tmp_path: Path) -> None:
    part = path_part(value)
    assert "/" not in part
    assert part not in (".", "..")
    assert (tmp_path / part).resolve().parent == tmp_path.resolve()
    assert path_part("") == "unknown"


def test_inside_refuses_the_root_a_climb_and_a_link_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)

    assert inside(root, root / "sub" / "file", what="a file", error=FetchError) == (
        root / "sub" / "file"
    )
    for bad in (root, root / ".." / "elsewhere", tmp_path / "elsewhere", root / "link" / "x"):
        with pytest.raises(ModelError, match="not inside") as info:
            inside(root, bad, what="a folder", error=ModelError)
        assert info.value.reason == "unsafe-path"
    # Names only: a link placed in the root may be read through.
    assert inside(root, root / "link" / "x", what="a file", error=ModelError, follow_links=False)


@pytest.mark.parametrize(
    "value", ["/tmp/x", "1.02.3", "1..2", "1.2.", "", "1.2.3a", "1." + "2" * 63, " 1.2"]
)
def test_check_uid_refuses_what_is_not_a_dicom_uid(value: str) -> None:
    with pytest.raises(SelectionError, match="not a DICOM UID") as info:
        check_uid(value, "SeriesInstanceUID in row 7")
    assert info.value.reason == "invalid-uid"
    assert "row 7" in str(info.value)
    assert repr(value) in str(info.value)


def test_check_uid_and_uuid_accept_valid_values() -> None:
    assert check_uid("0.1.20.300", "x") == "0.1.20.300"
    assert check_uid("1." + "2" * 62, "x")  # 64 characters
    assert check_uuid("085e85b3-3780-47f6-8538-585bcca95336", "x")
    with pytest.raises(SelectionError, match="not a UUID"):
        check_uuid("../085e85b3", "crdc_series_uuid")

"""The fetch stage: copy selected series from IDC's public buckets with s5cmd, verified.

See :func:`fetch_selection` (many series, in parallel) and :func:`fetch_series` (one).
"""

from __future__ import annotations

from omas_idc.fetch.fetcher import (
    FetchOptions,
    FetchResult,
    check_disk_space,
    fetch_selection,
    fetch_series,
)
from omas_idc.fetch.s5cmd import ENDPOINTS, S5cmd, find_s5cmd
from omas_idc.fetch.verify import check_dicom_file, is_verified, verify_series

__all__ = [
    "ENDPOINTS",
    "FetchOptions",
    "FetchResult",
    "S5cmd",
    "check_dicom_file",
    "check_disk_space",
    "fetch_selection",
    "fetch_series",
    "find_s5cmd",
    "is_verified",
    "verify_series",
]

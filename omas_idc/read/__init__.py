"""The read stage: DICOM CT series -> :class:`~omas_idc.volume.CTVolume`, or a clear refusal.

``read_series(folder_or_files)`` groups files by SeriesInstanceUID, drops localizers, orders
slices along the normal, checks the geometry (:mod:`omas_idc.read.checks` states the
tolerances), carries gantry tilt in a sheared affine, and decodes pixels in threads.
``read_series_headers`` does the same without decoding pixels (for the encoder).
"""

from __future__ import annotations

from omas_idc.read.files import SeriesFiles
from omas_idc.read.reader import SeriesHeaders, list_series, read_series, read_series_headers

__all__ = ["SeriesFiles", "SeriesHeaders", "list_series", "read_series", "read_series_headers"]

"""omas-idc: whole-body CT anatomy segmentation for the Imaging Data Commons, as DICOM."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

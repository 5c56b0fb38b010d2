"""One volume per study: the documented ranking of a study's CT reconstructions.

NLST studies hold several reconstructions of the same acquisition (about 7.7 CT series per
patient): soft-tissue and lung kernels, thick and thin slices, localizers. With
``per_study="one"`` the selection keeps the best-ranked series of each StudyInstanceUID,
comparing, in this order (the first difference decides):

1. geometry: series known to be a regular 3D volume (``volume_geometry_index``) before those
   not known, before those known to be irregular;
2. kernel: soft-tissue kernels before unknown kernels before sharp (lung, bone) kernels. The
   kernel is ``ct_index.ConvolutionKernel`` where available, else any token of the
   SeriesDescription that names a kernel (NLST descriptions carry it: ``...,STANDARD,...``);
3. slice thickness: thinner first (``ct_index.SliceThickness`` where available);
4. instance count: more slices first (over the same study coverage, thinner slices);
5. SeriesInstanceUID, ascending, so that the choice never depends on row order.

The kernel classes are deliberately conservative lists of vendor names (:data:`SOFT_KERNELS`,
:data:`SHARP_KERNELS`); anything else is "unknown" and ranks in the middle.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from omas_idc.series_ref import SeriesRef

__all__ = [
    "SHARP_KERNELS",
    "SOFT_KERNELS",
    "kernel_class",
    "one_per_study",
    "rank_key",
]

#: Soft-tissue (smooth, standard body) kernels: GE STANDARD/SOFT, Siemens B/Br/I 10-45,
#: Toshiba/Canon FC01-FC19, Philips A/B/C, generic names.
SOFT_KERNELS = re.compile(
    r"^(STANDARD|STND|SOFT|SMOOTH|BODY|ABDOMEN|[BI]R?[1-4]\d[FSDH]?\d?|FC[01]\d|[ABC])$"
)
#: Sharp kernels for lung or bone: GE LUNG/BONE/BONEPLUS/EDGE/DETAIL, Siemens B/Br/I 50-99,
#: Toshiba/Canon FC30-FC89, Philips D/E/L/Y*.
SHARP_KERNELS = re.compile(
    r"^(LUNG|BONE|BONEPLUS|EDGE|DETAIL|SHARP|ULTRA|[BI]R?[5-9]\d[FSDH]?\d?|FC[3-8]\d|[DEL]|Y[A-D])$"
)
_TOKEN = re.compile(r"[,\s/_;()]+")


def kernel_class(kernel: str | None, description: str | None = None) -> int:
    """0 for a soft-tissue kernel, 2 for a sharp one, 1 where unknown.

    Parameters
    ----------
    kernel
        The ConvolutionKernel (``ct_index``), or ``None``.
    description
        The SeriesDescription, searched token by token when ``kernel`` is ``None``.
    """
    candidates = [kernel] if kernel else _TOKEN.split(description or "")
    for token in candidates:
        text = token.strip().upper()
        if not text:
            continue
        if SOFT_KERNELS.match(text):
            return 0
        if SHARP_KERNELS.match(text):
            return 2
    return 1


def rank_key(ref: SeriesRef) -> tuple[int, int, float, int, str]:
    """The sort key of ``ref`` within its study (smaller is better); see the module docstring."""
    geometry = {True: 0, None: 1, False: 2}[ref.regular_volume]
    thickness = ref.slice_thickness_mm if ref.slice_thickness_mm is not None else float("inf")
    return (
        geometry,
        kernel_class(ref.convolution_kernel, ref.series_description),
        thickness,
        -ref.instance_count,
        ref.series_instance_uid,
    )


def one_per_study(refs: Iterable[SeriesRef]) -> list[SeriesRef]:
    """The best-ranked series of each study (by :func:`rank_key`), sorted by SeriesInstanceUID."""
    best: dict[str, SeriesRef] = {}
    for ref in refs:
        current = best.get(ref.study_instance_uid)
        if current is None or rank_key(ref) < rank_key(current):
            best[ref.study_instance_uid] = ref
    return sorted(best.values(), key=lambda r: r.series_instance_uid)

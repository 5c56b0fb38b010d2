"""Preview PNGs: a few axial and coronal slices with the segments in their catalog colours.

The volume is turned (by axis permutation and flips only, following the dominant direction
of each axis in the affine) so that every preview is shown the same way whatever the
acquisition: axial slices seen from the feet (patient's right on the image's left, anterior at
the top), coronal slices seen from the front (superior at the top). Pixels keep their physical
aspect ratio. Oblique and tilted grids are shown on their own axes (a preview, not a
reformat). matplotlib is imported on use, with the Agg canvas only (no global backend change).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from omas_idc.catalog.model import Catalog
from omas_idc.errors import QAError
from omas_idc.labelmap import TaskLabelMap
from omas_idc.volume import CTVolume

__all__ = ["HU_WINDOW", "OVERLAY_ALPHA", "to_lps_axes", "write_previews"]

logger = logging.getLogger(__name__)

#: Display window (HU) of the previews: wide enough for lungs, soft tissue and bone.
HU_WINDOW = (-400.0, 500.0)
#: Opacity of the segment colours over the CT (the legend shows them opaque).
OVERLAY_ALPHA = 0.45


def to_lps_axes(
    volume: CTVolume,
) -> tuple[tuple[int, int, int], tuple[bool, bool, bool], tuple[float, float, float]]:
    """How to turn an array ``[z, y, x]`` into ``[S, P, L]`` order (LPS ascending).

    Returns
    -------
    axes, flips, spacing
        ``array.transpose(axes)`` then flipping the axes marked in ``flips`` gives an array
        whose axes run along LPS z, y, x (increasing); ``spacing`` is the voxel size (mm)
        along those axes.
    """
    a = volume.geometry.affine[:3, :3]
    axes: list[int] = []
    flips: list[bool] = []
    spacing: list[float] = []
    for component in (2, 1, 0):  # LPS z, y, x
        # array axis k runs along affine column 2 - k
        scores = [abs(a[component, 2 - k]) / np.linalg.norm(a[:, 2 - k]) for k in range(3)]
        k = int(np.argmax(scores))
        if k in axes:
            raise QAError(
                "the volume's axes are too oblique to show as axial/coronal previews",
                series_instance_uid=volume.series_instance_uid or None,
                reason="preview-orientation",
            )
        axes.append(k)
        flips.append(bool(a[component, 2 - k] < 0))
        spacing.append(float(np.linalg.norm(a[:, 2 - k])))
    return (
        (axes[0], axes[1], axes[2]),
        (flips[0], flips[1], flips[2]),
        (
            spacing[0],
            spacing[1],
            spacing[2],
        ),
    )


def _turn(
    array: npt.NDArray[np.generic], axes: tuple[int, int, int], flips: tuple[bool, bool, bool]
) -> npt.NDArray[np.generic]:
    out = np.transpose(array, axes)
    for axis, flip in enumerate(flips):
        if flip:
            out = np.flip(out, axis=axis)
    return out


def _colour_tables(
    labelmaps: Sequence[TaskLabelMap], catalog: Catalog
) -> tuple[list[npt.NDArray[np.float64]], dict[str, tuple[int, int, int]]]:
    tables = []
    legend: dict[str, tuple[int, int, int]] = {}
    for labelmap in labelmaps:
        present = labelmap.present_labels()
        structures = catalog.resolve_labels(labelmap.model, labelmap.task, labelmap.labels)
        table = np.zeros((max(present, default=0) + 1, 4))
        for value in present:
            structure = structures[value]
            table[value, :3] = np.asarray(structure.color_rgb) / 255.0
            table[value, 3] = OVERLAY_ALPHA
            legend[structure.name] = structure.color_rgb
        tables.append(table)
    return tables, legend


def write_previews(
    volume: CTVolume,
    labelmaps: Sequence[TaskLabelMap],
    catalog: Catalog,
    out_dir: str | Path,
    *,
    stem: str = "preview",
    slices: int = 3,
    dpi: int = 80,
) -> list[Path]:
    """Write ``<stem>_axial.png`` and ``<stem>_coronal.png`` into ``out_dir``.

    Each shows ``slices`` slices evenly spread over the extent of the segments (of the whole
    volume where none is present), the segments overlaid in catalog colours, and a legend
    of the structures present.

    Returns
    -------
    list of Path
        The two PNG files.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    axes, flips, spacing = to_lps_axes(volume)
    hu = _turn(volume.hu, axes, flips)
    labels = [_turn(lm.array, axes, flips) for lm in labelmaps]
    tables, legend = _colour_tables(labelmaps, catalog)
    any_label = np.zeros(hu.shape, dtype=np.bool_)
    for array in labels:
        any_label |= np.asarray(array).astype(np.bool_)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    low, high = HU_WINDOW
    grey = np.clip((hu.astype(np.float32) - low) / (high - low), 0.0, 1.0)
    written = []
    for view, axis in (("axial", 0), ("coronal", 1)):
        profile = any_label.any(axis=tuple(a for a in range(3) if a != axis))
        where = np.flatnonzero(profile) if profile.any() else np.arange(hu.shape[axis])
        picks = np.unique(np.round(np.linspace(where[0], where[-1], slices + 2)[1:-1]).astype(int))
        figure = Figure(figsize=(4.0 * len(picks) + 2.5, 4.5), dpi=dpi)
        FigureCanvasAgg(figure)
        for i, index in enumerate(picks):
            ax = figure.add_subplot(1, len(picks), i + 1)
            image = np.take(grey, index, axis=axis)
            overlay = np.zeros((*image.shape, 4))
            for array, table in zip(labels, tables, strict=True):
                values = np.take(array, index, axis=axis)
                values = np.minimum(values, len(table) - 1)
                colours = table[values]
                mask = colours[..., 3] > 0
                overlay[mask] = colours[mask]
            if view == "axial":
                # rows: posterior down (P increasing), columns: patient left to the right
                aspect = spacing[1] / spacing[2]
            else:
                # coronal: superior at the top
                image, overlay = image[::-1], overlay[::-1]
                aspect = spacing[0] / spacing[2]
            ax.imshow(
                image, cmap="gray", vmin=0.0, vmax=1.0, aspect=aspect, interpolation="nearest"
            )
            ax.imshow(overlay, aspect=aspect, interpolation="nearest")
            ax.set_title(f"{view} {i + 1}/{len(picks)}", fontsize=9)
            ax.set_axis_off()
        handles = [
            Patch(color=(rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0), label=name)
            for name, rgb in legend.items()
        ]
        if handles:
            figure.legend(
                handles=handles,
                loc="center right",
                fontsize=6,
                ncol=max(1, len(handles) // 30 + 1),
                frameon=False,
            )
        figure.suptitle(
            f"{volume.header.series_description or volume.series_instance_uid} ({view})",
            fontsize=9,
        )
        figure.subplots_adjust(left=0.01, right=0.8, top=0.9, bottom=0.02, wspace=0.05)
        path = out / f"{stem}_{view}.png"
        figure.savefig(path, dpi=dpi, metadata={"Software": None})
        written.append(path)
    logger.info("series %s: previews %s", volume.series_instance_uid, [p.name for p in written])
    return written

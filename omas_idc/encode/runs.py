"""Where the labels of a label map lie, from its horizontal runs, without a pass per label.

A 512x512x300 task map is 78 million voxels but a few hundred thousand runs: the rows that
hold any label are found 8 bytes at a time, and only those rows are cut into runs. The runs
give, per label, the slices it occupies and its bounding box, which is all the SEG layouts
need to know (which frames exist, and where to look for each segment's pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from omas_idc.encode.rle import nonzero_rows

__all__ = ["LabelLayout", "label_layout"]


@dataclass(frozen=True, eq=False)
class LabelLayout:
    """The present labels of a (slices, rows, columns) label array and where they are.

    Attributes
    ----------
    labels
        The non-zero values present, ascending.
    slices
        Label -> the slice indices (ascending) in which it is present.
    boxes
        Label -> its bounding box as (slice, row, column) ``slice`` objects.
    """

    labels: tuple[int, ...]
    slices: dict[int, npt.NDArray[np.intp]]
    boxes: dict[int, tuple[slice, slice, slice]]

    @property
    def labelled_slices(self) -> npt.NDArray[np.intp]:
        """The slices that hold any label, ascending."""
        if not self.slices:
            return np.zeros(0, dtype=np.intp)
        return np.unique(np.concatenate(list(self.slices.values())))


def label_layout(array: npt.NDArray[np.unsignedinteger]) -> LabelLayout:
    """The :class:`LabelLayout` of a 3-D label array (0 is background)."""
    depth, height, width = array.shape
    rows = np.ascontiguousarray(array).reshape(depth * height, width)
    row_index = np.flatnonzero(nonzero_rows(rows))
    if row_index.size == 0:
        return LabelLayout((), {}, {})
    flat = rows[row_index].reshape(-1)
    boundary = np.empty(flat.size, dtype=bool)
    boundary[0] = True
    np.not_equal(flat[1:], flat[:-1], out=boundary[1:])
    boundary[::width] = True
    starts = np.flatnonzero(boundary)
    lengths = np.diff(starts, append=flat.size)
    values = flat[starts]
    keep = values != 0
    starts, lengths, values = starts[keep], lengths[keep], values[keep].astype(np.int64)
    source_row = row_index[starts // width]
    slice_of_run = source_row // height
    row_of_run = source_row % height
    first_column = starts % width
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    group = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    labels = ordered[group]

    def low(a: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return np.minimum.reduceat(a[order], group)

    def high(a: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return np.maximum.reduceat(a[order], group)

    last_column = first_column + lengths
    boxes_z = (low(slice_of_run), high(slice_of_run) + 1)
    boxes_y = (low(row_of_run), high(row_of_run) + 1)
    boxes_x = (low(first_column), high(last_column))
    pairs = np.unique(values * depth + slice_of_run)
    pair_label = pairs // depth
    bounds = np.searchsorted(pair_label, np.append(labels, labels[-1] + 1))
    slices: dict[int, npt.NDArray[np.intp]] = {}
    boxes: dict[int, tuple[slice, slice, slice]] = {}
    for index, label in enumerate(int(v) for v in labels):
        slices[label] = (pairs[bounds[index] : bounds[index + 1]] % depth).astype(np.intp)
        boxes[label] = (
            slice(int(boxes_z[0][index]), int(boxes_z[1][index])),
            slice(int(boxes_y[0][index]), int(boxes_y[1][index])),
            slice(int(boxes_x[0][index]), int(boxes_x[1][index])),
        )
    return LabelLayout(tuple(int(v) for v in labels), slices, boxes)

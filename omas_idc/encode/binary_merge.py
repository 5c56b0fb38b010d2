"""Merge per-task BINARY Segmentations into one, without one-hot volumes in memory.

Handing highdicom a (slices, rows, columns, segments) boolean array for 167 structures of a
512x512x300 series would take 13 GB. Within one task labels do not overlap, so each task is
encoded from its label map (highdicom accepts integer label maps for BINARY), and the tasks'
SEGs, which share the source images, planes and dimension organisation, are merged here:
segments renumbered 1..N in the requested order, frames re-ordered by (segment, plane) with
their Referenced Segment Number and dimension index renumbered, and the 1-bit frames packed
again (PS3.5 8.1.1: BINARY frames are packed across frame boundaries).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pack_bits
from pydicom.sequence import Sequence as DicomSequence

__all__ = ["merge_binary_segmentations"]


def _segment_identification(seg: hd.seg.Segmentation, item: Dataset) -> Dataset:
    """A frame's Segment Identification item (highdicom shares it when there is one segment)."""
    if "SegmentIdentificationSequence" in item:
        return item.SegmentIdentificationSequence[0]
    shared = seg.SharedFunctionalGroupsSequence[0]
    return shared.SegmentIdentificationSequence[0]


def _frames_by_segment(seg: hd.seg.Segmentation) -> dict[int, list[int]]:
    frames: dict[int, list[int]] = {}
    for index, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(_segment_identification(seg, item).ReferencedSegmentNumber)
        frames.setdefault(number, []).append(index)
    return frames


def _pack(frames: list[npt.NDArray[np.uint8]]) -> bytes:
    if not frames:
        return b""
    packed = pack_bits(np.concatenate([f.ravel() for f in frames]))
    return packed + (b"\x00" if len(packed) % 2 else b"")


def merge_binary_segmentations(
    parts: Sequence[hd.seg.Segmentation], order: Sequence[tuple[int, int]]
) -> hd.seg.Segmentation:
    """One BINARY Segmentation from ``parts``.

    Parameters
    ----------
    parts
        BINARY Segmentations of the same source images, made with the same UIDs.
    order
        The merged segments in order: ``(part index, segment number in that part)``; the
        merged segment numbers are 1..N in this order.
    """
    merged = copy.deepcopy(parts[0])
    decoded = [np.asarray(part.pixel_array, dtype=np.uint8) for part in parts]
    if decoded[0].ndim == 2:
        decoded = [d[None] for d in decoded]
    frame_index = [_frames_by_segment(part) for part in parts]
    descriptions = []
    per_frame = []
    pixel_frames: list[npt.NDArray[np.uint8]] = []
    for number, (part_index, local) in enumerate(order, start=1):
        part = parts[part_index]
        description = copy.deepcopy(part.get_segment_description(local))
        description.SegmentNumber = number
        descriptions.append(description)
        for frame in frame_index[part_index].get(local, []):
            # The parts are discarded after the merge: their items are moved, not copied.
            item = part.PerFrameFunctionalGroupsSequence[frame]
            identification = copy.deepcopy(_segment_identification(part, item))
            identification.ReferencedSegmentNumber = number
            item.SegmentIdentificationSequence = DicomSequence([identification])
            content = item.FrameContentSequence[0]
            values = list(content.DimensionIndexValues)
            values[0] = number
            content.DimensionIndexValues = values
            per_frame.append(item)
            pixel_frames.append(decoded[part_index][frame])
    shared = merged.SharedFunctionalGroupsSequence[0]
    if "SegmentIdentificationSequence" in shared:
        del shared.SegmentIdentificationSequence
    merged.SegmentSequence = DicomSequence(descriptions)  # type: ignore[assignment]
    merged.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)  # type: ignore[assignment]
    merged.NumberOfFrames = len(per_frame)
    merged.PixelData = _pack(pixel_frames)
    # Segments of different tasks may overlap (PS3.3 C.8.20.2: YES, UNDEFINED or NO).
    merged.SegmentsOverlap = "UNDEFINED"
    # Rebuild highdicom's frame index for the merged content.
    return hd.seg.Segmentation.from_dataset(merged, copy=False)

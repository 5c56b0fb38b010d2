"""The 1-bit pixel data of a BINARY Segmentation, segment by segment, without one-hot volumes.

A BINARY SEG of 117 structures on a 512x512x300 series holds thousands of frames (184 MB of
bits); building a (slices, rows, columns, segments) boolean array for highdicom would take
13 GB. Here each segment's frames are made from its own label map, only inside its bounding
box, and packed straight into the output (PS3.5 8.1.1: pixels are packed 8 to a byte, the
first pixel in the least significant bit, frames following each other without padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["SegmentFrames", "pack_binary_frames"]


@dataclass(frozen=True, eq=False)
class SegmentFrames:
    """The frames of one segment: where ``array == value`` on ``slices``, in frame order.

    ``box`` bounds the segment (slice, row, column); outside it every pixel is 0.
    """

    array: npt.NDArray[np.unsignedinteger]
    value: int
    slices: npt.NDArray[np.intp]
    box: tuple[slice, slice, slice]


def _pack_aligned(segments: Sequence[SegmentFrames], rows: int, columns: int) -> bytes:
    """Rows of a multiple of 8 pixels: each row packs into whole bytes, box by box."""
    total = sum(len(s.slices) for s in segments)
    out = np.zeros((total, rows, columns // 8), dtype=np.uint8)
    first = 0
    for segment in segments:
        _, row_box, column_box = segment.box
        start = column_box.start // 8
        stop = -(-column_box.stop // 8)
        block = segment.array[segment.slices, row_box, 8 * start : 8 * stop] == segment.value
        count = len(segment.slices)
        out[first : first + count, row_box, start:stop] = np.packbits(
            block, axis=-1, bitorder="little"
        )
        first += count
    return out.tobytes()


def _pack_any(segments: Sequence[SegmentFrames], rows: int, columns: int) -> bytes:
    """Any frame size: whole frames, the bits left over at a frame's end carried on."""
    parts = []
    carry = np.zeros(0, dtype=bool)
    for segment in segments:
        _, row_box, column_box = segment.box
        frames = np.zeros((len(segment.slices), rows, columns), dtype=bool)
        frames[:, row_box, column_box] = (
            segment.array[segment.slices, row_box, column_box] == segment.value
        )
        bits = np.concatenate([carry, frames.reshape(-1)])
        whole = len(bits) // 8 * 8
        parts.append(np.packbits(bits[:whole], bitorder="little").tobytes())
        carry = bits[whole:]
    if carry.size:
        parts.append(np.packbits(carry, bitorder="little").tobytes())
    return b"".join(parts)


def pack_binary_frames(segments: Sequence[SegmentFrames], rows: int, columns: int) -> bytes:
    """The Pixel Data of the segments' frames, one segment after the other, even length."""
    if columns % 8 == 0:
        data = _pack_aligned(segments, rows, columns)
    else:
        data = _pack_any(segments, rows, columns)
    return data + b"\x00" if len(data) % 2 else data

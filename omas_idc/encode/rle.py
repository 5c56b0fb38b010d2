"""RLE Lossless (PS3.5 Annex G) for whole stacks of label frames at once, in numpy.

Label maps are long runs of a few values, so the work is proportional to the number of runs,
not of pixels: the runs of all rows of all frames are found in one vectorised pass and cut
into PackBits chunks (G.3.1: a replicate run repeats one byte 2..128 times, a literal run
copies 1..128 bytes; no run crosses a row). 16-bit frames are split into two byte segments,
most significant first (G.2). Decoders (pydicom, pylibjpeg-rle, DCMTK) accept any valid
PackBits stream, and the same frames always give the same bytes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["encode_rle_frames", "nonzero_rows"]

_MAX_RUN = 128


def _exclusive_cumsum(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    out = np.zeros(len(values), dtype=np.int64)
    np.cumsum(values[:-1], out=out[1:])
    return out


def _packbits_rows(
    rows: npt.NDArray[np.uint8],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """PackBits of each row of ``rows`` (n, columns): the encodings back to back, their lengths."""
    count, columns = rows.shape
    flat = rows.reshape(-1)
    size = flat.size
    if size == 0:
        return np.empty(0, dtype=np.uint8), np.zeros(count, dtype=np.int64)
    # A run starts where the byte changes and at every row start.
    boundary = np.empty(size, dtype=bool)
    boundary[0] = True
    np.not_equal(flat[1:], flat[:-1], out=boundary[1:])
    boundary[::columns] = True
    starts = np.flatnonzero(boundary)
    lengths = np.diff(starts, append=size)
    single = lengths == 1
    row_start = starts % columns == 0
    # Consecutive single bytes in a row form one literal unit; every other run is a unit.
    continues_literal = np.zeros(len(starts), dtype=bool)
    continues_literal[1:] = single[1:] & single[:-1] & ~row_start[1:]
    units = np.flatnonzero(~continues_literal)
    unit_length = np.diff(starts[units], append=size)
    unit_literal = single[units]
    # Units longer than 128 bytes become several chunks; a replicate run never ends in a
    # chunk of one byte (128 + 1 is written as 127 + 2).
    chunks = (unit_length + _MAX_RUN - 1) // _MAX_RUN
    chunk_unit = np.repeat(np.arange(len(units)), chunks)
    position = np.arange(len(chunk_unit)) - np.repeat(_exclusive_cumsum(chunks), chunks)
    last = unit_length - _MAX_RUN * (chunks - 1)
    is_last = position == chunks[chunk_unit] - 1
    chunk_size = np.where(is_last, last[chunk_unit], _MAX_RUN)
    short_tail = ~unit_literal & (last == 1) & (chunks > 1)
    tail_unit = short_tail[chunk_unit]
    chunk_size[tail_unit & is_last] = 2
    chunk_size[tail_unit & (position == chunks[chunk_unit] - 2)] = _MAX_RUN - 1
    chunk_start = np.cumsum(chunk_size) - chunk_size  # units tile the rows from 0
    literal = unit_literal[chunk_unit]
    out_size = np.where(literal, chunk_size + 1, 2)
    out_offset = _exclusive_cumsum(out_size)
    out = np.empty(int(out_size.sum()), dtype=np.uint8)
    # Headers: n - 1 for a literal of n bytes, 257 - n (i.e. 1 - n as int8) for a replicate.
    out[out_offset] = np.where(literal, chunk_size - 1, 257 - chunk_size).astype(np.uint8)
    replicate = ~literal
    out[out_offset[replicate] + 1] = flat[chunk_start[replicate]]
    lit_size = chunk_size[literal]
    within = np.arange(int(lit_size.sum())) - np.repeat(_exclusive_cumsum(lit_size), lit_size)
    out[np.repeat(out_offset[literal] + 1, lit_size) + within] = flat[
        np.repeat(chunk_start[literal], lit_size) + within
    ]
    row_lengths = np.bincount(chunk_start // columns, weights=out_size, minlength=count)
    return out, row_lengths.astype(np.int64)


def nonzero_rows(rows: npt.NDArray[np.unsignedinteger]) -> npt.NDArray[np.bool_]:
    """Which rows of ``rows`` (n, columns) hold a non-zero value, looked at 8 bytes at a time.

    Most rows of a label map are empty: this is the cheap first look that lets the rest of the
    work skip them.
    """
    as_bytes = np.ascontiguousarray(rows).view(np.uint8)
    if as_bytes.shape[1] % 8 == 0:
        return np.asarray(as_bytes.view(np.uint64).any(axis=1))
    return np.asarray(as_bytes.any(axis=1))


def _packbits_planes(planes: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8], list[int]]:
    """PackBits of each (rows, columns) byte plane: the streams back to back and their lengths."""
    count, height, columns = planes.shape
    rows = np.ascontiguousarray(planes).reshape(count * height, columns)
    zero = ~nonzero_rows(rows)
    # Zero rows all encode alike; only the others go through the run analysis.
    zero_encoding, _ = _packbits_rows(np.zeros((1, columns), dtype=np.uint8))
    varied, varied_lengths = _packbits_rows(rows[~zero])
    row_lengths = np.full(len(rows), len(zero_encoding), dtype=np.int64)
    row_lengths[~zero] = varied_lengths
    row_offset = _exclusive_cumsum(row_lengths)
    out = np.empty(int(row_lengths.sum()), dtype=np.uint8)
    out[row_offset[zero][:, None] + np.arange(len(zero_encoding))] = zero_encoding
    out[
        np.repeat(row_offset[~zero] - _exclusive_cumsum(varied_lengths), varied_lengths)
        + np.arange(len(varied))
    ] = varied
    plane_offset = np.append(row_offset[::height], len(out))
    return out, [int(n) for n in np.diff(plane_offset)]


def encode_rle_frames(frames: npt.NDArray[np.unsignedinteger]) -> list[bytes]:
    """RLE Lossless encodings of ``frames`` (n, rows, columns), uint8 or uint16, one per frame."""
    if frames.dtype == np.uint8:
        segments = [frames]
    elif frames.dtype == np.uint16:
        segments = [(frames >> 8).astype(np.uint8), (frames & 0xFF).astype(np.uint8)]
    else:
        raise TypeError(f"RLE frames must be uint8 or uint16, got {frames.dtype}")
    count = frames.shape[0]
    if count == 0:
        return []
    encoded = [_packbits_planes(segment) for segment in segments]
    offsets = [np.concatenate([[0], np.cumsum(lengths)]) for _, lengths in encoded]
    result = []
    for index in range(count):
        header = np.zeros(16, dtype="<u4")
        header[0] = len(segments)
        parts = []
        position = 64
        for number, (data, _) in enumerate(encoded):
            header[1 + number] = position
            part = data[offsets[number][index] : offsets[number][index + 1]].tobytes()
            if len(part) % 2:
                part += b"\x00"  # G.5: each segment has an even length
            parts.append(part)
            position += len(part)
        result.append(header.tobytes() + b"".join(parts))
    return result

"""The vectorised building blocks of the encoder against plain references.

RLE frames decode (pylibjpeg-rle, the decoder pydicom uses) to the input; label layouts equal
per-label brute force; packed BINARY frames equal numpy's packing of the full masks.
"""

from __future__ import annotations

import numpy as np
import pytest
from rle.utils import decode_frame

from omas_idc.encode.binary_frames import SegmentFrames, pack_binary_frames
from omas_idc.encode.rle import encode_rle_frames
from omas_idc.encode.runs import label_layout


def _decoded(encoded: bytes, frame: np.ndarray) -> np.ndarray:
    bits = 8 * frame.dtype.itemsize
    data = decode_frame(encoded, frame.size, bits, ">")
    return np.frombuffer(data, dtype=">u2" if bits == 16 else np.uint8).reshape(frame.shape)


def _frames(rng: np.random.Generator, shape: tuple[int, int, int], dtype: type) -> list[np.ndarray]:
    top = 65535 if dtype is np.uint16 else 255
    sparse = np.zeros(shape, dtype)
    sparse[:, 1::3, 2:-1] = rng.integers(0, 3, sparse[:, 1::3, 2:-1].shape)
    return [
        rng.integers(0, 3, shape).astype(dtype),  # short runs and singles
        rng.integers(0, top, shape).astype(dtype),  # literals
        np.zeros(shape, dtype),
        np.full(shape, top, dtype),
        sparse,
    ]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 1, 1), (2, 4, 300), (1, 3, 257), (2, 6, 16)])
def test_rle_frames_decode_to_their_input(shape: tuple[int, int, int], dtype: type) -> None:
    rng = np.random.default_rng(sum(shape))
    for frames in _frames(rng, shape, dtype):
        encoded = encode_rle_frames(frames)
        assert len(encoded) == len(frames)
        for frame, data in zip(frames, encoded, strict=True):
            assert len(data) % 2 == 0
            np.testing.assert_array_equal(_decoded(data, frame), frame)
        assert encode_rle_frames(frames) == encoded  # deterministic


@pytest.mark.parametrize("length", [2, 3, 127, 128, 129, 130, 256, 257, 258, 385])
def test_rle_runs_across_the_128_byte_limit(length: int) -> None:
    frame = np.zeros((1, 2, length + 3), dtype=np.uint8)
    frame[0, 0, 1 : 1 + length] = 7
    frame[0, 1, :length] = np.arange(length) % 251
    (data,) = encode_rle_frames(frame)
    np.testing.assert_array_equal(_decoded(data, frame[0]), frame[0])


def test_label_layout_matches_brute_force() -> None:
    rng = np.random.default_rng(7)
    for shape, dtype in [((5, 7, 9), np.uint8), ((4, 6, 16), np.uint16), ((6, 3, 8), np.uint8)]:
        array = ((rng.random(shape) < 0.2) * rng.integers(1, 9, shape)).astype(dtype)
        layout = label_layout(array)
        assert list(layout.labels) == [int(v) for v in np.unique(array) if v]
        for value in layout.labels:
            mask = array == value
            where = np.argwhere(mask)
            box = tuple(
                slice(int(lo), int(hi) + 1)
                for lo, hi in zip(where.min(0), where.max(0), strict=True)
            )
            assert layout.boxes[value] == box
            np.testing.assert_array_equal(
                layout.slices[value], np.flatnonzero(mask.any(axis=(1, 2)))
            )
        np.testing.assert_array_equal(
            layout.labelled_slices, np.flatnonzero(array.any(axis=(1, 2)))
        )
    assert label_layout(np.zeros((2, 3, 8), np.uint8)).labels == ()


@pytest.mark.parametrize("columns", [16, 13])
def test_binary_frames_pack_like_numpy(columns: int) -> None:
    """PS3.5 8.1.1: frames follow each other bit by bit, also where a frame is not whole bytes."""
    rng = np.random.default_rng(columns)
    array = ((rng.random((6, 5, columns)) < 0.3) * rng.integers(1, 4, (6, 5, columns))).astype(
        np.uint8
    )
    layout = label_layout(array)
    segments = [
        SegmentFrames(array, v, layout.slices[v][::-1], layout.boxes[v]) for v in layout.labels
    ]
    expected = np.concatenate([(array[s.slices] == s.value).reshape(-1) for s in segments])
    packed = np.packbits(expected, bitorder="little").tobytes()
    data = pack_binary_frames(segments, 5, columns)
    assert data[: len(packed)] == packed
    assert len(data) == len(packed) + len(packed) % 2

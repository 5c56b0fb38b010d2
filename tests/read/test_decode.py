"""Uncompressed pixel data read straight into the volume equals pydicom's reading of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from omas_idc.read import read_series
from omas_idc.read.decode import PADDING_HU, stored_to_hu

EXPLICIT = (
    "cornerstone3D/testImages/"
    "CTImage.dcm_LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm"
)


def _with_pixels(
    shared_data: Path, tmp_path: Path, *, signed: bool, bits_stored: int, padding: int | None
) -> Path:
    """The cornerstone CT slice re-stored with ``bits_stored`` and noise in the unused bits."""
    ds = pydicom.dcmread(shared_data / EXPLICIT)
    rng = np.random.default_rng(bits_stored + 16 * signed)
    low, high = (
        (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1)) if signed else (0, 2**bits_stored)
    )
    values = rng.integers(low, high, size=(int(ds.Rows), int(ds.Columns)))
    # High bits that are not part of the value (PS3.5 8.1.1), as some scanners leave them.
    noise = rng.integers(0, 2 ** (16 - bits_stored), size=values.shape) << bits_stored
    raw = ((values & 0xFFFF) ^ noise).astype(np.uint16)
    ds.PixelRepresentation = int(signed)
    ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
    if "PixelPaddingValue" in ds:
        del ds.PixelPaddingValue
    if padding is not None:
        raw[:8] = padding & 0xFFFF
        ds.add_new("PixelPaddingValue", "SS" if signed else "US", padding)
    ds.PixelData = raw.tobytes()
    path = tmp_path / f"{signed}-{bits_stored}.dcm"
    ds.save_as(path)
    return path


@pytest.mark.parametrize(
    ("signed", "bits_stored", "padding"),
    [(False, 12, None), (True, 12, None), (True, 16, None), (False, 16, None), (True, 13, -2000)],
)
def test_uncompressed_slices_equal_pydicoms_stored_values(
    shared_data: Path, tmp_path: Path, signed: bool, bits_stored: int, padding: int | None
) -> None:
    path = _with_pixels(
        shared_data, tmp_path, signed=signed, bits_stored=bits_stored, padding=padding
    )
    ds = pydicom.dcmread(path)
    expected, _ = stored_to_hu(
        pydicom.pixels.pixel_array(ds, raw=True),
        float(ds.RescaleSlope),
        float(ds.RescaleIntercept),
        None if padding is None else (padding, padding),
    )
    volume = read_series(path)
    np.testing.assert_array_equal(volume.hu[0], expected)
    if bits_stored < 16:
        # The unused bits carried noise: reading them as value bits would give other HU.
        naive = np.frombuffer(ds.PixelData, "<i2" if signed else "<u2").reshape(expected.shape)
        assert not np.array_equal(naive.astype(np.int32) + int(ds.RescaleIntercept), volume.hu[0])
    if padding is not None:
        assert (volume.hu[0, :8] == PADDING_HU).all()


def test_stored_to_hu_writes_in_place_over_its_own_input() -> None:
    buffer = np.array([[0, 1000, 4095]], dtype=np.int16)
    stored = buffer.view(np.uint16)
    hu, clipped = stored_to_hu(stored, 1.0, -1024.0, out=buffer)
    assert hu is buffer
    assert clipped == 0
    np.testing.assert_array_equal(buffer, [[-1024, -24, 3071]])

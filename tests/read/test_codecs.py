"""The GIL-releasing JPEG 2000 decoder gives exactly what pydicom's backends give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import JPEG2000Lossless

from omas_idc.errors import UnsupportedSeriesError
from omas_idc.read import codecs, read_series

needs_imagecodecs = pytest.mark.skipif(
    not codecs.is_available(JPEG2000Lossless),
    reason=f"needs {', '.join(codecs.missing_dependencies(JPEG2000Lossless))}",
)

#: JPEG 2000 files of ../shared/data: CT (lossless and lossy, signed and unsigned, a codestream
#: whose signedness disagrees with Pixel Representation) and a 3-frame binary SEG.
JPEG2000_FILES = [
    "pydicom/test_files/J2K_pixelrep_mismatch.dcm",
    "pydicom/test_files/693_J2KI.dcm",
    "pydicom-data/data_store/data/693_J2KR.dcm",
    "pydicom-data/data_store/data/liver_j2k.dcm",
    "cornerstone3D/testImages/CT1_J2KR",
    "cornerstone3D/testImages/CTImage.dcm_JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90.dcm",
    "cornerstone3D/testImages/CTImage.dcm_JPEG2000TransferSyntax_1.2.840.10008.1.2.4.91.dcm",
]
TOTALSEG = "totalsegmentator/tests/reference_files/example_ct_dicom"


def _pydicom_frames(ds: pydicom.Dataset) -> np.ndarray:
    frames = pydicom.pixels.pixel_array(ds, raw=True)
    return frames.reshape(int(ds.get("NumberOfFrames", 1) or 1), int(ds.Rows), int(ds.Columns))


@needs_imagecodecs
@pytest.mark.parametrize("name", JPEG2000_FILES)
def test_jpeg2000_frames_equal_pydicoms(shared_data: Path, name: str) -> None:
    ds = pydicom.dcmread(shared_data / name)
    ours = codecs.decode_frames(ds, ds.file_meta.TransferSyntaxUID)
    assert ours is not None
    expected = _pydicom_frames(ds)
    assert ours.dtype == expected.dtype
    np.testing.assert_array_equal(ours, expected)


@needs_imagecodecs
def test_a_codestream_signedness_mismatch_is_corrected_as_pydicom_does(shared_data: Path) -> None:
    # Pixel Representation 1 with an unsigned 13-bit codestream: without the correction the
    # negative values would read as large positive ones.
    ds = pydicom.dcmread(shared_data / "pydicom/test_files/J2K_pixelrep_mismatch.dcm")
    ours = codecs.decode_frames(ds, ds.file_meta.TransferSyntaxUID)
    assert ours is not None
    assert ours.min() < 0
    assert ours.max() < 2**12


@needs_imagecodecs
def test_a_series_reads_to_the_same_hu_with_and_without_imagecodecs(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = read_series(shared_data / TOTALSEG)
    monkeypatch.setattr(codecs, "_imagecodecs", lambda: None)
    assert not codecs.is_available(JPEG2000Lossless)
    assert codecs.missing_dependencies(JPEG2000Lossless)
    fallback = read_series(shared_data / TOTALSEG)
    np.testing.assert_array_equal(fast.hu, fallback.hu)
    assert fast.warnings == fallback.warnings


def test_other_syntaxes_are_left_to_pydicom(shared_data: Path) -> None:
    ds = pydicom.dcmread(
        shared_data
        / "cornerstone3D/testImages/CTImage.dcm_RLELosslessTransferSyntax_1.2.840.10008.1.2.5.dcm"
    )
    assert codecs.decode_frames(ds, ds.file_meta.TransferSyntaxUID) is None
    assert not codecs.is_available(ds.file_meta.TransferSyntaxUID)


def test_a_damaged_codestream_is_refused_naming_the_syntax(
    shared_data: Path, tmp_path: Path
) -> None:
    source = shared_data / JPEG2000_FILES[4]
    ds = pydicom.dcmread(source)
    (codestream,) = generate_frames(ds.PixelData, number_of_frames=1)
    ds.PixelData = encapsulate([codestream[: len(codestream) // 3]])
    broken = tmp_path / "broken.dcm"
    ds.save_as(broken)
    assert codecs.decode_frames(pydicom.dcmread(broken), JPEG2000Lossless) is None
    with pytest.raises(UnsupportedSeriesError, match="JPEG 2000") as err:
        read_series(broken)
    assert err.value.reason == "undecodable"
    assert JPEG2000Lossless in str(err.value)

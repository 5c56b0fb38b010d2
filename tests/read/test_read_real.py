"""The read stage on the real series of ../shared/data (see its PROVENANCE.md files)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from omas_idc.errors import SeriesGeometryError, UnsupportedSeriesError
from omas_idc.nifti import volume_to_nifti
from omas_idc.read import read_series
from omas_idc.read.decode import PADDING_HU

TOTALSEG = "totalsegmentator/tests/reference_files/example_ct_dicom"
PHILIPS_PLAIN = "dcm_qa_ct/In/Philips/S21570/S2010"
PHILIPS_TILT = "dcm_qa_ct/In/Philips/S21610/S2010"
GE_TILT_VARIABLE = "dcm_qa_ct/In/GE"
GAP = "pydicom/test_files/dicomdirtests/77654033/CT2"
CORNERSTONE = "cornerstone3D/testImages"
LOSSLESS_SYNTAXES = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90",
]
#: Lossy syntaxes and the largest mean |HU| difference to the original they may show.
LOSSY_SYNTAXES = {
    "1.2.840.10008.1.2.4.50": 25.0,
    "1.2.840.10008.1.2.4.51": 6.0,
    "1.2.840.10008.1.2.4.81": 2.0,
    "1.2.840.10008.1.2.4.91": 2.0,
}


def _cornerstone(shared_data: Path, uid: str) -> Path:
    (path,) = (shared_data / CORNERSTONE).glob(f"CTImage.dcm_*_{uid}.dcm")
    return path


def test_anonymised_series_reads_with_a_warning_about_missing_uids(shared_data: Path) -> None:
    volume = read_series(shared_data / TOTALSEG)
    assert volume.shape == (20, 512, 512)
    assert volume.hu.min() == -1024
    assert volume.geometry.spacing == pytest.approx((2.0, 0.9765625, 0.9765625))
    assert volume.geometry.orientation_code() == "LPS"
    # Empty UIDs stay empty (never invented) and are reported.
    assert volume.header.series_instance_uid == ""
    assert volume.header.study_instance_uid == ""
    assert volume.header.frame_of_reference_uid != ""
    assert any("missing UIDs" in w and "SeriesInstanceUID" in w for w in volume.warnings)
    # SOP instances are identified through the File Meta Information, in slice order:
    # PROVENANCE.md: slice 0 is the most inferior one, file ...16592 at z = -804.5.
    assert volume.source_refs[0].sop_instance_uid.endswith("16592")
    assert volume.source_refs[0].sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert volume.geometry.slice_positions[0][2] == pytest.approx(-804.5)
    assert volume.geometry.slice_positions[-1][2] == pytest.approx(-766.5)


def test_file_names_out_of_order_read_in_position_order(shared_data: Path) -> None:
    volume = read_series(shared_data / PHILIPS_PLAIN)
    assert volume.shape == (28, 512, 512)
    assert volume.geometry.slice_spacing == pytest.approx(5.0, abs=1e-3)
    assert not volume.geometry.is_sheared
    z = volume.geometry.slice_positions[:, 2]
    assert np.all(np.diff(z) > 0)
    assert volume.warnings == ()


def test_tilted_series_is_carried_in_a_sheared_affine(shared_data: Path) -> None:
    volume = read_series(shared_data / PHILIPS_TILT)
    g = volume.geometry
    assert volume.shape == (54, 512, 512)
    assert g.tilt_degrees == pytest.approx(18.5, abs=0.05)
    assert g.is_sheared
    assert g.slice_spacing == pytest.approx(2.37, abs=0.01)
    assert any("gantry tilt" in w for w in volume.warnings)
    # Every slice's voxel (0, 0) is exactly at its DICOM ImagePositionPatient.
    n = volume.shape[0]
    corners = g.voxel_to_lps(np.stack([np.arange(n), np.zeros(n), np.zeros(n)], -1))
    import pydicom

    positions = {
        str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): [
            float(v) for v in pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient
        ]
        for f in (shared_data / PHILIPS_TILT).iterdir()
    }
    expected = np.array([positions[r.sop_instance_uid] for r in volume.source_refs])
    np.testing.assert_allclose(corners, expected, atol=1e-3)
    with pytest.raises(SeriesGeometryError, match="tilted") as err:
        read_series(shared_data / PHILIPS_TILT, allow_tilt=False)
    assert err.value.reason == "tilt"


def test_variable_spacing_is_refused_naming_it_and_the_tilt(shared_data: Path) -> None:
    with pytest.raises(SeriesGeometryError, match="non-uniform slice spacing") as err:
        read_series(shared_data / GE_TILT_VARIABLE)
    assert err.value.reason == "nonuniform-spacing"
    assert "tilted by 18.5 degrees" in str(err.value)
    assert err.value.series_instance_uid


@pytest.mark.parametrize("study", ["S21570", "S21610"])
def test_secondary_capture_with_modality_ct_is_not_a_ct_volume(
    shared_data: Path, study: str
) -> None:
    with pytest.raises(UnsupportedSeriesError, match="Secondary Capture") as err:
        read_series(shared_data / "dcm_qa_ct/In/Philips" / study / "S4010")
    assert err.value.reason == "not-ct-volume"
    assert err.value.series_instance_uid


def test_a_study_folder_lists_its_series_and_asks_for_one(shared_data: Path) -> None:
    folder = shared_data / "dcm_qa_ct/In/Philips/S21570"
    with pytest.raises(UnsupportedSeriesError, match="--series-uid") as err:
        read_series(folder)
    assert err.value.reason == "several-series"
    for kind in ("[ct,", "[secondary-capture,", "[localizer,"):
        assert kind in str(err.value)
    plain = read_series(shared_data / PHILIPS_PLAIN)
    chosen = read_series(folder, series_instance_uid=plain.series_instance_uid)
    np.testing.assert_array_equal(chosen.hu, plain.hu)


def test_a_localizer_only_series_is_refused(shared_data: Path) -> None:
    with pytest.raises(SeriesGeometryError, match="localizer") as err:
        read_series(shared_data / "dcm_qa_ct/In/Philips/S21570/S1000")
    assert err.value.reason == "too-few-slices"


def test_localizers_of_another_orientation_are_dropped(shared_data: Path) -> None:
    # Scouts relabelled into the axial series: the reader must drop them with a warning.
    import pydicom

    root = shared_data / "pydicom/test_files/dicomdirtests/98892001"
    axial = sorted((root / "CT5N").iterdir())
    scouts = sorted((root / "CT2N").iterdir())
    reference = read_series(axial)
    assert reference.shape == (5, 16, 16)
    with pytest.raises(UnsupportedSeriesError, match="2 image series"):
        read_series([*axial, *scouts])
    volume = read_series([*axial, *scouts], series_instance_uid=reference.series_instance_uid)
    np.testing.assert_array_equal(volume.hu, reference.hu)
    assert pydicom.dcmread(scouts[0]).ImageType[2] == "LOCALIZER"


def test_a_202_mm_gap_is_refused_naming_the_gap(shared_data: Path) -> None:
    with pytest.raises(SeriesGeometryError, match=r"gap of 202\.50 mm") as err:
        read_series(shared_data / GAP)
    assert err.value.reason == "gap"
    assert err.value.series_instance_uid == "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.2"


def test_enhanced_ct_reads_its_frames_in_position_order(shared_data: Path) -> None:
    volume = read_series(shared_data / "pydicom-data/data_store/data/eCT_Supplemental.dcm")
    assert volume.shape == (2, 512, 512)
    # The row cosine is -x, so the normal points to the feet (-z): frame 2 (z = -149) is
    # lowest along the normal and comes first, frame 1 (z = -159) second.
    assert [r.frame_number for r in volume.source_refs] == [2, 1]
    assert volume.geometry.slice_positions[:, 2] == pytest.approx([-149.0, -159.0])
    assert volume.geometry.orientation_code() == "RPI"
    assert volume.hu.min() >= -1024
    jpeg = read_series(shared_data / CORNERSTONE / "CT0012.fragmented_no_bot_jpeg_baseline.51.dcm")
    np.testing.assert_allclose(jpeg.geometry.affine, volume.geometry.affine)
    assert [r.frame_number for r in jpeg.source_refs] == [2, 1]


@pytest.mark.parametrize("size", ["23x38x3", "24x38x3"])
def test_legacy_converted_multiframe_equals_its_single_frame_series(
    shared_data: Path, size: str
) -> None:
    root = shared_data / "dcmqi/data/segmentations" / size
    multi = read_series(root / "multiframe" / "mf.dcm")
    single = read_series(root / "image")
    np.testing.assert_array_equal(multi.hu, single.hu)
    np.testing.assert_allclose(multi.geometry.affine, single.geometry.affine, atol=1e-4)
    assert [r.frame_number for r in multi.source_refs] == [1, 2, 3]
    assert multi.source_refs[0].sop_class_uid == "1.2.840.10008.5.1.4.1.1.2.2"


@pytest.mark.parametrize("uid", LOSSLESS_SYNTAXES)
def test_lossless_transfer_syntaxes_decode_to_identical_hu(shared_data: Path, uid: str) -> None:
    reference = read_series(shared_data / CORNERSTONE / "CTImage.dcm")
    volume = read_series(_cornerstone(shared_data, uid))
    assert volume.shape == (1, 512, 512)
    np.testing.assert_array_equal(volume.hu, reference.hu)
    np.testing.assert_allclose(volume.geometry.affine, reference.geometry.affine)


@pytest.mark.parametrize(("uid", "limit"), LOSSY_SYNTAXES.items())
def test_lossy_transfer_syntaxes_decode_close_to_the_original(
    shared_data: Path, uid: str, limit: float
) -> None:
    reference = read_series(shared_data / CORNERSTONE / "CTImage.dcm")
    volume = read_series(_cornerstone(shared_data, uid))
    difference = np.abs(volume.hu.astype(np.int32) - reference.hu)
    assert difference.mean() < limit


@pytest.mark.parametrize(
    ("uid", "name"),
    [
        ("1.2.840.10008.1.2.4.53", "Spectral Selection"),
        ("1.2.840.10008.1.2.4.55", "Full Progression"),
    ],
)
def test_retired_jpeg_processes_are_refused_naming_the_syntax(
    shared_data: Path, uid: str, name: str
) -> None:
    with pytest.raises(UnsupportedSeriesError, match=name) as err:
        read_series(_cornerstone(shared_data, uid))
    assert err.value.reason == "undecodable"
    assert uid in str(err.value)


def test_jpeg2000_lossless_equals_uncompressed(shared_data: Path) -> None:
    root = shared_data / "pydicom-data/data_store/data"
    np.testing.assert_array_equal(
        read_series(root / "693_J2KR.dcm").hu, read_series(root / "693_UNCR.dcm").hu
    )


def test_single_tilted_slice_reads_as_one_slice(shared_data: Path) -> None:
    volume = read_series(shared_data / "pydicom/test_files/J2K_pixelrep_mismatch.dcm")
    assert volume.shape == (1, 512, 512)
    # One slice cannot show a tilt; its step is SliceThickness (5 mm) along the normal.
    assert volume.geometry.slice_spacing == pytest.approx(5.0)
    assert not volume.geometry.is_sheared
    # The PixelRepresentation mismatch is corrected: no wrapped-around values.
    assert volume.hu.max() < 4000


# -- dcm2niix as an independent reference -------------------------------------------------

DCM2NIIX_SERIES = [
    PHILIPS_PLAIN,
    TOTALSEG,
    "dcmqi/data/segmentations/ct-3slice",
    "dcmqi/data/segmentations/24x38x3/image",
    "pydicom/test_files/dicomdirtests/98892001/CT5N",
]


@pytest.mark.parametrize("series", DCM2NIIX_SERIES)
def test_affine_and_voxels_equal_dcm2niix(shared_data: Path, tmp_path: Path, series: str) -> None:
    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix is not installed (pip install dcm2niix)")
    subprocess.run(
        ["dcm2niix", "-z", "n", "-f", "out", "-o", str(tmp_path), str(shared_data / series)],
        check=True,
        capture_output=True,
    )
    (output,) = tmp_path.glob("out*.nii")
    volume = read_series(shared_data / series)
    # dcm2niix flips the rows; bring both to the closest canonical (RAS) voxel order.
    theirs = nib.as_closest_canonical(nib.load(output))
    ours = nib.as_closest_canonical(volume_to_nifti(volume))
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-3)
    our_hu = np.asarray(ours.dataobj)
    their_hu = np.asarray(theirs.get_fdata())
    # Pixel padding (PS3.3 C.7.5.1.1.2) is air for us; dcm2niix keeps the padding value.
    padded = (our_hu == PADDING_HU) & (their_hu < PADDING_HU)
    np.testing.assert_array_equal(our_hu[~padded], their_hu[~padded])

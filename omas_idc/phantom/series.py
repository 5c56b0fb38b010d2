"""A synthetic CT phantom written as a DICOM series, with its true label map.

The ground truth every stage is tested against. ``make_phantom(out_dir, PhantomOptions(...))``
renders the analytic anatomy of :mod:`omas_idc.phantom.anatomy` on an acquisition grid
(axial/coronal/sagittal, any patient position, row/column flips, oblique rotation, gantry
tilt), writes one CT Image Storage file per slice in the chosen transfer syntax, and returns
the intended HU, the label map and the analytic truth of each structure.

The returned ``geometry``, ``hu`` and ``labels`` always describe the complete regular grid,
slices ascending along the slice normal (the read stage's convention); options that damage
the series (``missing_slice``, ``duplicate_slice``, ``localizer``) change only the files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from omas_idc import __version__
from omas_idc.geometry import VolumeGeometry, slice_normal
from omas_idc.phantom.anatomy import AIR_HU, AnatomyStructure, phantom_anatomy

__all__ = [
    "TRANSFER_SYNTAXES",
    "Phantom",
    "PhantomOptions",
    "StructureTruth",
    "make_phantom",
    "render_phantom",
]

#: Short names of the transfer syntaxes the phantom writes.
TRANSFER_SYNTAXES: dict[str, UID] = {
    "explicit": ExplicitVRLittleEndian,
    "implicit": ImplicitVRLittleEndian,
    "jpeg2000": JPEG2000Lossless,
    "rle": RLELossless,
    "jpegls": JPEGLSLossless,
}
ORIENTATIONS = ("axial", "coronal", "sagittal")
PATIENT_POSITIONS = ("HFS", "FFS", "HFP", "FFP")

# Row and column direction cosines for a head-first-supine patient (PS3.3 C.7.6.2.1.1).
_BASE_COSINES = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
}
# How each patient position turns the patient in the scanner: a 180 degree rotation.
_POSITION_FLIPS = {
    "HFS": (1.0, 1.0, 1.0),
    "FFS": (-1.0, 1.0, -1.0),
    "HFP": (-1.0, -1.0, 1.0),
    "FFP": (1.0, -1.0, -1.0),
}
_UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root, as generate_uid uses by default


@dataclass(frozen=True)
class PhantomOptions:
    """How to acquire and write the phantom.

    Attributes
    ----------
    seed
        Varies sizes, positions, shapes, HU values and noise (see the anatomy module).
    shape
        (slices, rows, columns) of the grid.
    pixel_spacing
        (row spacing, column spacing) in mm, as in PixelSpacing.
    slice_spacing
        Table increment between slices in mm (measured along the table axis when tilted).
    slice_thickness
        SliceThickness; defaults to ``slice_spacing``.
    orientation
        ``"axial"``, ``"coronal"`` or ``"sagittal"``.
    patient_position
        ``"HFS"``, ``"FFS"``, ``"HFP"`` or ``"FFP"``.
    flip_rows, flip_columns
        Reverse the column (top-bottom) or row (left-right) direction of the images.
    oblique_degrees
        Rotate the image plane by this angle about the (1, 1, 1) axis.
    gantry_tilt_degrees
        Axial only: tilt the image plane about the patient's left-right axis while slices
        advance along the table (the grid becomes sheared).
    center_offset
        Move the centre of the field of view by this LPS vector (mm), e.g. to truncate organs.
    missing_slice, duplicate_slice
        Index (in the ascending grid) of a slice left out of the files, or written twice.
    localizer
        Add a coronal LOCALIZER image to the series.
    shuffle_names
        Name files by a hash rather than by instance number.
    instance_order
        ``"descending"`` (InstanceNumber 1 is the highest slice, as many scanners do) or
        ``"ascending"``.
    pixel_representation
        1 for signed, 0 for unsigned stored values.
    rescale_slope, rescale_intercept
        Stored value -> HU; HU values are quantised to what the slope can represent.
    transfer_syntax
        One of :data:`TRANSFER_SYNTAXES` (a short name) or its UID.
    noise
        Standard deviation of the Gaussian noise in HU (0 for none); varies with the seed
        when ``None``.
    """

    seed: int = 0
    shape: tuple[int, int, int] = (80, 100, 120)
    pixel_spacing: tuple[float, float] = (3.0, 3.2)
    slice_spacing: float = 5.0
    slice_thickness: float | None = None
    orientation: str = "axial"
    patient_position: str = "HFS"
    flip_rows: bool = False
    flip_columns: bool = False
    oblique_degrees: float = 0.0
    gantry_tilt_degrees: float = 0.0
    center_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    missing_slice: int | None = None
    duplicate_slice: int | None = None
    localizer: bool = False
    shuffle_names: bool = False
    instance_order: str = "descending"
    pixel_representation: int = 1
    rescale_slope: float = 1.0
    rescale_intercept: float = -1024.0
    transfer_syntax: str = "explicit"
    noise: float | None = None

    def __post_init__(self) -> None:
        if self.orientation not in ORIENTATIONS:
            raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {self.orientation!r}")
        if self.patient_position not in PATIENT_POSITIONS:
            raise ValueError(
                f"patient_position must be one of {PATIENT_POSITIONS}, "
                f"got {self.patient_position!r}"
            )
        if self.gantry_tilt_degrees and self.orientation != "axial":
            raise ValueError("gantry tilt applies to axial acquisitions only")
        if abs(self.gantry_tilt_degrees) >= 60:
            raise ValueError("gantry tilt must be within +-60 degrees")
        if self.instance_order not in ("ascending", "descending"):
            raise ValueError("instance_order must be 'ascending' or 'descending'")
        if self.pixel_representation not in (0, 1):
            raise ValueError("pixel_representation must be 0 (unsigned) or 1 (signed)")
        if self.rescale_slope <= 0:
            raise ValueError("rescale_slope must be positive")
        if min(self.shape) < 1 or min(self.pixel_spacing) <= 0 or self.slice_spacing <= 0:
            raise ValueError("shape and spacings must be positive")
        if self.transfer_syntax not in TRANSFER_SYNTAXES and self.transfer_syntax not in set(
            TRANSFER_SYNTAXES.values()
        ):
            raise ValueError(
                f"transfer_syntax must be one of {sorted(TRANSFER_SYNTAXES)}, "
                f"got {self.transfer_syntax!r}"
            )
        for name in ("missing_slice", "duplicate_slice"):
            index = getattr(self, name)
            if index is not None and not 0 <= index < self.shape[0]:
                raise ValueError(f"{name}={index} is outside the {self.shape[0]} slices")

    @property
    def transfer_syntax_uid(self) -> UID:
        """The transfer syntax UID the files are written in."""
        if self.transfer_syntax in TRANSFER_SYNTAXES:
            return TRANSFER_SYNTAXES[self.transfer_syntax]
        return UID(self.transfer_syntax)

    def uid(self, kind: str) -> str:
        """A UID unique to these options and ``kind`` (``"study"``, ``"series"``, ...)."""
        entropy = [repr(sorted(asdict(self).items())), kind, "omas-idc-phantom"]
        return str(generate_uid(prefix=_UID_ROOT, entropy_srcs=entropy))


@dataclass(frozen=True)
class StructureTruth:
    """The analytic truth of one phantom structure.

    ``volume_ml`` is ``None`` for the body outline (its volume depends on the field of view
    and on the organs it contains).
    """

    name: str
    label: int
    volume_ml: float | None
    centroid_lps: npt.NDArray[np.float64]
    hu: float


@dataclass(frozen=True, eq=False)
class Phantom:
    """A written phantom series and its ground truth (see the module docstring)."""

    files: tuple[Path, ...]
    options: PhantomOptions
    geometry: VolumeGeometry
    hu: npt.NDArray[np.float64]
    labels: npt.NDArray[np.uint8]
    label_names: dict[int, str]
    structures: tuple[StructureTruth, ...]
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    localizer_file: Path | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def structure(self, name: str) -> StructureTruth:
        """The truth of the structure called ``name``."""
        for s in self.structures:
            if s.name == name:
                return s
        raise KeyError(f"the phantom has no structure {name!r}")

    def save_labels_nifti(self, path: str | Path) -> Path:
        """Write the label map as NIfTI (RAS affine, data in x, y, z order)."""
        import nibabel as nib

        image = nib.Nifti1Image(
            np.ascontiguousarray(self.labels.transpose(2, 1, 0)), self.geometry.ras_affine
        )
        image.set_sform(self.geometry.ras_affine, code=1)
        image.set_qform(self.geometry.ras_affine, code=1)
        nib.save(image, str(path))
        return Path(path)


def _cosines(options: PhantomOptions) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    row, col = (np.array(v, dtype=np.float64) for v in _BASE_COSINES[options.orientation])
    if options.gantry_tilt_degrees:
        t = np.radians(options.gantry_tilt_degrees)
        col = np.array([0.0, np.cos(t), np.sin(t)])
    if options.flip_columns:
        row = -row
    if options.flip_rows:
        col = -col
    if options.oblique_degrees:
        axis = np.ones(3) / np.sqrt(3.0)
        t = np.radians(options.oblique_degrees)
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        rot = np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)
        row, col = rot @ row, rot @ col
    flip = np.array(_POSITION_FLIPS[options.patient_position])
    return row * flip, col * flip


def _grid(options: PhantomOptions) -> VolumeGeometry:
    n, rows, cols = options.shape
    row_dir, col_dir = _cosines(options)
    normal = slice_normal([*row_dir, *col_dir])
    if options.gantry_tilt_degrees:
        # Slices advance along the table (patient z), not along the tilted normal.
        table = np.array([0.0, 0.0, 1.0]) * _POSITION_FLIPS[options.patient_position][2]
        step = table * options.slice_spacing * np.sign(table @ normal)
    else:
        step = normal * options.slice_spacing
    dr, dc = options.pixel_spacing
    center = np.asarray(options.center_offset, dtype=np.float64)
    origin = (
        center - row_dir * dc * (cols - 1) / 2 - col_dir * dr * (rows - 1) / 2 - step * (n - 1) / 2
    )
    positions = origin + np.arange(n)[:, None] * step
    return VolumeGeometry.from_slices(
        [*row_dir, *col_dir], options.pixel_spacing, positions, rows, cols
    )


def _noise_sigma(options: PhantomOptions) -> float:
    if options.noise is not None:
        return float(options.noise)
    return float(np.random.default_rng([options.seed, 7]).uniform(8.0, 20.0))


def render_phantom(
    options: PhantomOptions,
) -> tuple[
    VolumeGeometry, npt.NDArray[np.float64], npt.NDArray[np.uint8], tuple[AnatomyStructure, ...]
]:
    """Render the phantom on its grid without writing files.

    Returns
    -------
    geometry, hu, labels, structures
        The grid, the intended HU (quantised to what the stored values can represent), the
        label map (label ``i + 1`` is ``structures[i]``) and the anatomy.
    """
    geometry = _grid(options)
    structures = phantom_anatomy(options.seed)
    n, rows, cols = options.shape
    sigma = _noise_sigma(options)
    rng = np.random.default_rng([options.seed, 11])
    labels = np.zeros(options.shape, dtype=np.uint8)
    hu = np.full(options.shape, AIR_HU, dtype=np.float64)
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    in_plane = np.stack([cc, rr, np.zeros_like(rr)], axis=-1).astype(np.float64)
    a = geometry.affine
    for k in range(n):
        points = in_plane @ a[:3, :3].T + a[:3, 3] + k * a[:3, 2]
        for label, structure in enumerate(structures, start=1):
            inside = structure.shape.contains(points)
            labels[k][inside] = label
            hu[k][inside] = structure.hu
        if sigma > 0:
            hu[k] += rng.normal(0.0, sigma, size=(rows, cols))
    return geometry, _quantise(hu, options), labels, structures


def _stored_range(options: PhantomOptions) -> tuple[int, int]:
    return (-32768, 32767) if options.pixel_representation else (0, 65535)


def _quantise(hu: npt.NDArray[np.float64], options: PhantomOptions) -> npt.NDArray[np.float64]:
    slope, intercept = options.rescale_slope, options.rescale_intercept
    low, high = _stored_range(options)
    hu_low = max(-1024.0, low * slope + intercept)
    hu_high = min(3071.0, high * slope + intercept)
    stored = np.rint((np.clip(np.rint(hu), hu_low, hu_high) - intercept) / slope)
    stored = np.clip(stored, low, high)
    return stored * slope + intercept


def _base_dataset(options: PhantomOptions, geometry: VolumeGeometry) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = "20260101"
    ds.SeriesDate = "20260101"
    ds.AcquisitionDate = "20260101"
    ds.ContentDate = "20260101"
    ds.StudyTime = "120000"
    ds.SeriesTime = "120100"
    ds.AcquisitionTime = "120100"
    ds.ContentTime = "120100"
    ds.AccessionNumber = f"PH{options.seed:06d}"
    ds.Modality = "CT"
    ds.Manufacturer = "omas-idc phantom"
    ds.ManufacturerModelName = "analytic phantom"
    ds.SoftwareVersions = __version__
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "omas-idc synthetic CT phantom"
    ds.SeriesDescription = f"phantom seed {options.seed} {options.orientation}"
    ds.PatientName = f"Phantom^Seed{options.seed}"
    ds.PatientID = f"PHANTOM-{options.seed}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.PatientAge = "050Y"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = options.slice_thickness or options.slice_spacing
    ds.KVP = 120
    ds.GantryDetectorTilt = options.gantry_tilt_degrees
    ds.PatientPosition = options.patient_position
    ds.StudyInstanceUID = options.uid("study")
    ds.SeriesInstanceUID = options.uid("series")
    ds.StudyID = f"{options.seed % 10**8}"
    ds.SeriesNumber = 2
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = options.uid("frame-of-reference")
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = [round(float(v), 10) for v in geometry.orientation]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = geometry.shape[1]
    ds.Columns = geometry.shape[2]
    ds.PixelSpacing = [float(v) for v in geometry.pixel_spacing]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = options.pixel_representation
    ds.RescaleIntercept = options.rescale_intercept
    ds.RescaleSlope = options.rescale_slope
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    return ds


def _ds_number(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _write_image(
    base: Dataset,
    path: Path,
    options: PhantomOptions,
    stored: npt.NDArray[np.int64],
    position: Sequence[float],
    instance_number: int,
    sop_instance_uid: str,
    orientation: Sequence[float] | None = None,
    image_type: Sequence[str] | None = None,
) -> None:
    ds = Dataset()
    ds.update(base)
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = [_ds_number(float(v)) for v in position]
    if orientation is not None:
        ds.ImageOrientationPatient = [round(float(v), 10) for v in orientation]
    if image_type is not None:
        ds.ImageType = list(image_type)
    ds.Rows, ds.Columns = stored.shape
    normal = slice_normal([float(v) for v in ds.ImageOrientationPatient])
    ds.SliceLocation = _ds_number(float(np.asarray(position, dtype=np.float64) @ normal))
    dtype = np.int16 if options.pixel_representation else np.uint16
    pixels = stored.astype(dtype)
    ds.SmallestImagePixelValue = int(pixels.min())
    ds.LargestImagePixelValue = int(pixels.max())
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    ds.file_meta.ImplementationClassUID = UID(_UID_ROOT + "1")
    ds.file_meta.ImplementationVersionName = f"OMAS_IDC_{__version__}"[:16]
    ts = options.transfer_syntax_uid
    if ts.is_compressed:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelData = pixels.tobytes()
        ds.compress(ts, pixels, generate_instance_uid=False)
    else:
        ds.file_meta.TransferSyntaxUID = ts
        ds.PixelData = pixels.tobytes()
        ds["PixelData"].VR = "OW"
    ds.save_as(path, enforce_file_format=True)


def make_phantom(out_dir: str | Path, options: PhantomOptions | None = None) -> Phantom:
    """Write the phantom series described by ``options`` into ``out_dir``.

    Parameters
    ----------
    out_dir
        Folder for the DICOM files (created if needed; existing files are left alone).
    options
        Acquisition and encoding options; the defaults give a 120x100x80 axial series.

    Returns
    -------
    Phantom
        The files and the ground truth.
    """
    options = options or PhantomOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    geometry, hu, labels, structures = render_phantom(options)
    base = _base_dataset(options, geometry)
    stored = np.rint((hu - options.rescale_intercept) / options.rescale_slope).astype(np.int64)

    n = options.shape[0]
    order = list(range(n))
    if options.missing_slice is not None:
        order.remove(options.missing_slice)
    if options.duplicate_slice is not None:
        order.insert(order.index(options.duplicate_slice) + 1, options.duplicate_slice)
    if options.instance_order == "descending":
        order.reverse()
    files: list[Path] = []
    for instance, k in enumerate(order, start=1):
        sop_uid = options.uid(f"image-{instance}")
        name = (
            hashlib.sha1(sop_uid.encode()).hexdigest()[:16] + ".dcm"
            if options.shuffle_names
            else f"CT{instance:04d}.dcm"
        )
        path = out / name
        _write_image(base, path, options, stored[k], geometry.slice_positions[k], instance, sop_uid)
        files.append(path)

    localizer_file = None
    if options.localizer:
        localizer_file = _write_localizer(out, options, base, geometry, len(order) + 1)
        files.append(localizer_file)

    volumes = {s.name: s.volume_ml for s in structures}
    truths = tuple(
        StructureTruth(
            name=s.name,
            label=label,
            volume_ml=None if s.name == "body" else volumes[s.name],
            centroid_lps=s.centroid,
            hu=float(s.hu),
        )
        for label, s in enumerate(structures, start=1)
    )
    return Phantom(
        files=tuple(files),
        options=options,
        geometry=geometry,
        hu=hu,
        labels=labels,
        label_names={t.label: t.name for t in truths},
        structures=truths,
        series_instance_uid=str(base.SeriesInstanceUID),
        study_instance_uid=str(base.StudyInstanceUID),
        frame_of_reference_uid=str(base.FrameOfReferenceUID),
        localizer_file=localizer_file,
    )


def _write_localizer(
    out: Path, options: PhantomOptions, base: Dataset, geometry: VolumeGeometry, instance: int
) -> Path:
    """A coronal scout through the middle of the volume, in the same series."""
    size, spacing = 64, 8.0
    row_dir = np.array([1.0, 0.0, 0.0])
    col_dir = np.array([0.0, 0.0, -1.0])
    center = geometry.voxel_to_lps(np.array(geometry.shape, dtype=np.float64) / 2 - 0.5)
    origin = center - (row_dir + col_dir) * spacing * (size - 1) / 2
    rr, cc = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    points = origin + cc[..., None] * spacing * row_dir + rr[..., None] * spacing * col_dir
    hu = np.full((size, size), AIR_HU)
    for structure in phantom_anatomy(options.seed):
        hu[structure.shape.contains(points)] = structure.hu
    quantised = _quantise(hu, options)
    stored = np.rint((quantised - options.rescale_intercept) / options.rescale_slope)
    localizer = Dataset()
    localizer.update(base)
    localizer.PixelSpacing = [spacing, spacing]
    del localizer.RescaleType  # PS3.3 C.8.2.1: not "HU" on an ORIGINAL LOCALIZER image
    path = out / ("scout.dcm" if not options.shuffle_names else "0000scout.dcm")
    _write_image(
        localizer,
        path,
        options,
        stored.astype(np.int64),
        origin,
        instance,
        options.uid("localizer"),
        orientation=[*row_dir, *col_dir],
        image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"],
    )
    return path

"""Training cases: images and partial labels from NIfTI, DICOM (CT + SEG) or phantoms.

Every case is brought into the array the engine feeds the network at inference: reoriented to
RAS-canonical (S, A, R) exactly as :class:`~omas_idc.engine.preprocessing.CanonicalOrientation`
does, permuted by the plans' ``transpose_forward``, cropped to its non-zero box, CT-normalised
and resampled to the target spacing with nnU-Net's resampling (cubic for data; order 1 per
label for segmentations, as nnU-Net's ``resize_segmentation``).

Labels are renumbered into the model's labels (1..n in the order of the model's structures);
each case carries which model labels its dataset annotates and which it declares absent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from omas_idc.engine.modelfolder import IntensityProperties, ResamplingSpec
from omas_idc.engine.preprocessing import CanonicalOrientation, ct_normalize, nonzero_bbox
from omas_idc.engine.resampling import compute_new_shape, resample
from omas_idc.errors import ConfigurationError, QAError, TrainingError
from omas_idc.geometry import VolumeGeometry
from omas_idc.train.config import DatasetConfig

__all__ = [
    "RawCase",
    "SourceCase",
    "TrainingCase",
    "load_dataset",
    "phantom_cases",
    "prepare_case",
    "to_raw_case",
]

logger = logging.getLogger(__name__)

#: At most this many voxel positions per class are kept for foreground oversampling.
MAX_CLASS_LOCATIONS = 10_000


@dataclass(frozen=True, eq=False)
class SourceCase:
    """A case on its source grid, labels already in model label numbers.

    Attributes
    ----------
    name
        Case identifier (for logs).
    dataset
        Name of its dataset.
    hu
        HU, ``[z, y, x]`` of the source grid.
    geometry
        The source grid.
    labels
        Model label numbers on the same grid (0 where no annotated structure is).
    annotated, absent
        Model label numbers the dataset annotates, and declares absent.
    """

    name: str
    dataset: str
    hu: npt.NDArray[np.floating]
    geometry: VolumeGeometry
    labels: npt.NDArray[np.uint8]
    annotated: frozenset[int]
    absent: frozenset[int] = frozenset()


@dataclass(frozen=True, eq=False)
class RawCase:
    """A case in the network's axis order, cropped, before normalisation and resampling."""

    name: str
    dataset: str
    image: npt.NDArray[np.float32]
    labels: npt.NDArray[np.uint8]
    spacing: tuple[float, float, float]
    annotated: frozenset[int]
    absent: frozenset[int]


@dataclass(frozen=True, eq=False)
class TrainingCase:
    """A preprocessed case: normalised data at the target spacing, labels and class positions.

    Attributes
    ----------
    data
        float32 ``(1, z, y, x)`` tensor.
    labels
        uint8 ``(z, y, x)`` tensor of model label numbers.
    annotated, absent
        Boolean masks over the model's classes (index 0, background, is always annotated).
    class_locations
        Label -> ``(n, 3)`` voxel indices of that label (subsampled), for oversampling.
    """

    name: str
    dataset: str
    data: torch.Tensor
    labels: torch.Tensor
    annotated: npt.NDArray[np.bool_]
    absent: npt.NDArray[np.bool_]
    class_locations: Mapping[int, npt.NDArray[np.int64]]


def to_raw_case(case: SourceCase, transpose_forward: Sequence[int] = (0, 1, 2)) -> RawCase:
    """Reorient to canonical (S, A, R), transpose, and crop to the non-zero box of the HU.

    Raises
    ------
    TrainingError
        If the labels do not lie on the image grid.
    """
    if case.labels.shape != case.hu.shape:
        raise TrainingError(
            f"case {case.name}: labels {case.labels.shape} and image {case.hu.shape} differ in "
            "shape; resample the labels onto the image grid first"
        )
    orientation = CanonicalOrientation.of(case.geometry)
    tf = tuple(int(v) for v in transpose_forward)
    image = orientation.to_canonical(torch.from_numpy(np.asarray(case.hu, dtype=np.float32)))
    labels = orientation.to_canonical(torch.from_numpy(np.ascontiguousarray(case.labels)))
    image, labels = image.permute(tf), labels.permute(tf)
    box = nonzero_bbox(image)
    spacing = tuple(orientation.spacing[i] for i in tf)
    return RawCase(
        name=case.name,
        dataset=case.dataset,
        image=np.ascontiguousarray(image[box].numpy()),
        labels=np.ascontiguousarray(labels[box].numpy()),
        spacing=(spacing[0], spacing[1], spacing[2]),
        annotated=case.annotated,
        absent=case.absent,
    )


def _resample_labels(
    labels: torch.Tensor,
    shape: tuple[int, ...],
    spacing: Sequence[float],
    target: Sequence[float],
) -> torch.Tensor:
    """nnU-Net's ``resize_segmentation`` (order 1 per label, >= 0.5 wins, later labels last)."""
    if tuple(labels.shape) == tuple(shape):
        return labels
    out = torch.zeros(shape, dtype=torch.uint8)
    spec = ResamplingSpec(order=1, order_z=0)
    for value in torch.unique(labels).tolist():
        if value == 0:
            continue
        mask = (labels == value).float()[None]
        resized = resample(mask, shape, spacing, target, spec, clip=False)[0]
        out[resized >= 0.5] = int(value)
    return out


def _locations(labels: torch.Tensor, rng: np.random.Generator) -> dict[int, npt.NDArray[np.int64]]:
    out: dict[int, npt.NDArray[np.int64]] = {}
    array = labels.numpy()
    for value in np.unique(array):
        if value == 0:
            continue
        where = np.argwhere(array == value).astype(np.int64)
        if len(where) > MAX_CLASS_LOCATIONS:
            where = where[np.sort(rng.choice(len(where), MAX_CLASS_LOCATIONS, replace=False))]
        out[int(value)] = where
    return out


def prepare_case(
    raw: RawCase,
    intensity: IntensityProperties,
    spacing: Sequence[float],
    num_classes: int,
) -> TrainingCase:
    """Normalise, resample to ``spacing`` and index the classes of one case."""
    image = torch.from_numpy(raw.image).float()
    normalized = ct_normalize(image, intensity)
    shape = compute_new_shape(raw.image.shape, raw.spacing, spacing)
    data = resample(normalized[None], shape, raw.spacing, spacing, ResamplingSpec(order=3))
    labels = _resample_labels(torch.from_numpy(raw.labels), shape, raw.spacing, spacing)
    annotated = np.zeros(num_classes, dtype=bool)
    annotated[0] = True
    annotated[sorted(raw.annotated)] = True
    absent = np.zeros(num_classes, dtype=bool)
    absent[sorted(raw.absent)] = True
    rng = np.random.default_rng(1234)
    return TrainingCase(
        name=raw.name,
        dataset=raw.dataset,
        data=data.float().contiguous(),
        labels=labels.contiguous(),
        annotated=annotated,
        absent=absent,
        class_locations=_locations(labels, rng),
    )


# -- loaders ----------------------------------------------------------------------------------


def _renumber(
    labels: npt.NDArray[np.integer],
    mapping: Mapping[int, str],
    model_labels: Sequence[str],
    wanted: Sequence[str],
    where: str,
) -> npt.NDArray[np.uint8]:
    index = {name: i + 1 for i, name in enumerate(model_labels)}
    out = np.zeros(labels.shape, dtype=np.uint8)
    for value, name in mapping.items():
        if name not in wanted:
            continue
        if name not in index:
            raise ConfigurationError(f"{where}: structure {name!r} is not one of the model labels")
        out[labels == value] = index[name]
    return out


def _check_structures(names: Sequence[str], where: str) -> None:
    from omas_idc.catalog import load_catalog

    catalog = load_catalog()
    for name in names:
        catalog.by_name(name)  # raises CatalogError with a "did you mean"
    logger.debug("%s: structures %s are in the catalog", where, list(names))


def phantom_cases(dataset: DatasetConfig, model_labels: Sequence[str]) -> list[SourceCase]:
    """Render the dataset's phantoms (axial HFS, ``phantom_spacing`` mm, ``phantom_shape``)."""
    from omas_idc.phantom import PhantomOptions, render_phantom

    index = {name: i + 1 for i, name in enumerate(model_labels)}
    cases = []
    for seed in dataset.phantom_seeds:
        options = PhantomOptions(
            seed=seed,
            shape=dataset.phantom_shape,
            pixel_spacing=(dataset.phantom_spacing, dataset.phantom_spacing),
            slice_spacing=dataset.phantom_spacing,
        )
        geometry, hu, labels, structures = render_phantom(options)
        mapping = {i + 1: s.name for i, s in enumerate(structures)}
        cases.append(
            SourceCase(
                name=f"{dataset.name}_seed{seed}",
                dataset=dataset.name,
                hu=hu.astype(np.float32),
                geometry=geometry,
                labels=_renumber(labels, mapping, model_labels, dataset.annotated, dataset.name),
                annotated=frozenset(index[n] for n in dataset.annotated),
                absent=frozenset(index[n] for n in dataset.absent if n in index),
            )
        )
    return cases


def _geometry_from_affine(affine: npt.NDArray[np.float64], shape: Sequence[int]) -> VolumeGeometry:
    column_step, row_step, slice_step = affine[:3, 0], affine[:3, 1], affine[:3, 2]
    col_spacing, row_spacing = float(np.linalg.norm(column_step)), float(np.linalg.norm(row_step))
    orientation = [*(column_step / col_spacing), *(row_step / row_spacing)]
    positions = affine[:3, 3] + np.arange(shape[0])[:, None] * slice_step
    return VolumeGeometry.from_slices(
        orientation, (row_spacing, col_spacing), positions, shape[1], shape[2]
    )


def nifti_cases(dataset: DatasetConfig, model_labels: Sequence[str]) -> list[SourceCase]:
    """Cases of an nnU-Net raw layout: ``images/{case}_0000.nii.gz``, ``labels/{case}.nii.gz``."""
    from omas_idc.nifti import read_nifti

    assert dataset.images is not None
    assert dataset.labels is not None
    index = {name: i + 1 for i, name in enumerate(model_labels)}
    images = sorted(dataset.images.glob("*_0000.nii*"))
    if not images:
        raise ConfigurationError(
            f"dataset {dataset.name!r}: no *_0000.nii(.gz) in {dataset.images}"
        )
    cases = []
    for image_path in images:
        case = image_path.name.split("_0000.nii")[0]
        candidates = sorted(dataset.labels.glob(f"{case}.nii*"))
        if not candidates:
            raise ConfigurationError(f"dataset {dataset.name!r}: no label file for case {case}")
        hu, affine = read_nifti(image_path)
        labels, label_affine = read_nifti(candidates[0])
        if labels.shape != hu.shape or float(np.abs(label_affine - affine).max()) > 1e-3:
            raise TrainingError(
                f"{candidates[0]} does not lie on the grid of {image_path}; resample it first"
            )
        cases.append(
            SourceCase(
                name=case,
                dataset=dataset.name,
                hu=np.asarray(hu, dtype=np.float32),
                geometry=_geometry_from_affine(affine, hu.shape),
                labels=_renumber(
                    np.asarray(labels),
                    dataset.label_values,
                    model_labels,
                    dataset.annotated,
                    dataset.name,
                ),
                annotated=frozenset(index[n] for n in dataset.annotated),
                absent=frozenset(index[n] for n in dataset.absent if n in index),
            )
        )
    return cases


def dicom_cases(dataset: DatasetConfig, model_labels: Sequence[str]) -> list[SourceCase]:
    """CT series (one folder each) and the DICOM SEGs that reference them.

    SEG segments are matched to catalog structures by their type, type modifier and region
    codes (:func:`omas_idc.encode.segread.segment_references`), never by their label text.
    """
    import highdicom as hd

    from omas_idc.catalog import load_catalog
    from omas_idc.encode.segread import read_seg, segment_references
    from omas_idc.read import read_series

    assert dataset.images is not None
    assert dataset.labels is not None
    catalog = load_catalog()
    segs: dict[str, list[hd.seg.Segmentation]] = {}
    for path in sorted(p for p in dataset.labels.rglob("*") if p.is_file()):
        try:
            seg = read_seg(path)
        except QAError as err:
            if err.reason == "not-a-seg":
                continue  # images or reports beside the SEGs
            raise TrainingError(
                f"dataset {dataset.name}: {err.message}", reason=err.reason
            ) from err
        for ref in seg.get("ReferencedSeriesSequence", []):
            # read_seg gives highdicom's Segmentation (segread), typed as its Dataset base.
            segs.setdefault(str(ref.SeriesInstanceUID), []).append(seg)  # type: ignore[arg-type]
    wanted = dataset.annotated or tuple(model_labels)
    index = {name: i + 1 for i, name in enumerate(model_labels)}
    cases = []
    for folder in sorted(p for p in dataset.images.iterdir() if p.is_dir()):
        volume = read_series(folder)
        series_segs = segs.get(volume.series_instance_uid)
        if not series_segs:
            logger.warning("dataset %s: no SEG references series %s", dataset.name, folder)
            continue
        uids = [ref.sop_instance_uid for ref in volume.source_refs]
        labels = np.zeros(volume.shape, dtype=np.uint8)
        found = segment_references(series_segs, catalog, volume.series_instance_uid)
        annotated = set()
        for name, (seg, number) in found.items():
            if name not in wanted or name not in index:
                continue
            pixels = np.asarray(
                seg.get_pixels_by_source_instance(
                    source_sop_instance_uids=uids,
                    combine_segments=seg.SegmentationType == "LABELMAP",
                    skip_overlap_checks=True,
                )
            )
            mask = pixels == number if pixels.ndim == 3 else pixels[..., number - 1] > 0
            labels[mask] = index[name]
            annotated.add(index[name])
        if dataset.structures:
            annotated = {index[n] for n in dataset.structures}
        cases.append(
            SourceCase(
                name=folder.name,
                dataset=dataset.name,
                hu=volume.hu.astype(np.float32),
                geometry=volume.geometry,
                labels=labels,
                annotated=frozenset(annotated),
                absent=frozenset(index[n] for n in dataset.absent if n in index),
            )
        )
    if not cases:
        raise ConfigurationError(f"dataset {dataset.name!r}: no CT series with a SEG found")
    return cases


def load_dataset(dataset: DatasetConfig, model_labels: Sequence[str]) -> list[SourceCase]:
    """The cases of one dataset, labels renumbered into ``model_labels`` (catalog names)."""
    _check_structures([*dataset.annotated, *dataset.absent], dataset.name)
    missing = [n for n in dataset.annotated if n not in model_labels]
    if missing:
        raise ConfigurationError(
            f"dataset {dataset.name!r} annotates {missing}, which the model's labels lack"
        )
    if dataset.format == "phantom":
        cases = phantom_cases(dataset, model_labels)
    elif dataset.format == "nifti":
        cases = nifti_cases(dataset, model_labels)
    else:
        cases = dicom_cases(dataset, model_labels)
    logger.info("dataset %s: %d cases", dataset.name, len(cases))
    return cases


def source_cases_summary(cases: Sequence[SourceCase]) -> str:
    """One line per dataset: case count and annotated labels (for logs and the CLI)."""
    by_dataset: dict[str, list[SourceCase]] = {}
    for case in cases:
        by_dataset.setdefault(case.dataset, []).append(case)
    return "; ".join(
        f"{name}: {len(group)} cases, labels {sorted(group[0].annotated)}"
        for name, group in by_dataset.items()
    )


def dataset_paths(dataset: DatasetConfig) -> list[Path]:
    """The folders a dataset reads (for error messages)."""
    return [p for p in (dataset.images, dataset.labels) if p is not None]

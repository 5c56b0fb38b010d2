"""Helpers of the release tests: label NIfTIs in other conventions, tables, validators."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

from omas_idc.catalog.model import Catalog, Code
from omas_idc.encode.segread import segment_references
from omas_idc.geometry import lps_to_ras
from omas_idc.phantom import Phantom
from omas_idc.testing import validators
from omas_idc.volume import CTVolume

#: Small phantoms: 12 slices of 40 x 48 voxels (10 mm pixels, 35 mm slices) cover the trunk.
GRID = {"shape": (12, 40, 48), "pixel_spacing": (10.0, 10.0), "slice_spacing": 35.0}

#: Dataset A (manual): abdominal organs, with its own label numbers; vertebrae_L1 is absent
#: from the phantom's field of view at this grid (annotated but absent).
ABDOMEN = {"liver": 1, "spleen": 2, "kidney_right": 3, "kidney_left": 4, "vertebrae_L1": 5}
#: Dataset B (semi-automatic): thoracic structures; vertebrae_T12 is absent.
THORAX = {"heart": 7, "aorta": 3, "lung_upper_lobe_left": 1, "vertebrae_T12": 9}

#: The annotation statuses as the SR writes them (their code meanings).
PRESENT = "Annotated and present"
ABSENT = "Annotated but absent"
NOT_ANNOTATED = "Not annotated"


def relabel(phantom: Phantom, table: Mapping[str, int]) -> np.ndarray:
    """The phantom's truth with the dataset's label numbers (structures not in it are 0)."""
    value_of = {name: value for value, name in phantom.label_names.items()}
    out = np.zeros(phantom.labels.shape, dtype=np.uint8)
    for name, label in table.items():
        out[phantom.labels == value_of[name]] = label
    return out


@dataclass(frozen=True)
class Convention:
    """How a dataset stored a label map made from a DICOM series."""

    name: str
    #: Crop in array order (z, y, x) before anything else, or None.
    crop: tuple[slice, slice, slice] | None = None
    #: Order of the (x, y, z) axes in the file.
    axes: tuple[int, int, int] = (0, 1, 2)
    #: Flips of the file's axes (after permutation).
    flips: tuple[bool, bool, bool] = (False, False, False)
    #: Reorient to the closest canonical RAS+ storage with nibabel (as TotalSegmentator does).
    canonical: bool = False


def save_in_convention(
    path: Path, array_zyx: np.ndarray, lps_affine: np.ndarray, convention: Convention
) -> Path:
    """Write ``array_zyx`` (on the grid of ``lps_affine``) as NIfTI in ``convention``."""
    affine = np.asarray(lps_affine, dtype=np.float64).copy()
    data = array_zyx
    if convention.crop is not None:
        start = [s.start or 0 for s in convention.crop]
        affine[:3, 3] = affine[:3, :3] @ np.array(start[::-1], dtype=float) + affine[:3, 3]
        data = data[convention.crop]
    xyz = data.transpose(2, 1, 0).transpose(convention.axes)
    affine[:3, :3] = affine[:3, list(convention.axes)]
    for axis, flip in enumerate(convention.flips):
        if flip:
            affine[:3, 3] += affine[:3, axis] * (xyz.shape[axis] - 1)
            affine[:3, axis] *= -1
            xyz = np.flip(xyz, axis=axis)
    image = nib.Nifti1Image(np.ascontiguousarray(xyz), lps_to_ras(affine))
    if convention.canonical:
        image = nib.as_closest_canonical(image)
    nib.save(image, path)
    return path


def write_tables(folder: Path, datasets: Mapping[str, tuple[str, Mapping[str, int]]]) -> Path:
    """datasets.toml and one CSV per dataset: name -> (annotation type, structure -> label)."""
    folder.mkdir(parents=True, exist_ok=True)
    sections = []
    for name, (kind, table) in datasets.items():
        lines = [f"[datasets.{name}]", 'version = "2.1"', f'annotation_type = "{kind}"']
        if kind == "MANUAL":
            lines.append('annotator = "Doe^Jane"')
        else:
            lines += ['algorithm = "MONAI Label"', 'algorithm_version = "0.8.1"']
        lines += ['licence = "CC BY 4.0"', f'citation = "{name} et al. 2024"']
        sections.append("\n".join(lines))
        rows = "".join(
            f"{label},{structure},{structure.upper()}\n" for structure, label in table.items()
        )
        (folder / f"{name}.csv").write_text("label,structure,source_name\n" + rows)
    (folder / "datasets.toml").write_text("\n\n".join(sections) + "\n")
    return folder


def write_manifest(path: Path, rows: Sequence[Mapping[str, str]]) -> Path:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = [",".join(columns)] + [",".join(row.get(c, "") for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def seg_label_names(path: Path, volume: CTVolume, catalog: Catalog) -> np.ndarray:
    """A SEG read back with highdicom as an array of structure names on the volume's grid."""
    seg = hd.seg.segread(path)
    uids = [ref.sop_instance_uid for ref in volume.source_refs]
    numbers = np.asarray(
        seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids, combine_segments=True, skip_overlap_checks=True
        )
    )
    names = np.full(numbers.shape, "", dtype=object)
    for name, (_, number) in segment_references([seg], catalog).items():
        names[numbers == number] = name
    return names


def truth_names(phantom: Phantom, structures: Sequence[str]) -> np.ndarray:
    names = np.full(phantom.labels.shape, "", dtype=object)
    for value, name in phantom.label_names.items():
        if name in structures:
            names[phantom.labels == value] = name
    return names


def dciodvfy_errors(path: Path) -> list[str]:
    return validators.dciodvfy_errors(path)


def pixelmed_errors(path: Path) -> list[str]:
    errors = validators.pixelmed_errors(path)
    if errors is None:
        pytest.skip("PixelMed (Debian libpixelmed-java) is not installed; .ci/run installs it")
    return errors


def sr_statuses(path: Path, catalog: Catalog) -> dict[str, str]:
    """Structure name -> status meaning, from the SR's Qualitative Evaluations container."""
    sr = pydicom.dcmread(path)
    containers = [
        item
        for item in sr.ContentSequence
        if item.ValueType == "CONTAINER" and item.ConceptNameCodeSequence[0].CodeValue == "C0034375"
    ]
    assert len(containers) == 1
    statuses = {}
    for item in containers[0].ContentSequence:
        type_code = item.ConceptNameCodeSequence[0]
        modifier = region = region_modifier = None
        for child in item.get("ContentSequence", []):
            name = child.ConceptNameCodeSequence[0].CodeValue
            if name == "272741003":  # Laterality
                modifier = child.ConceptCodeSequence[0].CodeValue
            elif name == "363698007":  # Finding Site
                region = child.ConceptCodeSequence[0].CodeValue
                for grandchild in child.get("ContentSequence", []):
                    region_modifier = grandchild.ConceptCodeSequence[0].CodeValue
        structure = catalog.by_codes(
            Code(type_code.CodeValue, type_code.CodingSchemeDesignator, type_code.CodeMeaning),
            modifier,
            region=region,
            region_modifier=region_modifier,
        )
        assert structure.name not in statuses
        statuses[structure.name] = str(item.ConceptCodeSequence[0].CodeMeaning)
    return statuses


def sr_segment_groups(path: Path) -> dict[str, tuple[str, int, str]]:
    """Tracking identifier -> (SEG SOP instance, segment number, status) of TID 1411 groups."""
    sr = hd.sr.srread(path)
    groups = sr.content.get_volumetric_roi_measurement_groups()
    found = {}
    for group in groups:
        segment = group.referenced_segment
        assert segment is not None
        status = [
            str(e.value.meaning)
            for e in group.get_qualitative_evaluations()
            if e.name.value == "AN0001"
        ]
        found[str(group.tracking_identifier)] = (
            str(segment.referenced_sop_instance_uid),
            int(segment.referenced_segment_numbers[0]),
            status[0],
        )
    return found

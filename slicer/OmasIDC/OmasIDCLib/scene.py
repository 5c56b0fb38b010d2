"""MRML nodes from and to omas-idc's files (needs ``slicer``; slicer-core without Qt is enough).

- :func:`load_series`: a DICOM CT series as a scalar volume node, read by Slicer's own DICOM
  reader (ITK) from the files omas-idc's reader keeps (localizers and other series left out);
- :func:`series_folder_for_volume`: the DICOM files behind a volume node;
- :func:`add_segmentation`: omas-idc's label maps as one segmentation node, each label put
  onto the volume node's grid voxel for voxel (``omas_idc.gridmatch``: a signed permutation
  and an integer offset, never resampling), segments named, coloured and coded from the
  catalog;
- :func:`add_qa_table`: the QA table (``qa.parquet``) as a table node.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import vtk

import slicer
from OmasIDCLib.terminology import CONTEXT_NAME, terminology_context, terminology_entry

__all__ = [
    "SERIES_FOLDER_ATTRIBUTE",
    "SceneLogics",
    "add_qa_table",
    "add_segmentation",
    "core_logics",
    "grid_of",
    "load_series",
    "load_terminology",
    "series_folder_for_volume",
]

#: Attribute of a volume node loaded by this module: the folder of its DICOM series.
SERIES_FOLDER_ATTRIBUTE = "OmasIDC.SeriesFolder"
#: Attribute of a volume node loaded by this module: its SeriesInstanceUID.
SERIES_UID_ATTRIBUTE = "OmasIDC.SeriesInstanceUID"

#: LPS <-> RAS: omas-idc's affines are LPS (DICOM), Slicer's IJK-to-RAS matrices RAS.
_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class SceneLogics:
    """The MRML scene and the module logics the OmasIDC Logic uses."""

    scene: Any
    volumes: Any
    segmentations: Any
    terminologies: Any | None
    app: Any = None  # slicer-core: the application logic, kept alive with the scene


def core_logics(scene: Any | None = None) -> SceneLogics:
    """The scene and logics: Slicer's own inside Slicer, new ones with slicer-core alone."""
    modules = getattr(slicer, "modules", None)
    if scene is None and hasattr(slicer, "mrmlScene") and modules is not None:
        return SceneLogics(
            slicer.mrmlScene,
            modules.volumes.logic(),
            modules.segmentations.logic(),
            modules.terminologies.logic(),
            slicer.app.applicationLogic(),
        )
    scene = scene if scene is not None else slicer.vtkMRMLScene()
    app = slicer.vtkMRMLApplicationLogic()
    app.SetMRMLScene(scene)
    colors = slicer.vtkSlicerColorLogic()
    colors.SetMRMLApplicationLogic(app)
    colors.SetMRMLScene(scene)
    app.SetColorLogic(colors)
    app.SetModuleLogic("Colors", colors)
    volumes = slicer.vtkSlicerVolumesLogic()
    volumes.SetMRMLScene(scene)
    volumes.SetMRMLApplicationLogic(app)
    segmentations = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentations.SetMRMLScene(scene)
    terminologies = slicer.vtkSlicerTerminologiesModuleLogic()
    return SceneLogics(scene, volumes, segmentations, terminologies, app)


def load_terminology(logics: SceneLogics, catalog: Any, folder: Path) -> str | None:
    """Write the catalog's terminology context into ``folder`` and load it; its name.

    ``None`` where no terminology logic is available.
    """
    if logics.terminologies is None:
        return None
    path = Path(folder) / "SegmentationCategoryTypeModifier-omas-idc.term.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(terminology_context(catalog.structures), indent=1), "utf-8")
    name = logics.terminologies.LoadTerminologyFromFile(str(path))
    return str(name) if name else None


def _vtk_matrix(array: np.ndarray) -> Any:
    matrix = vtk.vtkMatrix4x4()
    for i in range(4):
        for j in range(4):
            matrix.SetElement(i, j, float(array[i, j]))
    return matrix


def _numpy_matrix(matrix: Any) -> np.ndarray:
    return np.array([[matrix.GetElement(i, j) for j in range(4)] for i in range(4)])


def ijk_to_ras(volume_node: Any) -> np.ndarray:
    """The volume node's IJK-to-RAS matrix as a 4x4 array."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return _numpy_matrix(matrix)


def grid_of(volume_node: Any) -> Any:
    """The volume node's grid as omas-idc's ``VolumeGeometry`` (LPS affine, (k, j, i) shape).

    Slicer's voxel ``(i, j, k)`` is omas-idc's ``(x, y, z)`` and its array is ``[k, j, i]``,
    omas-idc's ``[z, y, x]``, so only the LPS/RAS flip differs.
    """
    from omas_idc.geometry import VolumeGeometry

    affine = _FLIP @ ijk_to_ras(volume_node)
    i, j, k = volume_node.GetImageData().GetDimensions()
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    columns = affine[:3, :3] / spacing
    positions = np.array([affine[:3, 3] + n * affine[:3, 2] for n in range(k)])
    orientation = [*columns[:, 0], *columns[:, 1]]
    return VolumeGeometry.from_slices(
        orientation, (spacing[1], spacing[0]), positions, rows=j, columns=i
    )


def load_series(
    logics: SceneLogics,
    source: Path,
    series_instance_uid: str | None = None,
    name: str | None = None,
) -> Any:
    """A CT series as a scalar volume node, read by Slicer's DICOM reader.

    The files are the ones omas-idc's reader keeps for the series (``read_series_headers``:
    localizers, other series and non-image objects left out), so the volume is the series
    omas-idc segments. Raises omas-idc's read errors for a series it refuses.
    """
    from omas_idc.read import read_series_headers

    headers = read_series_headers(source, series_instance_uid=series_instance_uid)
    files = vtk.vtkStringArray()
    for path in headers.files:
        files.InsertNextValue(str(path))
    label = name or headers.header.series_description or "CT"
    node = logics.volumes.AddArchetypeVolume(str(headers.files[0]), label, 0, files)
    if node is None:
        raise RuntimeError(
            f"Slicer's DICOM reader could not load the series in {source}: check the log "
            "for the reader's message"
        )
    node.SetAttribute(SERIES_FOLDER_ATTRIBUTE, str(source))
    node.SetAttribute(SERIES_UID_ATTRIBUTE, headers.series_instance_uid)
    display = node.GetDisplayNode()
    if display is not None:
        display.SetAutoWindowLevel(0)
        display.SetWindowLevel(400, 40)
    return node


def series_folder_for_volume(volume_node: Any, work_dir: Path) -> tuple[Path, str | None]:
    """The DICOM files of a volume node: the folder and the SeriesInstanceUID, if known.

    A volume this module loaded names its folder; one loaded by Slicer's DICOM module (or the
    IDC browser) names its instances, whose files are linked into ``work_dir/series``.

    Raises
    ------
    ValueError
        For a volume not loaded from DICOM (a NRRD or NIfTI file): omas-idc segments DICOM
        series, whose SEG references the source images.
    """
    folder = volume_node.GetAttribute(SERIES_FOLDER_ATTRIBUTE)
    if folder:
        return Path(folder), volume_node.GetAttribute(SERIES_UID_ATTRIBUTE) or None
    uids = (volume_node.GetAttribute("DICOM.instanceUIDs") or "").split()
    database = getattr(slicer, "dicomDatabase", None)
    if uids and database is not None:
        target = Path(work_dir) / "series"
        target.mkdir(parents=True, exist_ok=True)
        for n, uid in enumerate(uids):
            path = database.fileForInstance(uid)
            if not path:
                raise ValueError(
                    f"instance {uid} of {volume_node.GetName()} is not in Slicer's DICOM "
                    "database any more: import the series again"
                )
            link = target / f"{n:05d}.dcm"
            if not link.exists():
                os.symlink(path, link)
        return target, None
    raise ValueError(
        f"the volume {volume_node.GetName()!r} was not loaded from DICOM: omas-idc segments "
        "DICOM CT series (its SEG references the source images). Load the series with the "
        "DICOM module or the IDC browser, or choose its folder as the input"
    )


def _present_labels(array: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(array) if v != 0]


def add_segmentation(
    logics: SceneLogics,
    volume_node: Any,
    result_dir: Path,
    catalog: Any,
    name: str = "omas-idc",
    context_name: str = CONTEXT_NAME,
) -> Any:
    """omas-idc's label maps (``labels.json`` and its NIfTI files) as a segmentation node.

    Each task's label map is put onto the volume node's grid voxel for voxel (refused where
    that would need resampling); each present label becomes one segment named after its
    catalog structure, with the catalog's colour and DICOM coding (``TerminologyEntry``) and
    tags ``OmasIDC.Structure``, ``OmasIDC.Model``, ``OmasIDC.Task``, ``OmasIDC.Label``.
    """
    from omas_idc.gridmatch import map_onto_grid
    from omas_idc.nifti import read_nifti

    result_dir = Path(result_dir)
    summary = json.loads((result_dir / "labels.json").read_text(encoding="utf-8"))
    grid = grid_of(volume_node)
    node = logics.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    segmentation = node.GetSegmentation()
    for task, info in summary["tasks"].items():
        array, affine = read_nifti(result_dir / info["file"])
        on_grid = map_onto_grid(array, affine, grid)
        present = _present_labels(on_grid)
        # Consecutive values 1..n, so that segment n0 + k is label present[k].
        lookup = np.zeros(int(on_grid.max()) + 1, dtype=np.uint16)
        lookup[present] = np.arange(1, len(present) + 1)
        relabelled = lookup[on_grid]
        labelmap = logics.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"{name} {task}")
        labelmap.SetIJKToRASMatrix(_vtk_matrix(ijk_to_ras(volume_node)))
        slicer.util.updateVolumeFromArray(labelmap, np.ascontiguousarray(relabelled))
        before = segmentation.GetNumberOfSegments()
        if not logics.segmentations.ImportLabelmapToSegmentationNode(labelmap, node):
            raise RuntimeError(f"Slicer could not import the label map of task {task}")
        logics.scene.RemoveNode(labelmap)
        if segmentation.GetNumberOfSegments() - before != len(present):
            raise RuntimeError(
                f"task {task}: {len(present)} labels but "
                f"{segmentation.GetNumberOfSegments() - before} segments were imported"
            )
        for k, label in enumerate(present):
            structure = catalog.by_name(info["labels"][str(label)])
            segment = segmentation.GetNthSegment(before + k)
            segment.SetName(structure.name)
            segment.SetNameAutoGenerated(False)
            segment.SetColor(*(c / 255.0 for c in structure.color_rgb))
            segment.SetColorAutoGenerated(False)
            segment.SetTag(
                segment.GetTerminologyEntryTagName(), terminology_entry(structure, context_name)
            )
            segment.SetTag("OmasIDC.Structure", structure.name)
            segment.SetTag("OmasIDC.Model", str(summary.get("model", "")))
            segment.SetTag("OmasIDC.Task", str(task))
            segment.SetTag("OmasIDC.Label", str(label))
    return node


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "; ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


#: The QA table's columns shown in Slicer, in this order (all columns stay in qa.parquet).
QA_COLUMNS: Sequence[str] = (
    "structure",
    "task",
    "label",
    "status",
    "verdict",
    "reasons",
    "volume_ml",
    "hu_mean",
    "hu_std",
    "components",
    "largest_component_fraction",
    "truncated",
    "truncated_at",
    "laterality",
    "plausible_min_ml",
    "plausible_max_ml",
)


def add_qa_table(logics: SceneLogics, qa_parquet: Path, name: str = "omas-idc QA") -> Any:
    """The QA measurements of ``qa.parquet`` (one row per segment) as a table node."""
    import pyarrow.parquet as pq

    rows = pq.read_table(qa_parquet).to_pylist()
    node = logics.scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = node.GetTable()
    columns = [c for c in QA_COLUMNS if not rows or c in rows[0]]
    for column in columns:
        values = [row.get(column) for row in rows]
        numeric = all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None
        )
        array = vtk.vtkDoubleArray() if numeric and rows else vtk.vtkStringArray()
        array.SetName(column)
        for value in values:
            if isinstance(array, vtk.vtkDoubleArray):
                array.InsertNextValue(float("nan") if value is None else float(value))
            else:
                array.InsertNextValue(_cell(value))
        table.AddColumn(array)
    node.Modified()
    return node


def segment_array(
    logics: SceneLogics, segmentation_node: Any, segment_id: str, reference: Any
) -> Any:
    """One segment as a ``[k, j, i]`` uint8 array on the ``reference`` volume node's grid."""
    labelmap = logics.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__omas_export__")
    try:
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segment_id)
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, ids, labelmap, reference
        ):
            raise RuntimeError(f"Slicer could not export segment {segment_id}")
        return slicer.util.arrayFromVolume(labelmap).copy()
    finally:
        logics.scene.RemoveNode(labelmap)


def segment_tag(segment: Any, name: str) -> str | None:
    """A segment's tag value (``None`` where absent)."""
    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else None

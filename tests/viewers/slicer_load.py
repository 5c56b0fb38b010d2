"""Load DICOM SEGs into slicer-core segmentation nodes, as 3D Slicer does through highdicom.

Runs in the slicer-core venv (``.venv-slicer``: slicer-core, its VTK, highdicom), not in the
test process. Usage: ``python slicer_load.py SEG.dcm [SEG.dcm ...]``; prints a JSON list, one
item per SEG: per segment its name, colour (0..1 RGB as the node holds it), the terminology
codes, and the voxels (z, y, x indices of the SEG's volume) exported back from the node onto
the SEG's grid, with that grid's IJK -> LPS matrix.

slicer-core has no DICOM SEG reader of its own (3D Slicer's is the QuantitativeReporting
extension, dcmqi); highdicom decodes both layouts and the node is filled from its volume, the
colour from Recommended Display CIELab Value, the terminology as Slicer's DICOM SEG plugin
stores it (``category~type~modifier``, each ``scheme^value^meaning``).
"""

from __future__ import annotations

import json
import sys

import highdicom as hd
import numpy as np
import slicer.util as su
import vtk

import slicer


def cielab_to_rgb(value: list[int]) -> tuple[float, float, float]:
    """DICOM's 16-bit CIELab (PS3.3 C.10.7.1.1) -> sRGB 0..1 (D65), as Slicer converts it."""
    lightness = value[0] / 65535 * 100
    a, b = value[1] / 65535 * 255 - 128, value[2] / 65535 * 255 - 128
    fy = (lightness + 16) / 116
    fx, fz = fy + a / 500, fy - b / 200

    def inverse(t: float) -> float:
        return t**3 if t**3 > 0.008856 else (t - 16 / 116) / 7.787

    x, y, z = 0.95047 * inverse(fx), inverse(fy), 1.08883 * inverse(fz)
    linear = (
        3.2406 * x - 1.5372 * y - 0.4986 * z,
        -0.9689 * x + 1.8758 * y + 0.0415 * z,
        0.0557 * x - 0.2040 * y + 1.0570 * z,
    )

    def gamma(c: float) -> float:
        c = 1.055 * c ** (1 / 2.4) - 0.055 if c > 0.0031308 else 12.92 * c
        return min(1.0, max(0.0, c))

    return gamma(linear[0]), gamma(linear[1]), gamma(linear[2])


def code_text(item: object) -> str:
    return f"{item.CodingSchemeDesignator}^{item.CodeValue}^{item.CodeMeaning}"  # type: ignore[attr-defined]


def terminology(description: object) -> str:
    """``category~type~modifier`` as Slicer's terminology entry keeps it."""
    category = code_text(description.SegmentedPropertyCategoryCodeSequence[0])  # type: ignore[attr-defined]
    kind = description.SegmentedPropertyTypeCodeSequence[0]  # type: ignore[attr-defined]
    modifier = ""
    if "SegmentedPropertyTypeModifierCodeSequence" in kind:
        modifier = code_text(kind.SegmentedPropertyTypeModifierCodeSequence[0])
    return f"{category}~{code_text(kind)}~{modifier}"


def load(path: str, scene: object) -> dict[str, object]:
    seg = hd.seg.segread(path)
    numbers = list(seg.segment_numbers)
    volume = seg.get_volume(combine_segments=True, relabel=True)
    array = np.ascontiguousarray(np.asarray(volume.array).astype(np.uint16))
    affine = np.array(volume.affine, dtype=float)
    # highdicom's volume axes (i0, i1, i2) -> VTK's IJK (i2, i1, i0); LPS -> RAS.
    ijk_to_ras = np.eye(4)
    ijk_to_ras[:3, :3] = affine[:3, [2, 1, 0]]
    ijk_to_ras[:3, 3] = affine[:3, 3]
    ijk_to_ras[0:2, :] *= -1
    matrix = vtk.vtkMatrix4x4()
    for i in range(4):
        for j in range(4):
            matrix.SetElement(i, j, ijk_to_ras[i, j])
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "seg")  # type: ignore[attr-defined]
    labelmap.SetIJKToRASMatrix(matrix)
    su.updateVolumeFromArray(labelmap, array)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")  # type: ignore[attr-defined]
    node.CreateDefaultDisplayNodes()
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    if not logic.ImportLabelmapToSegmentationNode(labelmap, node):
        raise RuntimeError(f"slicer-core could not import {path}")
    descriptions = {d.SegmentNumber: d for d in seg.SegmentSequence}
    segmentation = node.GetSegmentation()
    present = sorted(int(v) for v in np.unique(array) if v)
    for index, value in enumerate(present):
        description = descriptions[numbers[value - 1]]
        segment = segmentation.GetNthSegment(index)
        segment.SetName(description.SegmentLabel)
        if "RecommendedDisplayCIELabValue" in description:
            segment.SetColor(*cielab_to_rgb(list(description.RecommendedDisplayCIELabValue)))
        segment.SetTag("TerminologyEntry", terminology(description))
    # Back out of the node onto the SEG's grid: what Slicer holds, voxel for voxel.
    exported = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "exported")  # type: ignore[attr-defined]
    node.SetReferenceImageGeometryParameterFromVolumeNode(labelmap)
    if not logic.ExportAllSegmentsToLabelmapNode(
        node, exported, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY
    ):
        raise RuntimeError(f"slicer-core could not export the segments of {path}")
    back = su.arrayFromVolume(exported)
    segments = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        tag = vtk.mutable("")
        segment.GetTag("TerminologyEntry", tag)
        segments.append(
            {
                "name": segment.GetName(),
                "color": list(segment.GetColor()),
                "terminology": str(tag),
                "voxels": np.argwhere(back == index + 1).tolist(),
            }
        )
    return {"file": path, "ijk_to_lps": affine.tolist(), "segments": segments}


def main() -> None:
    scene = slicer.vtkMRMLScene()
    app = slicer.vtkMRMLApplicationLogic()
    app.SetMRMLScene(scene)
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    json.dump([load(path, scene) for path in sys.argv[1:]], sys.stdout)


if __name__ == "__main__":
    main()

"""An offscreen picture of a slice view: the CT with the segmentation overlay, as a PNG.

Slicer's own slice logic and segmentation displayable manager draw it into an offscreen VTK
render window (EGL with slicer-core, no X server), the way the Red slice view would show it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import vtk

import slicer

__all__ = ["render_slice"]


def render_slice(
    logics: Any,
    volume_node: Any,
    segmentation_node: Any,
    png: Path,
    offset_mm: float | None = None,
    size: int = 512,
    orientation: str = "Axial",
) -> float:
    """Render one slice of ``volume_node`` with ``segmentation_node`` over it into ``png``.

    Parameters
    ----------
    offset_mm
        Slice position along the view's normal (RAS mm); the volume's centre by default.
    orientation
        ``"Axial"``, ``"Coronal"`` or ``"Sagittal"``.

    Returns
    -------
    float
        The slice offset drawn.
    """
    app = logics.app
    if app.GetSliceLogics() is None:
        app.SetSliceLogics(vtk.vtkCollection())
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(size, size)
    window.SetMultiSamples(0)
    renderer = vtk.vtkRenderer()
    window.AddRenderer(renderer)
    renderer.GetActiveCamera().ParallelProjectionOn()
    interactor = vtk.vtkRenderWindowInteractor()
    interactor.SetRenderWindow(window)
    interactor.Initialize()
    factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
    factory.SetMRMLApplicationLogic(app)
    manager = "vtkMRMLSegmentationsDisplayableManager2D"
    if not factory.IsDisplayableManagerRegistered(manager):
        factory.RegisterDisplayableManager(manager)
    group = slicer.vtkMRMLDisplayableManagerGroup()
    group.Initialize(factory, renderer)
    slice_logic = slicer.vtkMRMLSliceLogic()
    slice_logic.SetMRMLApplicationLogic(app)
    app.GetSliceLogics().AddItem(slice_logic)
    slice_logic.SetMRMLScene(logics.scene)
    slice_node = slice_logic.AddSliceNode("Red")
    group.SetMRMLDisplayableNode(slice_node)
    slice_node.SetOrientation(orientation)
    slice_logic.GetSliceCompositeNode().SetBackgroundVolumeID(volume_node.GetID())
    slice_logic.ResizeSliceNode(size, size)
    slice_logic.FitSliceToBackground()
    display = segmentation_node.GetDisplayNode()
    if display is not None:
        display.SetOpacity2DFill(0.5)
        display.SetVisibility(True)
    mapper = vtk.vtkImageMapper()
    mapper.SetColorWindow(255)
    mapper.SetColorLevel(127.5)
    actor = vtk.vtkActor2D()
    actor.SetMapper(mapper)
    actor.GetProperty().SetDisplayLocationToBackground()
    renderer.AddViewProp(actor)
    if offset_mm is None:
        bounds = [0.0] * 6
        volume_node.GetRASBounds(bounds)
        axis = {"Axial": 2, "Coronal": 1, "Sagittal": 0}[orientation]
        offset_mm = (bounds[2 * axis] + bounds[2 * axis + 1]) / 2
    slice_logic.SetSliceOffset(offset_mm)
    slice_logic.SnapSliceOffsetToIJK()
    mapper.SetInputConnection(slice_logic.GetImageDataConnection())
    window.Render()
    window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.ReadFrontBufferOff()
    grab.Update()
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(png))
    writer.SetInputConnection(grab.GetOutputPort())
    writer.Write()
    drawn = float(slice_logic.GetSliceOffset())
    app.GetSliceLogics().RemoveItem(slice_logic)
    return drawn

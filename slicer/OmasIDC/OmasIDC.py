# Slicer runs a module's Test class with unittest (no pytest in Slicer): its assert methods.
# ruff: noqa: PT009, PT027
"""OmasIDC: whole-body CT segmentation with omas-idc inside 3D Slicer.

The module is a thin layer over the installed ``omas_idc`` package: it runs omas-idc's own
commands (fetch, segment, encode, QA) in a subprocess and loads their files as MRML nodes. The
Logic and the Test import no Qt, so they run with slicer-core (Slicer's MRML libraries from
PyPI) as well as inside Slicer; only the Widget needs Slicer's GUI.
"""

from __future__ import annotations

import os
import sys
import tempfile
import unittest
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import slicer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from OmasIDCLib.commands import (
    SPEED_OPTIONS,
    SegmentOptions,
    download_command,
    fetch_commands,
    qa_command,
    segment_command,
)
from OmasIDCLib.jobs import Job, JobFailed, JobState, Step
from OmasIDCLib.scene import (
    SceneLogics,
    add_qa_table,
    add_segmentation,
    core_logics,
    ijk_to_ras,
    load_series,
    load_terminology,
    segment_array,
    segment_tag,
    series_folder_for_volume,
)

try:  # inside Slicer
    from slicer.ScriptedLoadableModule import (
        ScriptedLoadableModule,
        ScriptedLoadableModuleLogic,
        ScriptedLoadableModuleTest,
        ScriptedLoadableModuleWidget,
    )
except ImportError:  # slicer-core: no Qt and no module framework; Logic and Test still work

    class ScriptedLoadableModule:  # type: ignore[no-redef]
        def __init__(self, parent: Any) -> None:
            self.parent = parent

    class ScriptedLoadableModuleWidget:  # type: ignore[no-redef]
        def __init__(self, parent: Any = None) -> None:
            raise RuntimeError("the OmasIDC widget needs 3D Slicer's GUI")

    class ScriptedLoadableModuleLogic:  # type: ignore[no-redef]
        def __init__(self, parent: Any = None) -> None:
            self.parent = parent

    class ScriptedLoadableModuleTest(unittest.TestCase):  # type: ignore[no-redef]
        pass


#
# OmasIDC
#


class OmasIDC(ScriptedLoadableModule):
    """The module's description in Slicer's module list."""

    def __init__(self, parent: Any) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "OmasIDC"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["omas-idc developers"]
        self.parent.helpText = (
            "Whole-body CT segmentation (CADS, TotalSegmentator, your own nnU-Net family) on "
            "CPU or GPU with omas-idc: segments named, coloured and coded (SNOMED CT) from the "
            "omas-idc catalog; optional DICOM SEG + TID 1500 SR + QA table written by "
            "omas-idc's encoder. Inputs: a CT volume loaded from DICOM, a DICOM series folder, "
            "or an IDC SeriesInstanceUID."
        )
        self.parent.acknowledgementText = (
            "Built on omas-idc, nnU-Net, CADS and TotalSegmentator; data from the NCI Imaging "
            "Data Commons."
        )


#
# OmasIDCLogic
#


@dataclass
class OmasIDCRun:
    """One segmentation run: its job, folders and, when finished, its nodes."""

    job: Job
    work_dir: Path
    result_dir: Path
    qa_dir: Path | None
    series_folder: Path
    series_instance_uid: str | None
    options: SegmentOptions
    structures: tuple[str, ...] = ()
    volume_node: Any = None
    segmentation_node: Any = None
    table_node: Any = None
    files: list[Path] = field(default_factory=list)

    def poll(self) -> JobState:
        """The job's state (never blocks)."""
        return self.job.poll()


class OmasIDCLogic(ScriptedLoadableModuleLogic):
    """Choices, runs and results of omas-idc, without any GUI.

    Parameters
    ----------
    scene
        The MRML scene (Slicer's own inside Slicer; a new scene with slicer-core by default).
    python
        The interpreter omas-idc is installed in (this one by default: Slicer's Python).
    work_root
        Folder for the runs' working files (the system's temporary folder by default).
    """

    def __init__(
        self, scene: Any = None, python: str | None = None, work_root: Path | None = None
    ) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.python = python
        self.work_root = Path(work_root or tempfile.gettempdir()) / "omas-idc-slicer"
        self._scene = scene
        self._logics: SceneLogics | None = None
        self._terminology_loaded = False

    # -- scene ---------------------------------------------------------------------------

    @property
    def logics(self) -> SceneLogics:
        """The scene and module logics."""
        if self._logics is None:
            self._logics = core_logics(self._scene)
        return self._logics

    @property
    def scene(self) -> Any:
        """The MRML scene results are added to."""
        return self.logics.scene

    def load_terminology(self) -> str | None:
        """Load the catalog's terminology context into Slicer (once); its name."""
        name = load_terminology(self.logics, self.catalog(), self.work_root / "terminology")
        self._terminology_loaded = True
        return name

    # -- choices -------------------------------------------------------------------------

    @staticmethod
    def model_names() -> list[str]:
        """The built-in models: their names and aliases (``demo``)."""
        from omas_idc.engine.card import builtin_cards

        names: list[str] = []
        for card in builtin_cards().values():
            names.extend([*card.aliases] or [card.name])
        return names

    @staticmethod
    def card(model: str) -> Any:
        """The model card of a built-in name, a family folder or a card file."""
        from omas_idc.engine.card import load_card

        return load_card(model)

    def catalog(self, model: str | None = None) -> Any:
        """The catalog, with the labels of ``model``'s family where it is a user's folder."""
        from omas_idc.catalog import load_catalog

        catalog = load_catalog()
        if model is not None:
            catalog = catalog.with_labels(self.card(model).labels)
        return catalog

    def task_ids(self, model: str) -> list[str]:
        """The tasks of ``model``."""
        return [task.id for task in self.card(model).tasks]

    def structure_names(self, model: str, tasks: list[str] | None = None) -> dict[str, str]:
        """Structure name -> task, for the tasks given (all by default), in label order."""
        card = self.card(model)
        catalog = self.catalog(model)
        names: dict[str, str] = {}
        for task in tasks or [t.id for t in card.tasks]:
            try:
                labels = catalog.labels_for(card.name, task)
            except Exception:  # noqa: BLE001 - a task without label rows lists nothing
                continue
            for structure in labels.values():
                names.setdefault(structure.name, task)
        return names

    def tasks_for_structures(self, model: str, structures: list[str]) -> list[str]:
        """The tasks that segment ``structures`` (each structure from its first task)."""
        names = self.structure_names(model)
        unknown = [s for s in structures if s not in names]
        if unknown:
            raise ValueError(
                f"model {model!r} does not segment {', '.join(unknown)}: choose structures "
                "from its list"
            )
        return list(dict.fromkeys(names[s] for s in structures))

    def variants(self, model: str) -> dict[str, str]:
        """Licence variant -> licence text of ``model``'s weights (default first)."""
        card = self.card(model)
        ordered = [card.default_variant, *(v for v in card.variants if v != card.default_variant)]
        return {v: card.variants[v] for v in ordered if v in card.variants}

    @staticmethod
    def devices() -> list[str]:
        """The compute devices found: ``cuda`` (and ``cuda:N``), ``mps``, and ``cpu``."""
        found = []
        try:
            import torch
        except ImportError:
            return ["cpu"]
        if torch.cuda.is_available():
            count = torch.cuda.device_count()
            found += ["cuda"] + ([f"cuda:{n}" for n in range(count)] if count > 1 else [])
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            found.append("mps")
        return [*found, "cpu"]

    @staticmethod
    def speed_options() -> dict[str, str]:
        """Speed option -> its measured effect."""
        return dict(SPEED_OPTIONS)

    # -- weights ---------------------------------------------------------------------------

    def start_download(
        self,
        model: str,
        variant: str | None = None,
        tasks: tuple[str, ...] = (),
        weights_dir: Path | None = None,
    ) -> Job:
        """Download a model's weights (show :meth:`variants`' licence text first)."""
        work = Path(tempfile.mkdtemp(prefix="download-", dir=self._work_root()))
        command = download_command(model, variant, tasks, weights_dir, self.python)
        return Job([Step(f"downloading {model} weights", command)], work)

    # -- runs ------------------------------------------------------------------------------

    def _work_root(self) -> Path:
        self.work_root.mkdir(parents=True, exist_ok=True)
        return self.work_root

    def start(
        self,
        options: SegmentOptions,
        volume_node: Any = None,
        series_folder: Path | None = None,
        series_instance_uid: str | None = None,
        structures: tuple[str, ...] = (),
        export_dir: Path | None = None,
    ) -> OmasIDCRun:
        """Start a segmentation run in a subprocess; poll it, then call :meth:`finish`.

        Parameters
        ----------
        options
            Model, tasks, device, speed, licence variant, weights folder, DICOM export.
        volume_node, series_folder, series_instance_uid
            The input: a volume loaded from DICOM, a series folder (with the UID where it holds
            several series), or an IDC series (fetched first) given by its UID alone.
        structures
            Keep only these structures' segments (their tasks are run); all by default.
        export_dir
            Where the label maps, SEG, SR and QA table go when ``options.export_seg``; by
            default a folder beside the series folder (``<series>_omas-idc``).
        """
        work = Path(tempfile.mkdtemp(prefix="run-", dir=self._work_root()))
        steps: list[Step] = []
        if volume_node is not None:
            series_folder, uid = series_folder_for_volume(volume_node, work)
            series_instance_uid = series_instance_uid or uid
        elif series_folder is None:
            if not series_instance_uid:
                raise ValueError(
                    "no input: choose a CT volume, a DICOM series folder or an IDC "
                    "SeriesInstanceUID"
                )
            steps += [
                Step(title, argv)
                for title, argv in zip(
                    ("selecting the IDC series", "fetching the IDC series"),
                    fetch_commands(series_instance_uid, work, self.python),
                    strict=True,
                )
            ]
            series_folder = work / "dicom"
        series_folder = Path(series_folder)
        if structures:
            tasks = self.tasks_for_structures(options.model, list(structures))
            options = SegmentOptions(**{**options.__dict__, "tasks": tuple(tasks)})
        if options.export_seg:
            result_dir = Path(export_dir or series_folder.parent / f"{series_folder.name}_omas-idc")
            qa_dir: Path | None = result_dir / "qa"
        else:
            result_dir, qa_dir = work / "labels", None
        command = segment_command(series_folder, result_dir, options, self.python)
        if series_instance_uid:
            command += ["--series-uid", series_instance_uid]
        steps.append(Step(f"segmenting with {options.model}", command))
        if qa_dir is not None:
            folder, out = series_folder, qa_dir

            def qa_argv() -> list[str]:
                segs = sorted(result_dir.glob("seg_*.dcm"))
                return qa_command(folder, segs, out, self.python)

            steps.append(Step("checking the segments (QA, TID 1500 SR)", qa_argv))
        job = Job(steps, work / "logs")
        return OmasIDCRun(
            job,
            work,
            result_dir,
            qa_dir,
            series_folder,
            series_instance_uid,
            options,
            tuple(structures),
            volume_node,
        )

    def finish(self, run: OmasIDCRun, name: str | None = None) -> OmasIDCRun:
        """Load a finished run's files as nodes: the volume (if new), segmentation, QA table.

        Raises
        ------
        JobFailed
            If the run failed (omas-idc's classified message) or was cancelled.
        """
        state = run.job.poll()
        if state.status != "done":
            raise JobFailed(state.message or f"the run is {state.status}", state.error_class)
        if run.volume_node is None:
            run.volume_node = load_series(self.logics, run.series_folder, run.series_instance_uid)
        if not self._terminology_loaded:
            self.load_terminology()
        catalog = self.catalog(run.options.model)
        run.segmentation_node = add_segmentation(
            self.logics,
            run.volume_node,
            run.result_dir,
            catalog,
            name or f"{run.volume_node.GetName()} omas-idc {run.options.model}",
        )
        if run.structures:
            segmentation = run.segmentation_node.GetSegmentation()
            for n in reversed(range(segmentation.GetNumberOfSegments())):
                segment = segmentation.GetNthSegment(n)
                if segment.GetName() not in run.structures:
                    segmentation.RemoveSegment(segmentation.GetNthSegmentID(n))
        run.files = sorted(p for p in run.result_dir.rglob("*") if p.is_file())
        if run.qa_dir is not None and (run.qa_dir / "qa.parquet").is_file():
            run.table_node = add_qa_table(
                self.logics, run.qa_dir / "qa.parquet", f"{run.segmentation_node.GetName()} QA"
            )
        return run

    def run(
        self, options: SegmentOptions, timeout: float | None = None, **inputs: Any
    ) -> OmasIDCRun:
        """Start, wait for and finish a run (scripts and tests; the Widget does not block)."""
        run = self.start(options, **inputs)
        run.job.wait(timeout=timeout)
        return self.finish(run)


#
# OmasIDCWidget
#


class OmasIDCWidget(ScriptedLoadableModuleWidget):
    """The module's panel (Slicer's GUI only; all work is done by :class:`OmasIDCLogic`)."""

    INPUT_KINDS = ("CT volume", "DICOM series folder", "IDC SeriesInstanceUID")

    def __init__(self, parent: Any = None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.logic: OmasIDCLogic | None = None
        self.run: OmasIDCRun | None = None
        self.job: Job | None = None
        self.timer: Any = None

    def setup(self) -> None:
        """Build the panel from Resources/UI/OmasIDC.ui and connect it."""
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        panel = slicer.util.loadUI(self.resourcePath("UI/OmasIDC.ui"))
        self.layout.addWidget(panel)
        self.ui = slicer.util.childWidgetVariables(panel)
        panel.setMRMLScene(slicer.mrmlScene)
        self.timer = qt.QTimer()
        self.timer.setInterval(500)
        self.timer.connect("timeout()", self.onPoll)
        if not self.ensureOmasIdc():
            self.ui.applyButton.enabled = False
            return
        self.logic = OmasIDCLogic()
        self.ui.inputKindComboBox.addItems(list(self.INPUT_KINDS))
        self.ui.inputKindComboBox.connect("currentIndexChanged(int)", self.onInputKind)
        self.ui.modelComboBox.addItems([*self.logic.model_names(), "local family folder"])
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModel)
        self.ui.modelFolderButton.connect("directoryChanged(QString)", self.onModel)
        self.ui.taskListWidget.connect("itemChanged(QListWidgetItem*)", self.onTasks)
        self.ui.structureSearchLineEdit.connect("textChanged(QString)", self.onSearch)
        self.ui.deviceComboBox.addItems(self.logic.devices())
        for speed, effect in self.logic.speed_options().items():
            self.ui.speedComboBox.addItem(f"{speed}: {effect}", speed)
        self.ui.variantComboBox.connect("currentIndexChanged(int)", self.onVariant)
        self.ui.downloadWeightsButton.connect("clicked()", self.onDownload)
        self.ui.exportDicomCheckBox.connect("toggled(bool)", self.onExport)
        self.ui.applyButton.connect("clicked()", self.onApply)
        self.ui.cancelButton.connect("clicked()", self.onCancel)
        self.ui.cancelButton.enabled = False
        self.ui.progressBar.setValue(0)
        self.onInputKind(0)
        self.onModel()
        self.onExport(False)

    def cleanup(self) -> None:
        """Stop polling and any running command when the module is closed."""
        if self.timer is not None:
            self.timer.stop()
        if self.job is not None:
            self.job.cancel()

    def ensureOmasIdc(self) -> bool:
        """Install omas-idc into Slicer's Python on first use (after asking)."""
        from OmasIDCLib.install import ensure_installed, installed_version

        if installed_version("omas-idc") is not None:
            return True
        if not slicer.util.confirmOkCancelDisplay(
            "OmasIDC needs the omas-idc Python package, which is not installed in Slicer's "
            "Python. Install it now? (Slicer's own torch is kept where it has one.)"
        ):
            return False
        with slicer.util.WaitCursor():
            ensure_installed(slicer.util.pip_install)
        return True

    # -- choices ---------------------------------------------------------------------------

    def model(self) -> str:
        """The chosen model: a built-in name or the local family folder."""
        text = self.ui.modelComboBox.currentText
        return self.ui.modelFolderButton.directory if text == "local family folder" else text

    def onInputKind(self, index: int) -> None:
        self.ui.inputVolumeSelector.visible = index == 0
        self.ui.seriesFolderButton.visible = index == 1
        self.ui.seriesUidLineEdit.visible = index == 2

    def onModel(self, *args: Any) -> None:
        import qt

        local = self.ui.modelComboBox.currentText == "local family folder"
        self.ui.modelFolderButton.visible = local
        try:
            tasks = self.logic.task_ids(self.model())
            variants = self.logic.variants(self.model())
        except Exception as err:  # noqa: BLE001 - shown to the user, who picks another
            self.ui.statusLabel.text = str(err)
            return
        self.ui.taskListWidget.clear()
        for task in tasks:
            item = qt.QListWidgetItem(task)
            item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
            item.setCheckState(qt.Qt.Checked)
            self.ui.taskListWidget.addItem(item)
        self.ui.variantComboBox.clear()
        self.ui.variantComboBox.addItems(list(variants))
        self.onTasks()
        self.onVariant()

    def checkedTasks(self) -> list[str]:
        items = [self.ui.taskListWidget.item(n) for n in range(self.ui.taskListWidget.count)]
        return [item.text() for item in items if item.checkState()]

    def onTasks(self, *args: Any) -> None:
        import qt

        self.ui.structureListWidget.clear()
        for name in self.logic.structure_names(self.model(), self.checkedTasks() or None):
            item = qt.QListWidgetItem(name)
            item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
            item.setCheckState(qt.Qt.Unchecked)
            self.ui.structureListWidget.addItem(item)
        self.onSearch(self.ui.structureSearchLineEdit.text)

    def onSearch(self, text: str) -> None:
        for n in range(self.ui.structureListWidget.count):
            item = self.ui.structureListWidget.item(n)
            item.setHidden(text.lower() not in item.text().lower())

    def onVariant(self, *args: Any) -> None:
        variants = self.logic.variants(self.model())
        variant = self.ui.variantComboBox.currentText
        self.ui.licenceTextBrowser.setPlainText(variants.get(variant, ""))

    def onExport(self, checked: bool) -> None:
        self.ui.exportFolderButton.enabled = checked

    def options(self) -> SegmentOptions:
        weights = self.ui.weightsFolderButton.directory
        return SegmentOptions(
            model=self.model(),
            tasks=tuple(self.checkedTasks()),
            device=self.ui.deviceComboBox.currentText,
            speed=self.ui.speedComboBox.currentData,
            variant=self.ui.variantComboBox.currentText or None,
            weights_dir=Path(weights) if weights else None,
            export_seg=self.ui.exportDicomCheckBox.checked,
        )

    # -- work ------------------------------------------------------------------------------

    def onDownload(self) -> None:
        if not self.ui.acceptLicenceCheckBox.checked:
            slicer.util.errorDisplay(
                "Read the licence of the weights shown above and tick 'I accept' first."
            )
            return
        options = self.options()
        self.job = self.logic.start_download(
            options.model, options.variant, options.tasks, options.weights_dir
        )
        self.run = None
        self.startPolling()

    def onApply(self) -> None:
        kind = self.ui.inputKindComboBox.currentIndex
        structures = [
            self.ui.structureListWidget.item(n).text()
            for n in range(self.ui.structureListWidget.count)
            if self.ui.structureListWidget.item(n).checkState()
        ]
        inputs: dict[str, Any] = {}
        if kind == 0:
            inputs["volume_node"] = self.ui.inputVolumeSelector.currentNode()
        elif kind == 1:
            inputs["series_folder"] = Path(self.ui.seriesFolderButton.directory)
        else:
            inputs["series_instance_uid"] = self.ui.seriesUidLineEdit.text.strip()
        export = self.ui.exportFolderButton.directory
        try:
            self.run = self.logic.start(
                self.options(),
                structures=tuple(structures),
                export_dir=Path(export) if export and self.ui.exportDicomCheckBox.checked else None,
                **inputs,
            )
        except Exception as err:  # noqa: BLE001 - shown to the user
            slicer.util.errorDisplay(str(err))
            return
        self.job = self.run.job
        self.startPolling()

    def startPolling(self) -> None:
        self.ui.applyButton.enabled = False
        self.ui.downloadWeightsButton.enabled = False
        self.ui.cancelButton.enabled = True
        self.timer.start()
        self.onPoll()

    def stopPolling(self) -> None:
        self.timer.stop()
        self.ui.applyButton.enabled = True
        self.ui.downloadWeightsButton.enabled = True
        self.ui.cancelButton.enabled = False

    def onPoll(self) -> None:
        state = self.job.poll()
        self.ui.progressBar.setValue(int(100 * state.progress))
        self.ui.statusLabel.text = f"{state.title} ({state.step + 1}/{state.steps})"
        if not state.finished:
            return
        self.stopPolling()
        if state.status == "failed":
            self.ui.statusLabel.text = state.message
            slicer.util.errorDisplay(state.message, detailedText=str(self.job.log_dir))
            return
        if state.status == "cancelled":
            self.ui.statusLabel.text = "cancelled"
            return
        if self.run is None:
            self.ui.statusLabel.text = "weights downloaded"
            return
        with slicer.util.WaitCursor():
            run = self.logic.finish(self.run)
        if self.ui.inputKindComboBox.currentIndex != 0:
            slicer.util.setSliceViewerLayers(background=run.volume_node, fit=True)
        self.ui.statusLabel.text = (
            f"{run.segmentation_node.GetSegmentation().GetNumberOfSegments()} segments"
            + (f"; files in {run.result_dir}" if run.options.export_seg else "")
        )

    def onCancel(self) -> None:
        if self.job is not None:
            self.job.cancel()


#
# OmasIDCTest
#


def colourful_pixels(png: Path) -> int:
    """How many pixels of a PNG are clearly coloured (the overlay; the CT is grey)."""
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    reader = vtk.vtkPNGReader()
    reader.SetFileName(str(png))
    reader.Update()
    pixels = vtk_to_numpy(reader.GetOutput().GetPointData().GetScalars()).astype(int)
    spread = pixels[:, :3].max(axis=1) - pixels[:, :3].min(axis=1)
    return int((spread > 30).sum())


class OmasIDCTest(ScriptedLoadableModuleTest):
    """The Logic on phantom series (and real CT) with the packaged demo model.

    Inside Slicer: the module's "Reload and Test" runs :meth:`runTest`. With slicer-core,
    ``tests/slicer/`` runs every ``test_*`` method. Real CT comes from the folder named by
    ``OMAS_IDC_SHARED_DATA`` (skipped where unset); pictures go to ``OMAS_IDC_ARTIFACTS``.
    """

    def setUp(self) -> None:
        self.logic = OmasIDCLogic(
            scene=None if hasattr(slicer, "mrmlScene") else slicer.vtkMRMLScene()
        )
        self.tmp = Path(tempfile.mkdtemp(prefix="omas-idc-slicer-test-"))
        self.logic.work_root = self.tmp / "work"

    def runTest(self) -> None:
        for name in sorted(n for n in dir(self) if n.startswith("test_")):
            self.setUp()
            getattr(self, name)()

    # -- helpers ---------------------------------------------------------------------------

    def phantom(self, **options: Any) -> Path:
        from omas_idc.phantom import PhantomOptions, make_phantom

        folder = self.tmp / "phantom"
        make_phantom(folder, PhantomOptions(shape=(24, 40, 48), **options))
        return folder

    def shared(self, *parts: str) -> Path:
        root = os.environ.get("OMAS_IDC_SHARED_DATA", "")
        path = Path(root, *parts)
        if not root or not path.exists():
            self.skipTest(f"real CT not found ({path}); set OMAS_IDC_SHARED_DATA")
        return path

    def artifact(self, name: str) -> Path:
        folder = Path(os.environ.get("OMAS_IDC_ARTIFACTS") or self.tmp / "artifacts")
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def check_run(self, run: OmasIDCRun) -> dict[str, int]:
        """The segments equal omas-idc's label maps voxel for voxel on the volume's grid.

        Independent of the Logic's own grid mapping: each voxel of the volume node goes
        through its IJK-to-RAS matrix to patient space and back into omas-idc's grid (the
        series as omas-idc reads it), and the CT values must agree there too. Names, colours
        and terminology must be the catalog's. Returns the voxel count per structure.
        """
        import json

        from OmasIDCLib.terminology import parse_terminology_entry, terminology_entry

        from omas_idc.nifti import read_nifti_on_grid
        from omas_idc.read import read_series

        volume = read_series(run.series_folder, series_instance_uid=run.series_instance_uid)
        to_omas = np.linalg.inv(volume.geometry.affine) @ np.diag([-1.0, -1, 1, 1])
        to_omas = to_omas @ ijk_to_ras(run.volume_node)
        rounded = np.rint(to_omas)
        self.assertTrue(np.allclose(to_omas, rounded, atol=1e-3), f"not on one grid: {to_omas}")
        k, j, i = np.indices(slicer.util.arrayFromVolume(run.volume_node).shape, dtype=np.int32)
        xyz = [
            (rounded[a, 0] * i + rounded[a, 1] * j + rounded[a, 2] * k + rounded[a, 3]).astype(
                np.intp
            )
            for a in range(3)
        ]
        where = (xyz[2], xyz[1], xyz[0])
        hu_slicer = slicer.util.arrayFromVolume(run.volume_node)
        self.assertTrue(np.array_equal(hu_slicer, volume.hu[where]), "CT values differ")
        summary = json.loads((run.result_dir / "labels.json").read_text())
        catalog = self.logic.catalog(run.options.model)
        segmentation = run.segmentation_node.GetSegmentation()
        by_name = {
            segmentation.GetNthSegment(n).GetName(): segmentation.GetNthSegmentID(n)
            for n in range(segmentation.GetNumberOfSegments())
        }
        counts: dict[str, int] = {}
        for info in summary["tasks"].values():
            labels = read_nifti_on_grid(run.result_dir / info["file"], volume.geometry)[where]
            for value in np.unique(labels):
                if value == 0:
                    continue
                name = info["labels"][str(int(value))]
                if run.structures and name not in run.structures:
                    self.assertNotIn(name, by_name)
                    continue
                segment_id = by_name.pop(name)
                mask = segment_array(
                    self.logic.logics, run.segmentation_node, segment_id, run.volume_node
                )
                expected = labels == value
                self.assertTrue(np.array_equal(mask.astype(bool), expected), name)
                counts[name] = int(expected.sum())
                structure = catalog.by_name(name)
                segment = segmentation.GetSegment(segment_id)
                self.assertTrue(
                    np.allclose(segment.GetColor(), np.array(structure.color_rgb) / 255.0),
                    name,
                )
                entry = segment_tag(segment, segment.GetTerminologyEntryTagName())
                self.assertEqual(entry, terminology_entry(structure))
                parts = parse_terminology_entry(entry)
                self.assertEqual(parts["type"][1], structure.type.value)
                self.assertEqual(parts["category"][1], structure.category.value)
                modifier = structure.type_modifier.value if structure.type_modifier else None
                self.assertEqual(parts["type_modifier"] and parts["type_modifier"][1], modifier)
        self.assertEqual(by_name, {}, "segments without a label")
        return counts

    # -- phantoms --------------------------------------------------------------------------

    def test_phantom_axial_hfs(self) -> None:
        # Coarse voxels, so that the small grid covers the whole phantom body.
        folder = self.phantom(pixel_spacing=(8.0, 8.0), slice_spacing=12.0)
        run = self.logic.run(SegmentOptions(model="demo"), series_folder=folder)
        counts = self.check_run(run)
        self.assertGreaterEqual(len(counts), 4, counts)
        from OmasIDCLib.render import render_slice

        # Through the liver's centre (RAS z = LPS z).
        liver = run.segmentation_node.GetSegmentation().GetSegmentIdBySegmentName("liver")
        mask = segment_array(self.logic.logics, run.segmentation_node, liver, run.volume_node)
        k = round(float(np.nonzero(mask)[0].mean()))
        z = float((ijk_to_ras(run.volume_node) @ [0, 0, k, 1])[2])
        png = self.artifact("slicer_overlay_phantom.png")
        render_slice(self.logic.logics, run.volume_node, run.segmentation_node, png, z)
        self.assertTrue(colourful_pixels(png) > 1000, "no coloured overlay in the picture")

    def test_phantom_feet_first(self) -> None:
        folder = self.phantom(patient_position="FFS", flip_rows=True)
        counts = self.check_run(self.logic.run(SegmentOptions(model="demo"), series_folder=folder))
        self.assertGreaterEqual(len(counts), 4, counts)

    def test_phantom_coronal(self) -> None:
        folder = self.phantom(orientation="coronal")
        counts = self.check_run(self.logic.run(SegmentOptions(model="demo"), series_folder=folder))
        self.assertGreaterEqual(len(counts), 4, counts)

    def test_volume_node_input_and_structure_subset(self) -> None:
        from OmasIDCLib.scene import load_series

        volume = load_series(self.logic.logics, self.phantom(), name="CT")
        run = self.logic.run(
            SegmentOptions(model="demo"), volume_node=volume, structures=("liver", "spleen")
        )
        self.assertIs(run.volume_node, volume)
        counts = self.check_run(run)  # also: no segment of another structure
        self.assertIn("liver", counts)
        self.assertLessEqual(set(counts), {"liver", "spleen"})

    def test_volume_not_from_dicom_refused(self) -> None:
        volume = self.logic.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "from NRRD")
        with self.assertRaisesRegex(ValueError, "not loaded from DICOM"):
            self.logic.start(SegmentOptions(model="demo"), volume_node=volume)

    def test_cancel(self) -> None:
        run = self.logic.start(SegmentOptions(model="demo"), series_folder=self.phantom())
        state = run.job.cancel()
        self.assertEqual(state.status, "cancelled")
        with self.assertRaises(JobFailed):
            self.logic.finish(run)

    def test_unknown_model_error_is_classified(self) -> None:
        with self.assertRaises(JobFailed) as caught:
            self.logic.run(
                SegmentOptions(model="demo", variant="no-such-variant"),
                series_folder=self.phantom(),
            )
        self.assertRegex(str(caught.exception), r"^\w+Error \([^)]*\): ")

    def test_terminology_context_loads(self) -> None:
        """Slicer's terminology logic finds every catalog structure in the loaded context."""
        from OmasIDCLib.terminology import terminology_entry

        name = self.logic.load_terminology()
        if name is None:
            self.skipTest("no terminology logic")
        terminologies = self.logic.logics.terminologies
        for structure in self.logic.catalog().structures:
            entry = slicer.vtkSlicerTerminologyEntry()
            self.assertTrue(
                terminologies.DeserializeTerminologyEntry(terminology_entry(structure), entry)
            )
            category = entry.GetCategoryObject()
            found = slicer.vtkSlicerTerminologyType()
            types = []
            for n in range(terminologies.GetNumberOfTypesInTerminologyCategory(name, category)):
                terminologies.GetNthTypeInTerminologyCategory(name, category, n, found)
                types.append(found.GetCodeValue())
                if found.GetCodeValue() == structure.type.value:
                    break
            self.assertEqual(types[-1:], [structure.type.value], structure.name)
            if structure.type_modifier is not None:
                modifier = slicer.vtkSlicerTerminologyType()
                count = terminologies.GetNumberOfTypeModifiersInTerminologyType(
                    name, category, found
                )
                values = []
                for n in range(count):
                    terminologies.GetNthTypeModifierInTerminologyType(
                        name, category, found, n, modifier
                    )
                    values.append(modifier.GetCodeValue())
                self.assertIn(structure.type_modifier.value, values, structure.name)

    # -- real CT ---------------------------------------------------------------------------

    def test_real_ct_export_equals_encode(self) -> None:
        import subprocess

        import pydicom
        from OmasIDCLib.render import render_slice

        folder = self.shared("dcm_qa_ct", "In", "Philips", "S21570", "S2010")
        export = self.tmp / "export"
        run = self.logic.run(
            SegmentOptions(model="demo", export_seg=True), series_folder=folder, export_dir=export
        )
        self.assertGreaterEqual(len(self.check_run(run)), 3)
        [seg_file] = sorted(export.glob("seg_*.dcm"))
        encoded = self.tmp / "encoded"
        nifti = next(export.glob("*.nii.gz"))
        subprocess.run(
            [sys.executable, "-m", "omas_idc.cli", "encode", str(folder), str(nifti),
             "--model", "omas-demo", "--model-version", "1.0.0", "--task", "900",
             "--out", str(encoded)],
            check=True, capture_output=True,
        )  # fmt: skip
        [reference_file] = sorted(encoded.glob("*.dcm"))
        ours, reference = pydicom.dcmread(seg_file), pydicom.dcmread(reference_file)
        for keyword in ("SegmentationType", "NumberOfFrames", "Rows", "Columns", "PixelData"):
            self.assertEqual(ours.get(keyword), reference.get(keyword), keyword)
        # Algorithm Parameters carry the weights' provenance, which `segment` knows and
        # `encode` (given a label map) cannot: compared apart.
        parameters = [
            [e.value for s in d.SegmentSequence for e in s.iterall() if e.tag == 0x00660032]
            for d in (ours, reference)
        ]
        self.assertTrue(all("weights_variant=local" in p for p in parameters[0]))
        for d in (ours, reference):
            for s in d.SegmentSequence:
                for e in s.iterall():
                    if e.tag == 0x00660032:
                        e.value = ""
        self.assertEqual(
            [s.to_json_dict() for s in ours.SegmentSequence],
            [s.to_json_dict() for s in reference.SegmentSequence],
        )
        positions = [
            [
                f.PlanePositionSequence[0].ImagePositionPatient
                for f in d.PerFrameFunctionalGroupsSequence
            ]
            for d in (ours, reference)
        ]
        self.assertEqual(positions[0], positions[1])
        self.assertEqual(
            ours.ReferencedSeriesSequence[0].SeriesInstanceUID,
            reference.ReferencedSeriesSequence[0].SeriesInstanceUID,
        )
        self.assertTrue((run.qa_dir / "sr.dcm").is_file())
        table = run.table_node.GetTable()
        structures = table.GetColumnByName("structure")
        status = table.GetColumnByName("status")
        rows = range(table.GetNumberOfRows())
        names = {structures.GetValue(r) for r in rows if status.GetValue(r) == "present"}
        segmentation = run.segmentation_node.GetSegmentation()
        self.assertEqual(
            names,
            {
                segmentation.GetNthSegment(n).GetName()
                for n in range(segmentation.GetNumberOfSegments())
            },
        )
        volumes = table.GetColumnByName("volume_ml")
        self.assertTrue(
            all(volumes.GetValue(r) > 0 for r in rows if status.GetValue(r) == "present")
        )
        png = self.artifact("slicer_overlay_real_ct.png")
        render_slice(self.logic.logics, run.volume_node, run.segmentation_node, png)
        self.assertGreater(png.stat().st_size, 1000)
        self.assertGreater(colourful_pixels(png), 20, "no coloured overlay in the picture")

    def test_real_ct_without_uids(self) -> None:
        folder = self.shared("totalsegmentator", "tests", "reference_files", "example_ct_dicom")
        run = self.logic.run(SegmentOptions(model="demo"), series_folder=folder)
        self.assertGreaterEqual(len(self.check_run(run)), 1)
        with self.assertRaises(JobFailed) as caught:
            self.logic.run(
                SegmentOptions(model="demo", export_seg=True),
                series_folder=folder,
                export_dir=self.tmp / "export",
            )
        self.assertEqual(caught.exception.error_class, "EncodingError")
        self.assertIn("empty-uids", str(caught.exception))

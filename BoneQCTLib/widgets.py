"""The widget layer the three module panels share (QCTBoneDensity, HipCTXA, FiniteElement):
the life cycle of Slicer's scripted-module template, the guarded button action, and the
calibration section (its .ui, its parameters and its behaviour), each written once.

This is widget-layer code, kept apart from the MRML adapters: it binds a loaded .ui to the
module's parameter node and keeps the binding through module enter/exit and scene close. It
imports only ``slicer``, ``qt``, ``vtk`` and the dependency guard (no numpy or core, so the
module files import it at load time); ``slicer.util.loadUI`` needs the running application,
so it is exercised inside Slicer only (and checked statically by the tests).
"""

import functools
import logging
from importlib import resources
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLTableNode
from slicer.parameterNodeWrapper import Choice, WithinRange
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from BoneQCTLib.dependencies import ensure_python_packages

#: The shared calibration section (inserted below each module's Input section).
CALIBRATION_SECTION_UI = Path(__file__).parent / "Resources" / "UI" / "CalibrationSection.ui"

#: Calibration phantoms offered: the certificate files bundled with boneqct (the same list as
#: boneqct.calibration.definitions.bundled_phantom_names(), read without loading the core).
PHANTOM_NAMES = sorted(
    p.name[: -len(".json")]
    for p in (resources.files("boneqct") / "data" / "phantoms").iterdir()
    if p.name.endswith(".json")
)
#: Calibration materials (as boneqct.calibration.definitions.MATERIALS; checked by the tests).
MATERIALS = ["K2HPO4", "HA"]
#: How the CT is calibrated: the phantom in the scan, the patient's own tissues, or known values.
CALIBRATION_PHANTOM = "Phantom"
CALIBRATION_INTERNAL = "Internal (phantomless)"
CALIBRATION_MANUAL = "Manual"
CALIBRATION_METHODS = [CALIBRATION_PHANTOM, CALIBRATION_INTERNAL, CALIBRATION_MANUAL]
#: Patient sex for reference scores and flags ("unknown": none).
PATIENT_SEXES = ["unknown", "F", "M"]


def patientSexOrNone(sex: str):
    """The core's sex ("F", "M") of a ``PATIENT_SEXES`` choice; None for "unknown"."""
    return None if sex == "unknown" else sex


def patientAgeOrNone(ageYears: float):
    """The core's age in years of an age field; None for 0 (the fields' "unknown")."""
    return ageYears if ageYears > 0 else None


def describeModule(parent, title: str, helpText: str) -> None:
    """Fill the module description Slicer shows (``parent`` of ``ScriptedLoadableModule``)."""
    parent.title = title
    parent.categories = ["Quantification"]
    parent.dependencies = []  # the modules share BoneQCTLib, not each other
    parent.contributors = ["BoneQCT developers"]
    parent.helpText = helpText
    parent.acknowledgementText = (
        "Built on 3D Slicer's scripted module template; computations are in the Slicer-free "
        "<code>boneqct</code> package, which also has a command line.")


#: Digital phantoms offered in Sample Data (category BoneQCT): sample name -> kind.
SAMPLE_PHANTOMS = {"BoneQCT spine phantom": "spine", "BoneQCT femur phantom": "femur"}


def registerSampleData(kind: str, thumbnailFileName: str) -> None:
    """Offer the digital ``kind`` phantom ("spine" or "femur") in the Sample Data module; a
    click makes it locally with the core (nothing is downloaded). Call from a module's
    ``__init__`` through ``slicer.app.connect("startupCompleted()", ...)``."""
    import SampleData

    name = next(name for name, sampleKind in SAMPLE_PHANTOMS.items() if sampleKind == kind)
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="BoneQCT", sampleName=name, uris=[f"boneqct-phantom:{kind}"],
        fileNames=[f"{kind}-phantom.nrrd"], nodeNames=[name], thumbnailFileName=thumbnailFileName,
        customDownloader=loadSamplePhantom)


def loadSamplePhantom(source) -> list:
    """Make the phantom of a Sample Data ``source`` of :func:`registerSampleData` and add it to
    the scene: the CT volume (HU, with its calibration rods) and, for the spine, its seed
    points named by level; returns the nodes."""
    if not ensure_python_packages():
        return []
    from boneqct.phantoms import make_spine_phantom
    from boneqct.phantoms.femur import make_femur_phantom
    from BoneQCTLib.volumes import update_node_from_volume

    name = source.nodeNames[0]
    with slicer.util.tryWithErrorDisplay(f"Making the {name} failed.", waitCursor=True):
        phantom = make_spine_phantom() if SAMPLE_PHANTOMS[name] == "spine" else make_femur_phantom()
        nodes = [update_node_from_volume(phantom.volume, name=name)]
        if SAMPLE_PHANTOMS[name] == "spine":
            seeds = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"{name} seeds")
            for vertebra in phantom.truth["vertebrae"]:
                seeds.AddControlPoint(*vertebra["body_center_ras_mm"], vertebra["level"])
            nodes.append(seeds)
        slicer.util.setSliceViewerLayers(background=nodes[0], fit=True)
        return nodes
    return []


class CalibrationParameters:
    """The calibration section's parameters; a module's ``@parameterNodeWrapper`` class
    inherits them (the wrapper reads inherited annotations and defaults).

    calibrationMethod - phantom, internal (phantomless, from the patient's tissues) or manual.
    phantomName - bundled phantom certificate used by a phantom calibration.
    internalCalibrationPoints - optional markups points named air/fat/muscle/blood that replace
        the automatic ROIs of the internal calibration.
    manualSlopeHuPerMgCm3, manualInterceptHu, manualMaterial - HU = slope * density + intercept.
    calibrationTable - the calibration (per-rod or per-tissue rows, the fit as its document).
    """

    calibrationMethod: Annotated[str, Choice(CALIBRATION_METHODS)] = CALIBRATION_PHANTOM
    phantomName: Annotated[str, Choice(PHANTOM_NAMES)] = "mindways-model3"
    internalCalibrationPoints: vtkMRMLMarkupsFiducialNode
    manualSlopeHuPerMgCm3: Annotated[float, WithinRange(0.01, 10.0)] = 1.0
    manualInterceptHu: Annotated[float, WithinRange(-1000.0, 1000.0)] = 0.0
    manualMaterial: Annotated[str, Choice(MATERIALS)] = "K2HPO4"
    calibrationTable: vtkMRMLTableNode


class StatusBarProgress:
    """The progress of the core's long steps (``boneqct.progress``) in Slicer's status bar and
    log: each step and each counted item is shown as it starts, and the GUI is kept drawn."""

    class _Bar:
        def __init__(self, description: str, total):
            self.description, self.total, self.done = description, total, 0

        def update(self, n: int) -> None:
            self.done += n
            of = f"/{self.total}" if self.total else ""
            slicer.util.showStatusMessage(f"{self.description}: {self.done}{of}")
            slicer.app.processEvents()

        def close(self) -> None:
            logging.info(f"BoneQCT: {self.description} done ({self.done})")

    def step(self, description: str) -> None:
        logging.info(f"BoneQCT: {description}")
        slicer.util.showStatusMessage(f"{description}...")
        slicer.app.processEvents()

    def bar(self, description: str, total):
        self.step(description)
        return self._Bar(description, total)


def moduleAction(failureMessage: str, askFolder: str = ""):
    """Decorate a button slot of a module widget: the dependency guard runs first (the user is
    asked to install what is missing; nothing happens if they decline), errors are shown in
    a dialog starting with ``failureMessage``, the wait cursor is on and the core's steps show
    in the status bar (:class:`StatusBarProgress`) meanwhile. With
    ``askFolder`` (the dialog's title) the user first chooses a folder, which the slot gets as
    its argument (nothing happens when they cancel). The signal's own arguments are dropped."""

    def decorate(slot):
        @functools.wraps(slot)
        def run(self, *signalArguments):
            folder = ""
            if askFolder:
                folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), askFolder)
                if not folder:
                    return
            with slicer.util.tryWithErrorDisplay(failureMessage, waitCursor=True):
                if ensure_python_packages():
                    from boneqct.progress import reporting

                    with reporting(StatusBarProgress()):
                        slot(self, folder) if askFolder else slot(self)
                    slicer.util.showStatusMessage("")
        return run

    return decorate


class ParameterNodeWidgetMixin:
    """Mix into ``ScriptedLoadableModuleWidget`` (before it) with ``VTKObservationMixin``.

    The widget calls :meth:`loadModuleUI` in ``setup`` and defines ``_updateState(caller=None,
    event=None)``, which refreshes the GUI from ``self._parameterNode``. The parameter node must
    have an ``inputVolume`` field.
    """

    _parameterNode = None
    _parameterNodeGuiTag = None

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None

    def loadModuleUI(self, uiFileName: str, logic, buttonSlots: dict, sharedSections=()) -> None:
        """Load ``Resources/UI/<uiFileName>`` with the ``sharedSections`` (.ui paths of
        BoneQCTLib, inserted below the first section), keep ``logic``, connect each button
        named in ``buttonSlots`` to its slot, watch the scene closing and bind the parameter
        node."""
        uiWidget = slicer.util.loadUI(self.resourcePath(f"UI/{uiFileName}"))
        for index, sectionPath in enumerate(sharedSections, start=1):
            section = slicer.util.loadUI(str(sectionPath))
            uiWidget.layout().insertWidget(index, section)
            section.setMRMLScene(slicer.mrmlScene)
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = logic
        for button, slot in buttonSlots.items():
            getattr(self.ui, button).connect("clicked(bool)", slot)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def offerAction(self, button, available: bool, whatItDoes: str, whatItNeeds: str) -> None:
        """Enable ``button`` when ``available``; its tooltip says what it does, or what it needs."""
        button.enabled = available
        button.toolTip = whatItDoes if available else whatItNeeds

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens another module: stop updating the GUI."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateState)

    def onSceneStartClose(self, caller, event) -> None:
        """The parameter node is about to be removed with the scene."""
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Recreate the parameter node if the module is shown while the scene is closed."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Make sure the parameter node exists, is observed, and has an input volume if possible."""
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode) -> None:
        """Bind the GUI to ``inputParameterNode`` (the module's parameter node, or None)."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateState)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateState)
            self._updateState()


class CalibrationSectionMixin:
    """The calibration section's behaviour, for a widget whose parameter node inherits
    :class:`CalibrationParameters` and whose logic has ``CalibrationLogicMixin``
    (:class:`CalibratingModuleWidget` loads the section and connects Calibrate); call
    :meth:`updateCalibrationSection` from ``_updateState``.
    """

    def updateCalibrationSection(self) -> None:
        """Enable the inputs of the chosen method and Calibrate; show the calibration."""
        p = self._parameterNode
        manual = p.calibrationMethod == CALIBRATION_MANUAL
        self.ui.phantomNameComboBox.enabled = p.calibrationMethod == CALIBRATION_PHANTOM
        self.ui.internalCalibrationPointsSelector.enabled = p.calibrationMethod == CALIBRATION_INTERNAL
        for widget in (self.ui.manualSlopeSpinBox, self.ui.manualInterceptSpinBox,
                       self.ui.manualMaterialComboBox):
            widget.enabled = manual
        self.offerAction(self.ui.calibrateButton, manual or p.inputVolume is not None,
                         "Fit the calibration",
                         "Select the CT volume to calibrate")
        self.ui.calibrationTableView.setMRMLTableNode(p.calibrationTable)
        self.ui.calibrationSummaryLabel.text = self.logic.calibrationSummary(p.calibrationTable)

    @moduleAction("Calibration failed.")
    def onCalibrateButton(self) -> None:
        """Calibrate with the chosen method into the calibration table."""
        p = self._parameterNode
        if p.calibrationMethod == CALIBRATION_MANUAL:
            table = self.logic.calibrateManually(
                p.manualSlopeHuPerMgCm3, p.manualInterceptHu, p.manualMaterial, p.calibrationTable)
        elif p.calibrationMethod == CALIBRATION_INTERNAL:
            table = self.logic.calibrateInternally(
                p.inputVolume, p.internalCalibrationPoints, p.calibrationTable)
        else:
            table = self.logic.calibrateWithPhantom(p.inputVolume, p.phantomName, p.calibrationTable)
        p.calibrationTable = table


class ModuleWidget(ParameterNodeWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The base of a BoneQCT module panel (Slicer's template widget with the shared life cycle)."""


class CalibratingModuleWidget(CalibrationSectionMixin, ModuleWidget):
    """The base of a module panel with the shared calibration section (inserted below the
    module's first section, its Calibrate button connected)."""

    def loadModuleUI(self, uiFileName: str, logic, buttonSlots: dict, sharedSections=()) -> None:
        super().loadModuleUI(uiFileName, logic, {"calibrateButton": self.onCalibrateButton, **buttonSlots},
                             sharedSections=[CALIBRATION_SECTION_UI, *sharedSections])


class ModuleTest(ScriptedLoadableModuleTest):
    """The base of a module's in-Slicer self-test: :meth:`runTest` runs every ``test_...``
    method of the class, in the order written, each in an empty scene."""

    def setUp(self) -> None:
        """Start from an empty scene."""
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        """Run all tests of the module."""
        for name, member in vars(type(self)).items():
            if name.startswith("test_") and callable(member):
                self.setUp()
                member(self)

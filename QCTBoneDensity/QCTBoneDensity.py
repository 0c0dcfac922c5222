"""QCT Bone Density: calibrate a CT scan with its phantom and convert it to mineral density.

The module only moves data between the scene and the Slicer-free ``boneqct`` core: it reads
MRML nodes (through ``QCTBoneDensityLib``), calls the core, and writes nodes back.
"""

import logging
from importlib import resources
from typing import Annotated

import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLTableNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# boneqct.calibration is imported only inside the logic's methods: its Python dependencies may
# still have to be installed (see QCTBoneDensityLib.dependencies) when Slicer loads this file.

#: Calibration phantoms offered in the combo box: the certificate files bundled with boneqct
#: (the same list as boneqct.calibration.definitions.bundled_phantom_names()).
PHANTOM_NAMES = sorted(
    p.name[: -len(".json")]
    for p in (resources.files("boneqct") / "data" / "phantoms").iterdir()
    if p.name.endswith(".json")
)

#: Calibration materials (as boneqct.calibration.definitions.MATERIALS; checked by the tests).
MATERIALS = ["K2HPO4", "HA"]


#
# QCTBoneDensity
#


class QCTBoneDensity(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "QCT Bone Density"
        self.parent.categories = ["Quantification"]
        self.parent.dependencies = []
        self.parent.contributors = ["BoneQCT developers"]
        self.parent.helpText = """
Calibrates a CT scan to bone mineral density (mg/cm3) with the calibration phantom scanned
with the patient (Mindways Model 3, QRM-BDC 3/6, B-MAS 200) or with a known slope and
intercept, and converts the scan into a BMD map. The computations are done by the
Slicer-free <code>boneqct</code> package, which also has a command line.
"""
        self.parent.acknowledgementText = """
Built on 3D Slicer's scripted module template. Calibration follows the QCT PRO two-step
K2HPO4 fit for Mindways phantoms and a linear fit for hydroxyapatite phantoms.
"""


#
# QCTBoneDensityParameterNode
#


@parameterNodeWrapper
class QCTBoneDensityParameterNode:
    """The module's state, saved with the scene.

    inputVolume - CT volume in HU, with the calibration phantom in the field of view.
    phantomName - bundled phantom certificate used by "Calibrate".
    useManualCalibration - use the slope and intercept below instead of fitting the phantom.
    manualSlopeHuPerMgCm3, manualInterceptHu, manualMaterial - HU = slope * density + intercept.
    calibrationTable - per-rod results; the fit is kept as attributes of this table.
    outputBmdVolume - BMD map (mg/cm3 of the calibration material).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    phantomName: Annotated[str, Choice(PHANTOM_NAMES)] = "mindways-model3"
    useManualCalibration: bool = False
    manualSlopeHuPerMgCm3: Annotated[float, WithinRange(0.01, 10.0)] = 1.0
    manualInterceptHu: Annotated[float, WithinRange(-1000.0, 1000.0)] = 0.0
    manualMaterial: Annotated[str, Choice(MATERIALS)] = "K2HPO4"
    calibrationTable: vtkMRMLTableNode
    outputBmdVolume: vtkMRMLScalarVolumeNode


#
# QCTBoneDensityWidget
#


class QCTBoneDensityWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: binds the .ui to the parameter node and forwards actions to the logic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        """Load the .ui, create the logic and connect buttons (called once)."""
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/QCTBoneDensity.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = QCTBoneDensityLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.calibrateButton.connect("clicked(bool)", self.onCalibrateButton)
        self.ui.convertButton.connect("clicked(bool)", self.onConvertButton)

        self.initializeParameterNode()

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
        """Bind the GUI to ``inputParameterNode`` (a QCTBoneDensityParameterNode or None)."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateState)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateState)
            self._updateState()

    def _updateState(self, caller=None, event=None) -> None:
        """Enable the widgets that can act on the current selection and show the calibration."""
        p = self._parameterNode
        if p is None:
            return
        manual = p.useManualCalibration
        self.ui.phantomNameComboBox.enabled = not manual
        self.ui.manualSlopeSpinBox.enabled = manual
        self.ui.manualInterceptSpinBox.enabled = manual
        self.ui.manualMaterialComboBox.enabled = manual

        self.ui.calibrateButton.enabled = manual or p.inputVolume is not None
        self.ui.calibrateButton.toolTip = (
            "Fit the calibration" if self.ui.calibrateButton.enabled
            else "Select the CT volume that shows the calibration phantom")

        self.ui.calibrationTableView.setMRMLTableNode(p.calibrationTable)
        self.ui.calibrationSummaryLabel.text = self.logic.calibrationSummary(p.calibrationTable)

        canConvert = p.inputVolume is not None and self.logic.hasCalibration(p.calibrationTable)
        self.ui.convertButton.enabled = canConvert
        self.ui.convertButton.toolTip = (
            "Convert the CT volume from HU to BMD (mg/cm3)" if canConvert
            else "Select a CT volume and calibrate first")

    def _ensurePythonPackages(self) -> bool:
        """Offer to install the core's missing Python packages; True when all are present."""
        missing = self.logic.missingPythonPackages()
        if not missing:
            return True
        if not slicer.util.confirmOkCancelDisplay(
                "BoneQCT needs these Python packages, which are not installed in Slicer yet: "
                + ", ".join(missing) + ". Install them now (needs an internet connection)?"):
            return False
        self.logic.installPythonPackages(missing)
        return True

    def onCalibrateButton(self) -> None:
        """Fit the phantom (or apply the manual values) and show the results table."""
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Calibration failed.", waitCursor=True):
            if not self._ensurePythonPackages():
                return
            if p.useManualCalibration:
                table = self.logic.calibrateManually(
                    p.manualSlopeHuPerMgCm3, p.manualInterceptHu, p.manualMaterial, p.calibrationTable)
            else:
                table = self.logic.calibrateWithPhantom(p.inputVolume, p.phantomName, p.calibrationTable)
            p.calibrationTable = table

    def onConvertButton(self) -> None:
        """Write the BMD map of the input volume into the output volume (created if none)."""
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Conversion to BMD failed.", waitCursor=True):
            if not self._ensurePythonPackages():
                return
            p.outputBmdVolume = self.logic.convertToBmd(p.inputVolume, p.calibrationTable, p.outputBmdVolume)
            slicer.util.setSliceViewerLayers(background=p.outputBmdVolume, fit=True)


#
# QCTBoneDensityLogic
#


class QCTBoneDensityLogic(ScriptedLoadableModuleLogic):
    """Scene-level operations of the module, usable from the Python console without the GUI.

    Each method reads nodes, calls ``boneqct``, and writes nodes; nothing is computed here.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        """The module's parameter node, wrapped with typed fields."""
        return QCTBoneDensityParameterNode(super().getParameterNode())

    def missingPythonPackages(self) -> list:
        """Import names of the core's Python dependencies not installed in Slicer."""
        from QCTBoneDensityLib import missing_python_packages

        return missing_python_packages()

    def installPythonPackages(self, importNames) -> None:
        """Install the given missing dependencies with ``slicer.util.pip_install``."""
        from QCTBoneDensityLib import install_python_packages

        install_python_packages(importNames)

    def calibrateWithPhantom(self, inputVolume, phantomName: str, tableNode=None, sliceRange=None):
        """Fit the phantom seen in ``inputVolume``; returns the (new or given) calibration table.

        ``sliceRange`` is an optional (first, last) k-index range holding the phantom.
        """
        if inputVolume is None:
            raise ValueError("Select the CT volume that shows the calibration phantom.")
        from QCTBoneDensityLib import calibration_to_table_node, volume_from_node

        from boneqct.calibration import calibrate_with_phantom

        calibration = calibrate_with_phantom(volume_from_node(inputVolume), phantomName, slice_range=sliceRange)
        for warning in calibration.warnings:
            logging.warning(f"BoneQCT calibration: {warning}")
        name = f"{inputVolume.GetName()} calibration ({phantomName})"
        return calibration_to_table_node(calibration, tableNode, name=name)

    def calibrateManually(self, slopeHuPerMgCm3: float, interceptHu: float, material: str, tableNode=None):
        """Record a known calibration (HU = slope * density + intercept) in a table node."""
        from QCTBoneDensityLib import calibration_to_table_node

        from boneqct.calibration import manual_calibration

        calibration = manual_calibration(slopeHuPerMgCm3, interceptHu, material)
        return calibration_to_table_node(calibration, tableNode, name=f"Manual calibration ({material})")

    def hasCalibration(self, tableNode) -> bool:
        """Whether ``tableNode`` holds a calibration written by this module."""
        from QCTBoneDensityLib import has_calibration

        return has_calibration(tableNode)

    def calibrationSummary(self, tableNode) -> str:
        """One line describing the calibration held by ``tableNode`` (empty if none)."""
        if not self.hasCalibration(tableNode):
            return ""
        from QCTBoneDensityLib import tables

        r2 = tableNode.GetAttribute(tables.ATTRIBUTE_R2)
        summary = (
            f"HU = {float(tableNode.GetAttribute(tables.ATTRIBUTE_SLOPE_HU_PER_MG_CM3)):.4f} x density"
            f" + {float(tableNode.GetAttribute(tables.ATTRIBUTE_INTERCEPT_HU)):.2f}"
            f" (mg/cm3 {tableNode.GetAttribute(tables.ATTRIBUTE_MATERIAL)})"
        )
        if r2:
            summary += f", R2 = {float(r2):.4f}"
        warnings = tableNode.GetAttribute(tables.ATTRIBUTE_WARNINGS)
        if warnings:
            summary += "\nWarnings: " + warnings.replace("\n", "; ")
        return summary

    def convertToBmd(self, inputVolume, calibrationTable, outputVolume=None):
        """Write the BMD map (mg/cm3) of ``inputVolume`` into ``outputVolume`` (created if None).

        The output has exactly the input's grid and geometry; voxels are float32 mg/cm3 of the
        calibration material, which is recorded in the node attribute ``BoneQCT.Quantity``.
        """
        if inputVolume is None:
            raise ValueError("Select the CT volume to convert.")
        from QCTBoneDensityLib import (
            calibration_from_table_node,
            update_node_from_volume,
            volume_from_node,
        )

        from boneqct.calibration import convert_volume_to_bmd

        calibration = calibration_from_table_node(calibrationTable)
        bmd = convert_volume_to_bmd(volume_from_node(inputVolume), calibration)
        outputVolume = update_node_from_volume(bmd, outputVolume, name=f"{inputVolume.GetName()} BMD")
        outputVolume.SetAttribute("BoneQCT.Quantity", f"BMD (mg/cm3 {calibration.material})")
        return outputVolume


#
# QCTBoneDensityTest
#


class QCTBoneDensityTest(ScriptedLoadableModuleTest):
    """In-Slicer self-test: a digital phantom from the core, calibrated and converted end to end."""

    def setUp(self) -> None:
        """Start from an empty scene."""
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        """Run all tests of the module."""
        self.setUp()
        self.test_ManualCalibrationIsIdentity()
        self.setUp()
        self.test_PhantomCalibrationAndBmdMap()

    def _phantomVolume(self):
        """A small digital spine phantom with calibration rods, made by the core."""
        from boneqct.phantoms import make_spine_phantom
        from boneqct.volume import Volume

        phantom = make_spine_phantom()
        return phantom if isinstance(phantom, Volume) else phantom.volume

    def test_ManualCalibrationIsIdentity(self) -> None:
        """Slope 1, intercept 0 leaves the voxel values and the geometry unchanged."""
        import numpy as np
        from QCTBoneDensityLib import update_node_from_volume

        from boneqct.volume import Volume, ijk_to_ras_matrix

        self.delayDisplay("Manual calibration")
        ct = Volume(np.arange(60, dtype=np.int16).reshape(3, 4, 5) * 10 - 100,
                    ijk_to_ras_matrix([10.0, -20.0, 30.0], [0.8, 0.8, 2.0]))
        inputVolume = update_node_from_volume(ct, name="ct")
        logic = QCTBoneDensityLogic()
        table = logic.calibrateManually(1.0, 0.0, "HA")
        self.assertTrue(logic.hasCalibration(table))
        bmd = logic.convertToBmd(inputVolume, table)
        np.testing.assert_allclose(slicer.util.arrayFromVolume(bmd), ct.array_kji, atol=1e-4)
        self.assertEqual(bmd.GetImageData().GetDimensions(), inputVolume.GetImageData().GetDimensions())
        self.delayDisplay("Manual calibration passed")

    def test_PhantomCalibrationAndBmdMap(self) -> None:
        """Calibrate a digital phantom and check the table and the BMD map."""
        import numpy as np
        from QCTBoneDensityLib import (
            calibration_from_table_node,
            update_node_from_volume,
            volume_from_node,
        )

        from boneqct.calibration import convert_volume_to_bmd, load_phantom_definition

        self.delayDisplay("Phantom calibration")
        ct = self._phantomVolume()
        inputVolume = update_node_from_volume(ct, name="phantom")
        logic = QCTBoneDensityLogic()
        table = logic.calibrateWithPhantom(inputVolume, "mindways-model3")
        self.assertEqual(table.GetNumberOfRows(), len(load_phantom_definition("mindways-model3").rods))
        self.assertGreater(float(table.GetAttribute("BoneQCT.R2")), 0.98)
        self.assertEqual(table.GetColumnUnitLabel("Measured (HU)"), "HU")

        bmdVolume = logic.convertToBmd(inputVolume, table)
        bmd = volume_from_node(bmdVolume)
        np.testing.assert_allclose(bmd.ijk_to_ras, ct.ijk_to_ras, atol=1e-9)
        expected = convert_volume_to_bmd(ct, calibration_from_table_node(table))
        np.testing.assert_allclose(bmd.array_kji, expected.array_kji, rtol=1e-6)
        self.delayDisplay("Phantom calibration passed")

"""Finite Element: vertebral strength (N) and stiffness (N/mm) from voxel finite-element models
of calibrated QCT.

The module only moves data between the scene and the Slicer-free ``boneqct.fe`` core: it reads
MRML nodes (through ``FiniteElementLib``), calls the core, and writes nodes back: the mesh as a
model node coloured by a strain or stress field, a results table with units, and the
load-displacement chart.
"""

import logging
from typing import Annotated

import slicer
from slicer import (
    vtkMRMLMarkupsFiducialNode,
    vtkMRMLModelNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLTableNode,
)
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# boneqct is imported only inside the logic's methods (its dependencies may still have to be
# installed when Slicer loads this file).

#: Levels offered (as boneqct.spine.levels.LEVEL_NAMES, lumbar and low thoracic).
LEVELS = ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]
#: Density-modulus laws (as boneqct.fe.materials.LAWS).
LAWS = ["morgan2003", "kopperdahl2002", "crawford2003"]
#: Strength criteria (as boneqct.fe.analysis.CRITERIA).
CRITERIA = ["nonlinear", "linear", "pistoia"]
#: Patient sex for the fragile flag ("unknown": no flag).
PATIENT_SEXES = ["unknown", "F", "M"]
#: Element fields to colour the mesh by (as FiniteElementLib.COLOR_FIELDS).
COLOR_FIELDS = ["effective_strain", "min_principal_strain", "max_principal_strain",
                "axial_strain", "von_mises_mpa", "sed_mpa", "modulus_mpa", "bmd_mg_cm3",
                "yielded"]


class FiniteElement(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Finite Element"
        self.parent.categories = ["Quantification"]
        self.parent.dependencies = ["QCTBoneDensity"]  # shares QCTBoneDensityLib's adapters
        self.parent.contributors = ["BoneQCT developers"]
        self.parent.helpText = """
Vertebral strength (N) and stiffness (N/mm) from voxel finite-element models of calibrated QCT:
cubic elements in the body's axis frame, density-modulus law of choice, PMMA endplate layers,
axial compression; strength by the linear 0.68% rule, the Pistoia criterion or an
elastic-perfectly-plastic analysis to 2% apparent strain. Calibrate in QCT Bone Density first.
"""
        self.parent.acknowledgementText = """
Built on 3D Slicer's scripted module template; computations are in the Slicer-free
<code>boneqct</code> package.
"""


@parameterNodeWrapper
class FiniteElementParameterNode:
    """The module's state, saved with the scene.

    inputVolume - CT volume in HU.
    calibrationTable - calibration table made by QCT Bone Density.
    seeds - markups point list, one point per level named by the level.
    level - the level analysed.
    elementMm, law, criterion - the model (see boneqct.fe).
    patientSex - for the fragile-bone-strength flag.
    resultsTable, meshModel - results; colorBy - the field shown on the mesh.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    calibrationTable: vtkMRMLTableNode
    seeds: vtkMRMLMarkupsFiducialNode
    level: Annotated[str, Choice(LEVELS)] = "L1"
    elementMm: Annotated[float, WithinRange(0.5, 3.0)] = 1.0
    law: Annotated[str, Choice(LAWS)] = "morgan2003"
    criterion: Annotated[str, Choice(CRITERIA)] = "nonlinear"
    patientSex: Annotated[str, Choice(PATIENT_SEXES)] = "unknown"
    resultsTable: vtkMRMLTableNode
    meshModel: vtkMRMLModelNode
    colorBy: Annotated[str, Choice(COLOR_FIELDS)] = "effective_strain"


class FiniteElementWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: binds the .ui to the parameter node and forwards actions to the logic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        """Load the .ui, create the logic and connect the buttons (called once)."""
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/FiniteElement.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = FiniteElementLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.colorByComboBox.connect("currentIndexChanged(int)", self.onColorBy)
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

    def onSceneStartClose(self, caller, event) -> None:
        """The parameter node is about to be removed with the scene."""
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Recreate the parameter node if the module is shown while the scene is closed."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Make sure the parameter node exists and has an input volume if possible."""
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode) -> None:
        """Bind the GUI to ``inputParameterNode`` (a FiniteElementParameterNode or None)."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)

    def onApplyButton(self) -> None:
        """Build and solve the model of the selected level; show mesh, table and curve."""
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Finite-element analysis failed.", waitCursor=True):
            outputs = self.logic.run(
                p.inputVolume, p.calibrationTable, p.seeds, p.level, elementMm=p.elementMm,
                law=p.law, criterion=p.criterion,
                sex=None if p.patientSex == "unknown" else p.patientSex,
                tableNode=p.resultsTable, modelNode=p.meshModel, colorBy=p.colorBy)
            p.resultsTable = outputs["table"]
            p.meshModel = outputs["model"]
            slicer.modules.plots.logic().ShowChartInLayout(outputs["chart"])
            result = outputs["result"]
            flag = {True: " - FRAGILE BONE STRENGTH", False: "", None: ""}[result.fragile]
            self.ui.summaryLabel.text = (f"{result.level}: strength {result.strength_n:.0f} N "
                                         f"({result.criterion}), stiffness "
                                         f"{result.stiffness_n_mm:.0f} N/mm{flag}")

    def onColorBy(self, index) -> None:
        """Show the chosen field on the mesh."""
        p = self._parameterNode
        if p and p.meshModel and p.meshModel.GetMesh() is not None:
            from FiniteElementLib import color_model_by

            color_model_by(p.meshModel, p.colorBy)


class FiniteElementLogic(ScriptedLoadableModuleLogic):
    """Scene-level operations of the module, usable from the Python console without the GUI."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        """The module's parameter node, wrapped with typed fields."""
        return FiniteElementParameterNode(super().getParameterNode())

    def volumeFromNode(self, volumeNode):
        """The selected volume as a core ``boneqct.volume.Volume`` (voxels copied, IJK->RAS kept)."""
        from FiniteElementLib import volume_from_node

        return volume_from_node(volumeNode)

    def run(self, inputVolume, calibrationTable, seedsNode, level: str, elementMm: float = 1.0,
            law: str = "morgan2003", criterion: str = "nonlinear", sex=None, tableNode=None,
            modelNode=None, chartNode=None, colorBy: str = "effective_strain") -> dict:
        """Analyse ``level`` and write mesh, table and chart into the scene (see
        ``FiniteElementLib.run_fe``); returns {"result", "table", "model", "chart"}."""
        from FiniteElementLib import run_fe

        outputs = run_fe(inputVolume, calibrationTable, level, seeds_node=seedsNode,
                         element_mm=elementMm, law=law, criterion=criterion, sex=sex,
                         table_node=tableNode, model_node=modelNode, chart_node=chartNode,
                         color_by=colorBy)
        for warning in outputs["result"].warnings:
            logging.warning(f"BoneQCT FE: {warning}")
        return outputs


class FiniteElementTest(ScriptedLoadableModuleTest):
    """In-Slicer self-test on the digital phantom."""

    def setUp(self) -> None:
        """Start from an empty scene."""
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        """Run all tests of the module."""
        self.setUp()
        self.test_PhantomVolumeReachesTheCore()
        self.setUp()
        self.test_PhantomLevelStrength()

    def _phantom(self):
        from boneqct.phantoms import make_spine_phantom

        return make_spine_phantom()

    def test_PhantomVolumeReachesTheCore(self) -> None:
        """The logic hands the core exactly the voxels and geometry that are in the scene."""
        import numpy as np
        from FiniteElementLib import update_node_from_volume

        self.delayDisplay("Digital phantom through the scene")
        ct = self._phantom().volume
        node = update_node_from_volume(ct, name="phantom")
        volume = FiniteElementLogic().volumeFromNode(node)
        np.testing.assert_allclose(volume.ijk_to_ras, ct.ijk_to_ras, atol=1e-9)
        np.testing.assert_array_equal(volume.array_kji, ct.array_kji)
        self.delayDisplay("Test passed")

    def test_PhantomLevelStrength(self) -> None:
        """L3 (200 mg/cm3) of the phantom is stronger than L1 (50 mg/cm3)."""
        from FiniteElementLib import update_node_from_volume
        from QCTBoneDensityLib import calibration_to_table_node

        from boneqct.calibration import manual_calibration

        self.delayDisplay("Finite elements on the digital phantom")
        phantom = self._phantom()
        node = update_node_from_volume(phantom.volume, name="phantom")
        cal = phantom.truth["calibration"]
        table = calibration_to_table_node(manual_calibration(cal["slope_hu_per_mg_cm3"],
                                                             cal["intercept_hu"]))
        seeds = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seeds")
        for v in phantom.truth["vertebrae"]:
            seeds.AddControlPoint(*v["body_center_ras_mm"], v["level"])
        logic = FiniteElementLogic()
        strengths = [logic.run(node, table, seeds, level, elementMm=2.0, criterion="linear")
                     ["result"].strength_n for level in ("L1", "L3")]
        self.assertLess(strengths[0], strengths[1])
        self.delayDisplay("Test passed")

"""Finite Element: vertebral strength (N) and stiffness (N/mm) from voxel finite-element models
of calibrated QCT, and the proximal femur's in a sideways fall.

The module only moves data between the scene and the Slicer-free ``boneqct.fe`` core: it reads
MRML nodes (through ``FiniteElementLib``), calls the core, and writes nodes back: the mesh as a
model node coloured by a strain or stress field, a results table with units, and the
load-displacement chart; and it exports fe.json, fe.vtu and fe_report.pdf through the core,
from the results table (also after the scene is saved and reloaded).
"""

from typing import Annotated, Union

import slicer
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleLogic

from BoneQCTLib import widgets
from BoneQCTLib.logic import CalibrationLogicMixin, logWarnings

# boneqct is imported only inside the logic's methods (its dependencies may still have to be
# installed when Slicer loads this file).

#: Levels offered (as boneqct.spine.levels.LEVEL_NAMES, lumbar and low thoracic).
LEVELS = ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]
#: Vertebra label numberings (as boneqct.spine.levels.LABEL_SCHEMES; checked by the tests).
LABEL_SCHEMES = ["totalsegmentator", "verse"]
#: Density-modulus laws (as boneqct.fe.materials.LAWS).
LAWS = ["morgan2003", "kopperdahl2002", "crawford2003"]
#: Strength criteria (as boneqct.fe.analysis.CRITERIA).
CRITERIA = ["nonlinear", "linear", "pistoia"]
#: Femur sides (as boneqct.fe.femur.analyze_femur_fall's ``side``).
FEMUR_SIDES = ["left", "right"]
#: Element fields to colour the mesh by (as FiniteElementLib.COLOR_FIELDS).
COLOR_FIELDS = ["effective_strain", "min_principal_strain", "max_principal_strain",
                "axial_strain", "von_mises_mpa", "sed_mpa", "modulus_mpa", "bmd_mg_cm3",
                "yielded"]


class FiniteElement(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        widgets.describeModule(self.parent, "Finite Element", """
Vertebral strength (N) and stiffness (N/mm) from voxel finite-element models of calibrated QCT:
cubic elements in the body's axis frame, density-modulus law of choice, PMMA endplate layers,
axial compression; strength by an elastic-plastic analysis (return mapping, Drucker-Prager)
to 2% apparent strain (the default), the linear 0.68% rule or the Pistoia criterion; and the
proximal femur's sideways-fall strength (section "Femur sideways fall"). Calibrate in QCT Bone
Density first.
""")


@parameterNodeWrapper
class FiniteElementParameterNode:
    """The module's state, saved with the scene.

    inputVolume - CT volume in HU.
    calibrationTable - calibration table made by QCT Bone Density.
    seeds - markups point list, one point per level named by the level; or
    vertebraLabels - vertebra label map or segmentation, numbered by ``labelScheme`` (give one
    of the two).
    level - the level analysed.
    elementMm, law, criterion - the model (see boneqct.fe).
    patientSex - for the fragile-bone-strength flag.
    resultsTable, meshModel - results; colorBy - the field shown on the mesh.
    anonymizeReport - leave the patient's identity out of the exported report.
    Femur sideways fall (same CT, calibration, sex and law): femurSide; femurSeed (optional
    point list, first point in the femoral head) or femurLabels (femur label map or
    segmentation, TotalSegmentator numbering); femurElementMm; femurResultsTable and
    femurMeshModel - results.
    """

    inputVolume: slicer.vtkMRMLScalarVolumeNode
    calibrationTable: slicer.vtkMRMLTableNode
    seeds: slicer.vtkMRMLMarkupsFiducialNode
    vertebraLabels: Union[slicer.vtkMRMLLabelMapVolumeNode, slicer.vtkMRMLSegmentationNode]  # noqa: UP007
    labelScheme: Annotated[str, Choice(LABEL_SCHEMES)] = "totalsegmentator"
    level: Annotated[str, Choice(LEVELS)] = "L1"
    elementMm: Annotated[float, WithinRange(0.5, 5.0)] = 1.0
    law: Annotated[str, Choice(LAWS)] = "kopperdahl2002"
    criterion: Annotated[str, Choice(CRITERIA)] = "nonlinear"
    patientSex: Annotated[str, Choice(widgets.PATIENT_SEXES)] = "unknown"
    resultsTable: slicer.vtkMRMLTableNode
    meshModel: slicer.vtkMRMLModelNode
    colorBy: Annotated[str, Choice(COLOR_FIELDS)] = "effective_strain"
    anonymizeReport: bool = False
    femurSide: Annotated[str, Choice(FEMUR_SIDES)] = "left"
    femurSeed: slicer.vtkMRMLMarkupsFiducialNode
    femurLabels: Union[slicer.vtkMRMLLabelMapVolumeNode, slicer.vtkMRMLSegmentationNode]  # noqa: UP007
    femurElementMm: Annotated[float, WithinRange(0.5, 5.0)] = 1.5
    femurResultsTable: slicer.vtkMRMLTableNode
    femurMeshModel: slicer.vtkMRMLModelNode


def feOptionsFromParameterNode(parameterNode):
    """The ``boneqct.fe.options.FEOptions`` set in the parameter node (the options it has no
    field for keep the core's defaults)."""
    from boneqct.fe.options import FEOptions

    return FEOptions(element_mm=parameterNode.elementMm, law=parameterNode.law,
                     criterion=parameterNode.criterion, label_scheme=parameterNode.labelScheme)


def femurOptionsFromParameterNode(parameterNode):
    """The ``boneqct.fe.femur.FemurFEOptions`` set in the parameter node (element size and the
    law shared with the vertebra; the other options keep the core's defaults)."""
    from boneqct.fe.femur import FemurFEOptions

    return FemurFEOptions(element_mm=parameterNode.femurElementMm, law=parameterNode.law)


class FiniteElementWidget(widgets.ModuleWidget):
    """The module panel: binds the .ui to the parameter node and forwards actions to the logic."""

    def setup(self) -> None:
        """Load the .ui, create the logic and connect the buttons (called once)."""
        super().setup()
        self.loadModuleUI("FiniteElement.ui", FiniteElementLogic(), {
            "applyButton": self.onApplyButton, "exportReportButton": self.onExportReportButton,
            "femurApplyButton": self.onFemurApplyButton,
            "exportFemurReportButton": self.onExportFemurReportButton})
        self.ui.colorByComboBox.connect("currentIndexChanged(int)", self.onColorBy)

    def _updateState(self, caller=None, event=None) -> None:
        """Enable Apply and Export when they can act; show the results summary."""
        p = self._parameterNode
        if p is None:
            return
        self.ui.labelSchemeComboBox.enabled = p.vertebraLabels is not None
        calibrated = self.logic.hasCalibration(p.calibrationTable)
        bodyInputs = (p.seeds is not None) + (p.vertebraLabels is not None)
        self.offerAction(self.ui.applyButton,
                         p.inputVolume is not None and calibrated and bodyInputs == 1,
                         "Delineate the body, build and solve the model",
                         "Give either seed points or vertebra labels, not both" if bodyInputs == 2
                         else "Select a CT volume, a calibration table (QCT Bone Density), and "
                              "seed points or vertebra labels")
        self.ui.summaryLabel.text = self.logic.feSummary(p.resultsTable)
        canExport = self.logic.canExportReport(p.resultsTable)
        self.offerAction(self.ui.exportReportButton, canExport,
                         "Write fe.json, fe.vtu and fe_report.pdf into a folder",
                         "Apply first (the report is written from the results table)")
        femurInputs = (p.femurSeed is not None) + (p.femurLabels is not None)
        self.offerAction(self.ui.femurApplyButton,
                         p.inputVolume is not None and calibrated and femurInputs < 2,
                         "Extract the femur, build and solve the sideways-fall model",
                         "Give a head seed or femur labels, not both" if femurInputs == 2
                         else "Select a CT volume and a calibration table (QCT Bone Density)")
        self.ui.femurSummaryLabel.text = self.logic.femurSummary(p.femurResultsTable)
        self.offerAction(self.ui.exportFemurReportButton,
                         self.logic.canExportFemurReport(p.femurResultsTable),
                         "Write fe_hip.json and fe_hip_report.pdf into a folder",
                         "Compute femur strength first (the report is written from its table)")

    @widgets.moduleAction("Finite-element analysis failed.")
    def onApplyButton(self) -> None:
        """Build and solve the model of the selected level; show mesh, table and curve."""
        p = self._parameterNode
        outputs = self.logic.run(
            p.inputVolume, p.calibrationTable, p.seeds, p.level, feOptionsFromParameterNode(p),
            sex=widgets.patientSexOrNone(p.patientSex),
            tableNode=p.resultsTable, modelNode=p.meshModel, colorBy=p.colorBy,
            labelsNode=p.vertebraLabels)
        p.resultsTable = outputs["table"]
        p.meshModel = outputs["model"]
        slicer.modules.plots.logic().ShowChartInLayout(outputs["chart"])
        # the 3D view centres on the mesh
        slicer.app.layoutManager().threeDWidget(0).threeDView().resetFocalPoint()
        self._updateState()

    @widgets.moduleAction("Writing the finite-element report failed.",
                  askFolder="Export finite-element report")
    def onExportReportButton(self, folder: str) -> None:
        """Write fe.json, fe.vtu and fe_report.pdf into the chosen folder."""
        p = self._parameterNode
        paths = self.logic.exportReport(folder, p.resultsTable, anonymize=p.anonymizeReport)
        slicer.util.showStatusMessage(f"Finite-element report written to {paths['report']}", 5000)

    @widgets.moduleAction("Femur finite-element analysis failed.")
    def onFemurApplyButton(self) -> None:
        """Build and solve the sideways-fall model of the selected femur; show mesh and table."""
        p = self._parameterNode
        outputs = self.logic.runFemur(
            p.inputVolume, p.calibrationTable, p.femurSide, femurOptionsFromParameterNode(p),
            seedNode=p.femurSeed, labelsNode=p.femurLabels,
            sex=widgets.patientSexOrNone(p.patientSex),
            tableNode=p.femurResultsTable, modelNode=p.femurMeshModel, colorBy=p.colorBy)
        p.femurResultsTable = outputs["table"]
        p.femurMeshModel = outputs["model"]
        slicer.app.layoutManager().threeDWidget(0).threeDView().resetFocalPoint()
        self._updateState()

    @widgets.moduleAction("Writing the femur finite-element report failed.",
                          askFolder="Export femur finite-element report")
    def onExportFemurReportButton(self, folder: str) -> None:
        """Write fe_hip.json and fe_hip_report.pdf into the chosen folder."""
        p = self._parameterNode
        paths = self.logic.exportFemurReport(folder, p.femurResultsTable,
                                             anonymize=p.anonymizeReport)
        slicer.util.showStatusMessage(f"Femur finite-element report written to {paths['report']}",
                                      5000)

    def onColorBy(self, index) -> None:
        """Show the chosen field on the mesh."""
        p = self._parameterNode
        if p and p.meshModel and p.meshModel.GetMesh() is not None:
            from FiniteElementLib.fe import color_model_by

            color_model_by(p.meshModel, p.colorBy)


class FiniteElementLogic(CalibrationLogicMixin, ScriptedLoadableModuleLogic):
    """Scene-level operations of the module, usable from the Python console without the GUI."""

    def getParameterNode(self):
        """The module's parameter node, wrapped with typed fields."""
        return FiniteElementParameterNode(super().getParameterNode())

    def run(self, inputVolume, calibrationTable, seedsNode, level: str, options=None, *, sex=None,
            tableNode=None, modelNode=None, chartNode=None, colorBy: str = "effective_strain",
            labelsNode=None) -> dict:
        """Analyse ``level`` with ``options`` (an ``FEOptions``; None: the defaults) and write
        mesh, table and chart into the scene (see ``FiniteElementLib.run_fe``); returns
        {"result", "table", "model", "chart"}.

        The body comes from ``seedsNode`` (points named by level) or from ``labelsNode``
        (vertebra label map or segmentation in ``options.label_scheme`` numbering); give one.
        """
        from FiniteElementLib.fe import run_fe

        outputs = run_fe(inputVolume, calibrationTable, level, options, seeds_node=seedsNode,
                         labels_node=labelsNode, sex=sex, table_node=tableNode,
                         model_node=modelNode, chart_node=chartNode, color_by=colorBy)
        logWarnings("FE", outputs["result"])
        return outputs

    def feSummary(self, tableNode) -> str:
        """Strength, stiffness and fragile flag of a results table (empty if none)."""
        from FiniteElementLib.fe import fe_summary_text

        return fe_summary_text(tableNode)

    def canExportReport(self, tableNode) -> bool:
        """Whether ``tableNode`` holds a finite-element result (all the report needs)."""
        from FiniteElementLib.fe import can_export_fe_report

        return can_export_fe_report(tableNode)

    def exportReport(self, folder, tableNode, anonymize: bool = False) -> dict:
        """Write fe.json, fe.vtu and fe_report.pdf of the result held by ``tableNode`` into
        ``folder`` (also after the scene was saved and reloaded); returns the paths by key
        "json", "vtu", "report"."""
        from FiniteElementLib.fe import export_fe_report

        return export_fe_report(folder, tableNode, anonymize=anonymize)

    def runFemur(self, inputVolume, calibrationTable, side: str, options=None, *, seedNode=None,
                 labelsNode=None, sex=None, tableNode=None, modelNode=None,
                 colorBy: str = "effective_strain") -> dict:
        """Sideways-fall strength of the ``side`` femur with ``options`` (a ``FemurFEOptions``;
        None: the defaults), found from ``seedNode``'s first point, ``labelsNode`` or
        automatically; mesh and table into the scene (see ``FiniteElementLib.femur.run_fe_hip``).
        Returns {"result", "table", "model"}."""
        from FiniteElementLib.femur import run_fe_hip

        outputs = run_fe_hip(inputVolume, calibrationTable, side, options, seed_node=seedNode,
                             labels_node=labelsNode, sex=sex, table_node=tableNode,
                             model_node=modelNode, color_by=colorBy)
        logWarnings("FE hip", outputs["result"])
        return outputs

    def femurSummary(self, tableNode) -> str:
        """Side, strength and stiffness of a femur results table (empty if none)."""
        from FiniteElementLib.femur import fe_hip_summary_text

        return fe_hip_summary_text(tableNode)

    def canExportFemurReport(self, tableNode) -> bool:
        """Whether ``tableNode`` holds a femur sideways-fall result."""
        from FiniteElementLib.femur import can_export_fe_hip_report

        return can_export_fe_hip_report(tableNode)

    def exportFemurReport(self, folder, tableNode, anonymize: bool = False) -> dict:
        """Write fe_hip.json and fe_hip_report.pdf of the femur result held by ``tableNode``
        into ``folder``; returns the paths by key "json" and "report"."""
        from FiniteElementLib.femur import export_fe_hip_report

        return export_fe_hip_report(folder, tableNode, anonymize=anonymize)


class FiniteElementTest(widgets.ModuleTest):
    """In-Slicer self-test on the digital phantom."""

    def _phantom(self):
        from boneqct.phantoms import make_spine_phantom

        return make_spine_phantom()

    def _phantomInScene(self):
        """The phantom, its CT node and a calibration table with the phantom's true line."""
        from boneqct.calibration import manual_calibration
        from BoneQCTLib.calibration import calibration_to_table_node
        from BoneQCTLib.volumes import update_node_from_volume

        phantom = self._phantom()
        node = update_node_from_volume(phantom.volume, name="phantom")
        cal = phantom.truth["calibration"]
        table = calibration_to_table_node(manual_calibration(cal["slope_hu_per_mg_cm3"],
                                                             cal["intercept_hu"]))
        return phantom, node, table

    def test_PhantomVolumeReachesTheCore(self) -> None:
        """The logic hands the core exactly the voxels and geometry that are in the scene."""
        import numpy as np

        from BoneQCTLib.volumes import update_node_from_volume

        self.delayDisplay("Digital phantom through the scene")
        ct = self._phantom().volume
        node = update_node_from_volume(ct, name="phantom")
        volume = FiniteElementLogic().volumeFromNode(node)
        np.testing.assert_allclose(volume.ijk_to_ras, ct.ijk_to_ras, atol=1e-9)
        np.testing.assert_array_equal(volume.array_kji, ct.array_kji)
        self.delayDisplay("Test passed")

    def test_PhantomLevelStrength(self) -> None:
        """L3 (200 mg/cm3) of the phantom is stronger than L1 (50 mg/cm3)."""
        from boneqct.fe.options import FEOptions

        self.delayDisplay("Finite elements on the digital phantom")
        phantom, node, table = self._phantomInScene()
        seeds = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seeds")
        for v in phantom.truth["vertebrae"]:
            seeds.AddControlPoint(*v["body_center_ras_mm"], v["level"])
        logic = FiniteElementLogic()
        options = FEOptions(element_mm=2.0, criterion="linear")
        strengths = [logic.run(node, table, seeds, level, options)["result"].strength_n
                     for level in ("L1", "L3")]
        self.assertLess(strengths[0], strengths[1])
        self.delayDisplay("Test passed")

    def test_PhantomLabelMapAndReport(self) -> None:
        """A vertebra label map gives the body; the report writes fe.json, fe.vtu and
        fe_report.pdf."""
        import tempfile

        import numpy as np

        from boneqct.fe.options import FEOptions
        from boneqct.spine.levels import label_for_level
        from BoneQCTLib.volumes import update_node_from_volume

        self.delayDisplay("Finite elements from a vertebra label map, and the report")
        phantom, node, table = self._phantomInScene()
        labels = np.zeros(phantom.labels.array_kji.shape, np.uint8)
        for v in phantom.truth["vertebrae"]:
            labels[phantom.labels.array_kji == v["label"]] = label_for_level(v["level"], "verse")
        labelsNode = update_node_from_volume(phantom.labels.with_array(labels), name="vertebrae",
                                             node_class="vtkMRMLLabelMapVolumeNode")
        logic = FiniteElementLogic()
        outputs = logic.run(node, table, None, "L2",
                            FEOptions(element_mm=2.0, criterion="linear", label_scheme="verse"),
                            labelsNode=labelsNode)
        self.assertGreater(outputs["result"].strength_n, 0.0)
        self.assertTrue(logic.feSummary(outputs["table"]).startswith("L2: strength"))
        self.assertTrue(logic.canExportReport(outputs["table"]))
        with tempfile.TemporaryDirectory() as folder:
            paths = logic.exportReport(folder, outputs["table"], anonymize=True)
            for key in ("json", "vtu", "report"):
                self.assertTrue(paths[key].is_file())
        self.delayDisplay("Test passed")

    def test_PhantomFemurFall(self) -> None:
        """The femur phantom's left femur has a sideways-fall strength; its report is written
        from the results table."""
        import tempfile

        from boneqct.calibration import manual_calibration
        from boneqct.fe.femur import FemurFEOptions
        from boneqct.phantoms.femur import make_femur_phantom
        from BoneQCTLib.calibration import calibration_to_table_node
        from BoneQCTLib.volumes import update_node_from_volume

        self.delayDisplay("Femur sideways fall on the digital femur phantom")
        phantom = make_femur_phantom()
        line = phantom.truth["calibration"]
        node = update_node_from_volume(phantom.volume, name="femur phantom")
        table = calibration_to_table_node(manual_calibration(line["slope_hu_per_mg_cm3"],
                                                             line["intercept_hu"]))
        seed = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "head")
        seed.AddControlPoint(*phantom.truth["femurs"][0]["head_center_ras_mm"], "head")
        logic = FiniteElementLogic()
        outputs = logic.runFemur(node, table, "left", FemurFEOptions(element_mm=2.0),
                                 seedNode=seed, sex="F")
        self.assertGreater(outputs["result"].strength_n, 0.0)
        self.assertTrue(logic.femurSummary(outputs["table"]).startswith("left femur"))
        self.assertTrue(logic.canExportFemurReport(outputs["table"]))
        self.assertFalse(logic.canExportReport(outputs["table"]))
        with tempfile.TemporaryDirectory() as folder:
            paths = logic.exportFemurReport(folder, outputs["table"], anonymize=True)
            for key in ("json", "report"):
                self.assertTrue(paths[key].is_file())
        self.delayDisplay("Test passed")

"""Hip CTXA: DXA-equivalent areal BMD (g/cm2) of the proximal femur from calibrated CT, with
femoral neck, trochanter, intertrochanter and total hip regions (Cann et al. 2014).

The module only moves data between the scene and the Slicer-free ``boneqct`` core: it reads
MRML nodes (through ``HipCTXALib``), calls ``boneqct.hip``, and writes nodes back. The widget's
sections follow the CTXA workflow: input, calibration, extraction, rotation, ROIs, results,
report.
"""

from pathlib import Path
from typing import Annotated, Union

import slicer
import vtk
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleLogic

from BoneQCTLib import widgets
from BoneQCTLib.logic import CalibrationLogicMixin, logWarnings

# boneqct and HipCTXALib are imported only inside the logic's methods: the core's Python
# dependencies may still have to be installed (BoneQCTLib.dependencies) when Slicer
# loads this file.

SIDES = ["left", "right"]

#: Femur label numberings (as boneqct.hip.extraction.FEMUR_LABELS; checked by the tests).
LABEL_SCHEMES = ["totalsegmentator", "phantom"]

#: DXA reference populations (as boneqct.hip.interpret.REFERENCE_SETS, plus none).
REFERENCE_POPULATIONS = ["nhanes3", "chinese-women", "none"]


#
# HipCTXA
#


class HipCTXA(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        widgets.describeModule(self.parent, "Hip CTXA", """
DXA-equivalent areal BMD (g/cm2) of the proximal femur from calibrated CT (CTXA, Cann et al.
2014). The chosen femur is extracted (or taken from a seed point or a TotalSegmentator label
map), its anatomical frame fitted, it is rotated to the DXA position and its mineral projected
antero-posteriorly; Hologic-style regions give the femoral neck, trochanter, intertrochanter
and total hip aBMD, vBMD, BMC, area and volume, with T-scores against DXA reference data and the
WHO category. The computations are done by the Slicer-free <code>boneqct</code> package, which
also has a command line (<code>boneqct hip</code>).
""")
        # the digital femur phantom in Sample Data, made locally when chosen
        if not slicer.app.commandOptions().noMainWindow:
            slicer.app.connect("startupCompleted()", lambda: widgets.registerSampleData(
                "femur", str(Path(__file__).parent / "Resources" / "Icons" / "HipCTXA.png")))


#
# HipCTXAParameterNode
#


@parameterNodeWrapper
class HipCTXAParameterNode(widgets.CalibrationParameters):
    """The module's state, saved with the scene.

    Input: inputVolume (CT in HU), side, optional seedPoints (first point in the femoral head)
    or femurLabels (label map / segmentation in labelScheme numbering).
    Calibration: the fields of ``BoneQCTLib.widgets.CalibrationParameters`` (the shared
    section); calibrationTable holds the calibration (made here or by QCT Bone Density).
    Outputs per step: femurSegmentation (extraction), dxaTransform and rotatedVolume
    (rotation; makeRotatedVolume to resample), projectionVolume and roiLabelmap (ROIs; pixelMm,
    neckBoxWidthMm, neckCenterMm (0: automatic), distalBorderBelowHeadMm), resultsTable
    (results; referencePopulation, patientSex, patientAgeYears (0: unknown)).
    Report: anonymizeReport.
    """

    inputVolume: slicer.vtkMRMLScalarVolumeNode
    side: Annotated[str, Choice(SIDES)] = "left"
    seedPoints: slicer.vtkMRMLMarkupsFiducialNode
    femurLabels: Union[slicer.vtkMRMLLabelMapVolumeNode, slicer.vtkMRMLSegmentationNode]  # noqa: UP007
    labelScheme: Annotated[str, Choice(LABEL_SCHEMES)] = "totalsegmentator"

    femurSegmentation: slicer.vtkMRMLSegmentationNode
    dxaTransform: slicer.vtkMRMLLinearTransformNode
    makeRotatedVolume: bool = True
    rotatedVolume: slicer.vtkMRMLScalarVolumeNode

    pixelMm: Annotated[float, WithinRange(0.2, 2.0)] = 0.5
    neckBoxWidthMm: Annotated[float, WithinRange(5.0, 30.0)] = 15.0
    neckCenterMm: Annotated[float, WithinRange(0.0, 120.0)] = 0.0
    distalBorderBelowHeadMm: Annotated[float, WithinRange(30.0, 150.0)] = 85.0
    projectionVolume: slicer.vtkMRMLScalarVolumeNode
    roiLabelmap: slicer.vtkMRMLLabelMapVolumeNode

    referencePopulation: Annotated[str, Choice(REFERENCE_POPULATIONS)] = "nhanes3"
    patientSex: Annotated[str, Choice(widgets.PATIENT_SEXES)] = "unknown"
    patientAgeYears: Annotated[float, WithinRange(0.0, 130.0)] = 0.0
    resultsTable: slicer.vtkMRMLTableNode

    anonymizeReport: bool = False


def hipOptionsFromParameterNode(parameterNode):
    """The ``boneqct.hip.options.HipOptions`` set in the parameter node (the options it has no
    field for keep the core's defaults)."""
    from boneqct.hip.options import HipOptions

    return HipOptions(label_scheme=parameterNode.labelScheme, pixel_mm=parameterNode.pixelMm,
                      neck_box_width_mm=parameterNode.neckBoxWidthMm,
                      neck_center_s_mm=parameterNode.neckCenterMm,
                      distal_border_below_head_mm=parameterNode.distalBorderBelowHeadMm)


#
# HipCTXAWidget
#


class HipCTXAWidget(widgets.CalibratingModuleWidget):
    """The module panel: binds the .ui to the parameter node and forwards actions to the logic."""

    def setup(self) -> None:
        """Load the .ui with the shared calibration section, create the logic and connect the
        buttons (called once)."""
        super().setup()
        self.loadModuleUI("HipCTXA.ui", HipCTXALogic(), {
            "applyButton": self.onApplyButton,
            "exportReportButton": self.onExportReportButton})

    def _updateState(self, caller=None, event=None) -> None:
        """Enable what can act on the current selection; show calibration, frame and results."""
        p = self._parameterNode
        if p is None:
            return
        self.updateCalibrationSection()
        self.ui.labelSchemeComboBox.enabled = p.femurLabels is not None
        self.ui.rotatedVolumeSelector.enabled = p.makeRotatedVolume

        calibrated = self.logic.hasCalibration(p.calibrationTable)
        both = p.seedPoints is not None and p.femurLabels is not None
        self.offerAction(self.ui.applyButton, p.inputVolume is not None and calibrated and not both,
                         "Extract, rotate, project and measure the hip",
                         "Give either a seed point or femur labels, not both" if both
                         else "Select a CT volume and calibrate first (CTXA needs BMD)")
        self.ui.resultsTableView.setMRMLTableNode(p.resultsTable)
        self.ui.resultsSummaryLabel.text = self.logic.hipSummary(p.resultsTable)
        self.ui.frameSummaryLabel.text = self.logic.frameSummary(p.resultsTable)
        canExport = self.logic.canExportReport(p.resultsTable)
        self.offerAction(self.ui.exportReportButton, canExport,
                         "Write hip.json, hip.csv, the projection and hip_report.pdf into a folder",
                         "Measure the hip first (the report needs the results table with its "
                         "projection and regions)")

    @widgets.moduleAction("Hip analysis failed.")
    def onApplyButton(self) -> None:
        """Run the hip analysis and show its nodes (projection with regions, femur, table)."""
        p = self._parameterNode
        outputs = self.logic.runHip(
            p.inputVolume, p.calibrationTable, p.side, hipOptionsFromParameterNode(p),
            seedNode=p.seedPoints, labelsNode=p.femurLabels,
            population=None if p.referencePopulation == "none" else p.referencePopulation,
            sex=widgets.patientSexOrNone(p.patientSex),
            ageYears=widgets.patientAgeOrNone(p.patientAgeYears),
            tableNode=p.resultsTable, segmentationNode=p.femurSegmentation,
            transformNode=p.dxaTransform, projectionNode=p.projectionVolume,
            roiLabelmapNode=p.roiLabelmap, rotatedVolumeNode=p.rotatedVolume,
            makeRotatedVolume=p.makeRotatedVolume)
        p.resultsTable = outputs["table"]
        p.femurSegmentation = outputs["segmentation"]
        p.dxaTransform = outputs["transform"]
        p.projectionVolume = outputs["projection"]
        p.roiLabelmap = outputs["roi_labelmap"]
        if outputs["rotated_volume"] is not None:
            p.rotatedVolume = outputs["rotated_volume"]
        # the projection with its regions, like a DXA printout
        slicer.util.setSliceViewerLayers(background=outputs["projection"],
                                         label=outputs["roi_labelmap"], fit=True)
        self._updateState()

    @widgets.moduleAction("Writing the hip report failed.", askFolder="Export hip report")
    def onExportReportButton(self, folder: str) -> None:
        """Write the hip outputs and report into the chosen folder."""
        p = self._parameterNode
        paths = self.logic.exportReport(folder, p.resultsTable, anonymize=p.anonymizeReport)
        slicer.util.showStatusMessage(f"Hip report written to {paths['report']}", 5000)


#
# HipCTXALogic
#


class HipCTXALogic(CalibrationLogicMixin, ScriptedLoadableModuleLogic):
    """Scene-level operations of the module, usable from the Python console without the GUI.

    Each method reads nodes, calls ``boneqct``, and writes nodes; nothing is computed here.
    """

    def getParameterNode(self):
        """The module's parameter node, wrapped with typed fields."""
        return HipCTXAParameterNode(super().getParameterNode())

    def runHip(self, inputVolume, calibrationTable, side: str = "left", options=None, *,
               seedNode=None, labelsNode=None, population="nhanes3", sex=None, ageYears=None,
               tableNode=None, segmentationNode=None, transformNode=None, projectionNode=None,
               roiLabelmapNode=None, rotatedVolumeNode=None, makeRotatedVolume: bool = True) -> dict:
        """Measure one hip of ``inputVolume`` with ``options`` (a ``HipOptions``; None: the
        defaults) and write the results into the scene.

        Returns the dict of ``HipCTXALib.run_hip``: "result", "volume", "table",
        "segmentation", "transform", "projection", "roi_labelmap", "rotated_volume".
        """
        from HipCTXALib.hip import run_hip

        outputs = run_hip(
            inputVolume, calibrationTable, side, options, seed_node=seedNode,
            labels_node=labelsNode, population=population, sex=sex, age_years=ageYears,
            table_node=tableNode, segmentation_node=segmentationNode,
            transform_node=transformNode, projection_node=projectionNode,
            roi_labelmap_node=roiLabelmapNode, rotated_volume_node=rotatedVolumeNode,
            rotated_volume=makeRotatedVolume)
        logWarnings("hip", outputs["result"])
        return outputs

    def hipSummary(self, tableNode) -> str:
        """Neck and total-hip aBMD, T-scores, WHO category and frame of a results table."""
        from HipCTXALib.hip import hip_summary_text

        return hip_summary_text(tableNode)

    def frameSummary(self, tableNode) -> str:
        """The anatomical frame's angles stored on a results table (empty if none)."""
        from HipCTXALib.hip import hip_frame_text

        return hip_frame_text(tableNode)

    def canExportReport(self, tableNode) -> bool:
        """Whether ``tableNode`` holds a hip result with its projection and region volumes."""
        from HipCTXALib.hip import can_export_hip_report

        return can_export_hip_report(tableNode)

    def exportReport(self, folder, tableNode, anonymize: bool = False) -> dict:
        """Write hip.json, hip.csv, the projection (NIfTI, PNG) and hip_report.pdf of the result
        held by ``tableNode`` into ``folder`` (also after the scene was saved and reloaded)."""
        from HipCTXALib.hip import export_hip_report

        return export_hip_report(folder, tableNode, anonymize=anonymize)


#
# HipCTXATest
#


class HipCTXATest(widgets.ModuleTest):
    """In-Slicer self-test: the digital femur phantom through the module end to end."""

    def test_FemurPhantomEndToEnd(self) -> None:
        """Phantom -> nodes -> manual calibration -> hip; neck aBMD within 2% of the analytic
        value, table with units, projection, regions, transform, segmentation and report."""
        import tempfile

        import numpy as np

        from boneqct.phantoms.femur import make_femur_phantom
        from BoneQCTLib.volumes import update_node_from_volume

        self.delayDisplay("Hip CTXA on the digital femur phantom")
        phantom = make_femur_phantom()
        inputVolume = update_node_from_volume(phantom.volume, name="femur phantom")
        logic = HipCTXALogic()
        line = phantom.truth["calibration"]
        calibrationTable = logic.calibrateManually(line["slope_hu_per_mg_cm3"], line["intercept_hu"],
                                                   "K2HPO4")
        self.assertTrue(logic.hasCalibration(calibrationTable))

        outputs = logic.runHip(inputVolume, calibrationTable, "left", sex="F")
        result, table = outputs["result"], outputs["table"]
        self.assertEqual(table.GetNumberOfRows(), 4)
        self.assertEqual(table.GetColumnUnitLabel("aBMD (g/cm2)"), "g/cm2")
        neck = table.GetTable().GetColumnByName("aBMD (g/cm2)").GetValue(0)
        self.assertEqual(neck, result.rois["neck"]["abmd_g_cm2"])
        self.assertLess(abs(neck - phantom.truth["neck_abmd_g_cm2"]), 0.02 * phantom.truth["neck_abmd_g_cm2"])
        projection = slicer.util.arrayFromVolume(outputs["projection"])
        self.assertEqual(projection.shape, (1, *result.projection.bmc_g.shape))
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(outputs["roi_labelmap"])[0],
                                      result.roi_labels)
        matrix = vtk.vtkMatrix4x4()
        outputs["transform"].GetMatrixTransformToParent(matrix)
        np.testing.assert_allclose(slicer.util.arrayFromVTKMatrix(matrix),
                                   result.frame.dxa_rotation_ras(), atol=1e-12)
        self.assertEqual(outputs["segmentation"].GetSegmentation().GetNumberOfSegments(), 1)
        self.assertTrue(logic.hipSummary(table).startswith("Left hip: Femoral neck"))
        self.assertTrue(logic.canExportReport(table))
        with tempfile.TemporaryDirectory() as folder:
            paths = logic.exportReport(folder, table)
            self.assertTrue(paths["report"].is_file())
        self.delayDisplay("Hip CTXA passed")

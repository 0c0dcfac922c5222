"""QCT Bone Density: calibrate a CT scan (with its phantom, from the patient's own tissues, or
with known values), convert it to mineral density, measure the trabecular BMD of the lumbar
spine level by level and the tissue composition, and check the scanner with a QA phantom.

The module only moves data between the scene and the Slicer-free ``boneqct`` core: it reads
MRML nodes (through ``BoneQCTLib`` and ``QCTBoneDensityLib``), calls the core, and writes
nodes back.
"""

import functools
import logging
import pathlib
from importlib import resources
from typing import Annotated, Union

import slicer
import vtk
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleLogic

from BoneQCTLib import widgets
from BoneQCTLib.logic import CalibrationLogicMixin, logWarnings

# boneqct is imported only inside the logic's methods: its Python dependencies may still have
# to be installed when Slicer loads this file (every action first calls BoneQCTLib's
# ensure_python_packages).

#: QA phantoms offered: the nominal-value files bundled with boneqct (boneqct/data/qa).
QA_PHANTOM_TYPES = sorted(
    p.name[: -len(".json")]
    for p in (resources.files("boneqct") / "data" / "qa").iterdir()
    if p.name.endswith(".json")
)

#: Where the vertebral levels come from.
SPINE_INPUT_SEEDS = "Seed points"
SPINE_INPUT_LABELS = "Label map or segmentation"
SPINE_INPUT_MODES = [SPINE_INPUT_SEEDS, SPINE_INPUT_LABELS]

#: Levels seed points may name, cranial to caudal (as boneqct.spine.levels.VFA_LEVEL_NAMES;
#: checked by the tests): T11-L5 are measured (BMD and fractures), T4-T10 graded for
#: fractures only.
SEED_LEVEL_NAMES = ["T4", "T5", "T6", "T7", "T8", "T9", "T10",
                    "T11", "T12", "L1", "L2", "L3", "L4", "L5"]

#: Vertebra label numberings (as boneqct.spine.levels.LABEL_SCHEMES; checked by the tests).
LABEL_SCHEMES = ["totalsegmentator", "verse"]



#
# QCTBoneDensity
#


class QCTBoneDensity(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        widgets.describeModule(self.parent, "QCT Bone Density", """
Calibrates a CT scan to bone mineral density (mg/cm3) with the calibration phantom scanned
with the patient (Mindways Model 3, QRM-BDC 3/6, B-MAS 200) or with a known slope and
intercept, and converts the scan into a BMD map. The spine section places a trabecular ROI in
each vertebral body (from seed points named by level, or from a TotalSegmentator/VerSe label
map or segmentation) and reports the BMD per level (T11-L5), the diagnostic mean of the levels
used (L1-L2 by default), its ACR category, cement-augmentation flags and ROI quality checks, and
the vertebral fracture assessment (heights, Genant grade and type) of every level T4-L5 given.
Without a phantom, the internal calibration uses the patient's own air, subcutaneous fat and
paraspinal muscle (points can replace the automatic ROIs). The tissue section reports fat,
muscle, skin, cortical and cancellous mineral (mass, area, volume), subcutaneous and visceral
fat, bone densities and ratios, and the skeletal muscle area at L3. The QA section measures an
ESP-like phantom against its nominal values and appends the session to a QA log with drift flags.
The computations are done by the Slicer-free <code>boneqct</code> package, which also has a
command line.
""")
        # the digital spine phantom in Sample Data, made locally when chosen
        if not slicer.app.commandOptions().noMainWindow:
            slicer.app.connect("startupCompleted()", lambda: widgets.registerSampleData(
                "spine", str(pathlib.Path(__file__).parent / "Resources" / "Icons" / "QCTBoneDensity.png")))


#
# QCTBoneDensityParameterNode
#


@parameterNodeWrapper
class QCTBoneDensityParameterNode(widgets.CalibrationParameters):
    """The module's state, saved with the scene.

    inputVolume - CT volume in HU, with the calibration phantom in the field of view.
    Calibration: the fields of ``BoneQCTLib.widgets.CalibrationParameters`` (the shared
    section: method, phantom, internal points, manual line, calibrationTable).
    outputBmdVolume - BMD map (mg/cm3 of the calibration material).

    Spine (the calibration table above is used when it holds a calibration, else HU only):
    spineInputMode - levels from seed points or from a label map / segmentation.
    spineSeeds - markups point list, one point per level named by the level (T4 ... L5; T4-T10
        are assessed for fractures only); lowestSeedLevel - the lowest point's level when naming.
    spineLabels - vertebra label map or segmentation, numbered by ``labelScheme``.
    levelsUsed, excludedLevels - comma-separated levels of the diagnostic mean / left out.
    roiThicknessMm, roiMarginMm - ROI slab thickness and margin to the cortex (mm).
    cementThresholdMgCm3 - BMD below which a level is flagged for cement augmentation.
    patientAgeYears (0: unknown), patientSex - for T/Z-scores.
    spineTable, spineRoiLabelmap, spineRoiSegmentation, spineRoiCenters - results.

    Screw planning (every markups line of the scene is a planned screw, entry then tip):
    screwDiameterMm - thread diameter; screwTable - per-screw BMD, shell, segments, contact.

    Tissue composition (needs the calibration table):
    tissueWholeScan - analyse every slice, else slices tissueFirstSlice..tissueLastSlice (k).
    tissueL3Point - optional point in L3 (named L3, or the only point) for the muscle area.
    tissueTable, tissueMeasuresTable - compartments (mass, area, volume) and densities/ratios.
    tissueLabelmap - tissue classes on the CT grid (label map named by its colour table).

    QA phantom (uses the calibration table when it holds a calibration, else HU only):
    qaPhantomType - bundled nominal values; qaLogPath - the QA log CSV appended to;
    qaSession - session label (empty: the study date, else the current time); qaTable - inserts vs nominal with drift flags.
    """

    inputVolume: slicer.vtkMRMLScalarVolumeNode
    outputBmdVolume: slicer.vtkMRMLScalarVolumeNode

    spineInputMode: Annotated[str, Choice(SPINE_INPUT_MODES)] = SPINE_INPUT_SEEDS
    spineSeeds: slicer.vtkMRMLMarkupsFiducialNode
    lowestSeedLevel: Annotated[str, Choice(SEED_LEVEL_NAMES)] = "L4"
    spineLabels: Union[slicer.vtkMRMLLabelMapVolumeNode, slicer.vtkMRMLSegmentationNode]  # noqa: UP007
    labelScheme: Annotated[str, Choice(LABEL_SCHEMES)] = "totalsegmentator"
    levelsUsed: str = "L1,L2"
    excludedLevels: str = ""
    roiThicknessMm: Annotated[float, WithinRange(3.0, 20.0)] = 9.0
    roiMarginMm: Annotated[float, WithinRange(0.0, 10.0)] = 2.0
    cementThresholdMgCm3: Annotated[float, WithinRange(0.0, 300.0)] = 50.0
    patientAgeYears: Annotated[float, WithinRange(0.0, 130.0)] = 0.0
    patientSex: Annotated[str, Choice(widgets.PATIENT_SEXES)] = "unknown"
    spineTable: slicer.vtkMRMLTableNode
    spineRoiLabelmap: slicer.vtkMRMLLabelMapVolumeNode
    spineRoiSegmentation: slicer.vtkMRMLSegmentationNode
    spineRoiCenters: slicer.vtkMRMLMarkupsFiducialNode

    screwDiameterMm: Annotated[float, WithinRange(2.0, 12.0)] = 6.5
    screwTable: slicer.vtkMRMLTableNode

    tissueWholeScan: bool = True
    tissueFirstSlice: Annotated[int, WithinRange(0, 10000)] = 0
    tissueLastSlice: Annotated[int, WithinRange(0, 10000)] = 0
    tissueL3Point: slicer.vtkMRMLMarkupsFiducialNode
    tissueTable: slicer.vtkMRMLTableNode
    tissueMeasuresTable: slicer.vtkMRMLTableNode
    tissueLabelmap: slicer.vtkMRMLLabelMapVolumeNode

    qaPhantomType: Annotated[str, Choice(QA_PHANTOM_TYPES)] = "esp"
    qaLogPath: pathlib.Path
    qaSession: str = ""
    qaTable: slicer.vtkMRMLTableNode


def spineOptionsFromParameterNode(parameterNode):
    """The ``boneqct.spine.options.SpineOptions`` set in the parameter node (the options it has
    no field for keep the core's defaults)."""
    from QCTBoneDensityLib.spine import parse_levels

    from boneqct.spine.options import SpineOptions

    p = parameterNode
    return SpineOptions(
        levels_used=parse_levels(p.levelsUsed),
        exclude=parse_levels(p.excludedLevels) if p.excludedLevels.strip() else (),
        roi_thickness_mm=p.roiThicknessMm, margin_mm=p.roiMarginMm,
        cement_threshold_mg_cm3=p.cementThresholdMgCm3, label_scheme=p.labelScheme)


def screwOptionsFromParameterNode(parameterNode):
    """The ``boneqct.screw.options.ScrewOptions`` set in the parameter node (the options it has
    no field for keep the core's defaults)."""
    from boneqct.screw.options import ScrewOptions

    return ScrewOptions(diameter_mm=parameterNode.screwDiameterMm)


#
# QCTBoneDensityWidget
#


class QCTBoneDensityWidget(widgets.CalibratingModuleWidget):
    """The module panel: binds the .ui to the parameter node and forwards actions to the logic."""

    def setup(self) -> None:
        """Load the .ui with the shared calibration section, create the logic and connect the
        buttons (called once)."""
        super().setup()
        self.loadModuleUI("QCTBoneDensity.ui", QCTBoneDensityLogic(), {
            "convertButton": self.onConvertButton,
            "nameSeedsButton": self.onNameSeedsButton,
            "detectSeedsButton": self.onDetectSeedsButton,
            "spineApplyButton": self.onSpineApplyButton,
            "exportReportButton": self.onExportReportButton,
            "recomputeGradesButton": self.onRecomputeGradesButton,
            "showSagittalButton": self.onShowSagittalButton,
            "screwApplyButton": self.onScrewApplyButton,
            "tissueApplyButton": self.onTissueApplyButton,
            "tissueExportReportButton": self.onTissueExportReportButton,
            "qaApplyButton": self.onQAApplyButton})

    def _updateState(self, caller=None, event=None) -> None:
        """Enable the widgets that can act on the current selection and show the calibration."""
        p = self._parameterNode
        if p is None:
            return
        self.updateCalibrationSection()

        canConvert = p.inputVolume is not None and self.logic.hasCalibration(p.calibrationTable)
        self.offerAction(self.ui.convertButton, canConvert,
                         "Convert the CT volume from HU to BMD (mg/cm3)",
                         "Select a CT volume and calibrate first")

        self._updateSpineState()
        self._updateFractureState()
        # the lines are not watched: a Measure without any line says so
        self.offerAction(self.ui.screwApplyButton, p.inputVolume is not None,
                         "Measure the bone along each planned screw (every markups line)",
                         "Select a CT volume and place a markups line per screw (entry, tip)")
        self.ui.screwTableView.setMRMLTableNode(p.screwTable)
        self._updateTissueState()
        self._updateQAState()

    def _updateSpineState(self) -> None:
        """Show the spine inputs of the chosen mode, enable Measure/Export, show the summary."""
        p = self._parameterNode
        seeds = p.spineInputMode == SPINE_INPUT_SEEDS
        for widget in (self.ui.spineSeedsLabel, self.ui.spineSeedsSelector, self.ui.detectSeedsButton,
                       self.ui.lowestSeedLevelLabel, self.ui.lowestSeedLevelWidget):
            widget.visible = seeds
        self.offerAction(self.ui.detectSeedsButton, p.inputVolume is not None,
                         "Find and name the vertebral bodies into the seed point list",
                         "Select the CT volume")
        self.offerAction(self.ui.nameSeedsButton, p.spineSeeds is not None,
                         "Name the seed points by level from their height, the lowest as chosen",
                         "Select the seed point list")
        for widget in (self.ui.spineLabelsLabel, self.ui.spineLabelsSelector,
                       self.ui.labelSchemeLabel, self.ui.labelSchemeComboBox):
            widget.visible = not seeds
        levelsNode = p.spineSeeds if seeds else p.spineLabels
        canMeasure = p.inputVolume is not None and levelsNode is not None
        self.ui.spineApplyButton.enabled = canMeasure
        if canMeasure:
            self.ui.spineApplyButton.toolTip = (
                "Measure each level" + ("" if self.logic.hasCalibration(p.calibrationTable)
                                        else " (no calibration: HU only)"))
        else:
            self.ui.spineApplyButton.toolTip = (
                "Select a CT volume and " + ("seed points named by level" if seeds
                                             else "a vertebra label map or segmentation"))
        self.ui.spineTableView.setMRMLTableNode(p.spineTable)
        self.ui.spineSummaryLabel.text = self.logic.spineSummary(p.spineTable)
        canExport = self.logic.canExportSpineReport(p.spineTable)
        self.offerAction(self.ui.exportReportButton, canExport,
                         "Write the spine report (PDF) of the selected spine table",
                         "Measure the spine first (the report needs the table, its CT and its ROI "
                         "label map)")

    def _updateFractureState(self) -> None:
        """Enable Recompute grades and the sagittal view when the spine table has height lines;
        offer its levels and show its fracture table."""
        p = self._parameterNode
        levels = self.logic.assessedLevels(p.spineTable)
        self.offerAction(self.ui.recomputeGradesButton, bool(levels),
                         "Recompute the heights and Genant grades from the height lines as moved",
                         "Measure the spine first (the heights are drawn as lines to move)")
        self.offerAction(self.ui.showSagittalButton, bool(levels),
                         "Reformat the sagittal (yellow) view to the level's mid-sagittal plane",
                         "Measure the spine first (the view follows the level's height lines)")
        combo = self.ui.sagittalLevelComboBox
        if [combo.itemText(i) for i in range(combo.count)] != levels:
            combo.clear()
            combo.addItems(levels)
        self.ui.fractureTableView.setMRMLTableNode(self.logic.fractureTable(p.spineTable))

    def _updateTissueState(self) -> None:
        """Enable the slice range, Analyse and Export; show the tissue tables and summary."""
        p = self._parameterNode
        for widget in (self.ui.tissueFirstSliceSpinBox, self.ui.tissueLastSliceSpinBox):
            widget.enabled = not p.tissueWholeScan
        canAnalyse = p.inputVolume is not None and self.logic.hasCalibration(p.calibrationTable)
        self.offerAction(self.ui.tissueApplyButton, canAnalyse,
                         "Analyse the tissue composition",
                         "Select a CT volume and calibrate first (phantom, internal or manual)")
        self.ui.tissueTableView.setMRMLTableNode(p.tissueTable)
        self.ui.tissueMeasuresTableView.setMRMLTableNode(p.tissueMeasuresTable)
        self.ui.tissueSummaryLabel.text = self.logic.tissueSummary(p.tissueTable)
        self.ui.tissueExportReportButton.enabled = self.logic.hasTissueResult(p.tissueTable)

    def _updateQAState(self) -> None:
        """Enable Measure QA when a volume and a log file are chosen; show the QA results."""
        p = self._parameterNode
        hasLog = str(p.qaLogPath) not in ("", ".")
        self.ui.qaApplyButton.enabled = p.inputVolume is not None and hasLog
        self.ui.qaApplyButton.toolTip = (
            "Measure the inserts and append the session to the QA log"
            if self.ui.qaApplyButton.enabled else "Select the QA phantom volume and a QA log file")
        self.ui.qaTableView.setMRMLTableNode(p.qaTable)
        self.ui.qaSummaryLabel.text = self.logic.qaSummary(p.qaTable)

    @widgets.moduleAction("Conversion to BMD failed.")
    def onConvertButton(self) -> None:
        """Write the BMD map of the input volume into the output volume (created if none)."""
        p = self._parameterNode
        p.outputBmdVolume = self.logic.convertToBmd(p.inputVolume, p.calibrationTable, p.outputBmdVolume)
        slicer.util.setSliceViewerLayers(background=p.outputBmdVolume, fit=True)

    @widgets.moduleAction("Naming the seed points failed.")
    def onNameSeedsButton(self) -> None:
        """Name the seed points by level from their height (the lowest as chosen)."""
        p = self._parameterNode
        names = self.logic.nameSeedsByLevel(p.spineSeeds, p.lowestSeedLevel)
        slicer.util.showStatusMessage(f"Seed points named {', '.join(names)}", 5000)

    @widgets.moduleAction("Detecting the vertebrae failed.")
    def onDetectSeedsButton(self) -> None:
        """Detect and name the vertebral bodies into the seed point list (created if none) and
        show them in the sagittal view, for the user to check and edit before measuring."""
        p = self._parameterNode
        p.spineSeeds = self.logic.detectSeeds(p.inputVolume, p.spineSeeds)
        slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutOneUpYellowSliceView)
        slicer.modules.markups.logic().JumpSlicesToNthPointInMarkup(p.spineSeeds.GetID(), 0, True)

    @widgets.moduleAction("Spine measurement failed.")
    def onSpineApplyButton(self) -> None:
        """Measure the spine and show the results (table, ROIs, centres, reference chart)."""
        p = self._parameterNode
        seeds = p.spineInputMode == SPINE_INPUT_SEEDS
        outputs = self.logic.runSpine(
            p.inputVolume,
            p.calibrationTable if self.logic.hasCalibration(p.calibrationTable) else None,
            seedsNode=p.spineSeeds if seeds else None,
            labelsNode=None if seeds else p.spineLabels, options=spineOptionsFromParameterNode(p),
            ageYears=widgets.patientAgeOrNone(p.patientAgeYears),
            sex=widgets.patientSexOrNone(p.patientSex),
            tableNode=p.spineTable, roiLabelmapNode=p.spineRoiLabelmap,
            roiSegmentationNode=p.spineRoiSegmentation, roiCentersNode=p.spineRoiCenters)
        p.spineTable = outputs["table"]
        p.spineRoiLabelmap = outputs["roi_labelmap"]
        p.spineRoiSegmentation = outputs["roi_segmentation"]
        p.spineRoiCenters = outputs["roi_centers"]
        # the segmentation shows the ROIs; the label map stays in the scene for export; the
        # slice views centre on the first measured level
        slicer.util.setSliceViewerLayers(background=p.inputVolume, label=None)
        if outputs["roi_centers"].GetNumberOfControlPoints():
            slicer.modules.markups.logic().JumpSlicesToNthPointInMarkup(
                outputs["roi_centers"].GetID(), 0, True)
        if outputs["chart"] is not None:
            slicer.modules.plots.logic().ShowChartInLayout(outputs["chart"])
        self._updateState()
        if self.ui.sagittalLevelComboBox.count:  # the heights of the first level, sagittally
            self.onShowSagittalButton()

    @widgets.moduleAction("Writing the spine report failed.", askFolder="Export spine report")
    def onExportReportButton(self, folder: str) -> None:
        """Write spine_report.pdf of the selected spine table into the chosen folder."""
        p = self._parameterNode
        written = self.logic.exportSpineReport(pathlib.Path(folder) / "spine_report.pdf", p.spineTable)
        slicer.util.showStatusMessage(f"Spine report written to {written}", 5000)

    @widgets.moduleAction("Recomputing the fracture grades failed.")
    def onRecomputeGradesButton(self) -> None:
        """Heights and grades from the height lines as the reader moved them."""
        fractures = self.logic.recomputeFractureGrades(self._parameterNode.spineTable)
        slicer.util.showStatusMessage("Grades: " + ", ".join(
            f"{level} G{f['genant_grade']}" for level, f in fractures.items()
            if f.get("genant_grade") is not None), 5000)

    @widgets.moduleAction("Showing the level sagittally failed.")
    def onShowSagittalButton(self) -> None:
        """Reformat the sagittal (yellow) view through the chosen level's height lines."""
        sliceNode = slicer.app.layoutManager().sliceWidget("Yellow").mrmlSliceNode()
        self.logic.showLevelSagittally(self._parameterNode.spineTable,
                                       self.ui.sagittalLevelComboBox.currentText, sliceNode)

    @widgets.moduleAction("Screw measurement failed.")
    def onScrewApplyButton(self) -> None:
        """Measure every planned screw (markups lines) and show the table and cylinders."""
        p = self._parameterNode
        outputs = self.logic.runScrews(
            p.inputVolume,
            p.calibrationTable if self.logic.hasCalibration(p.calibrationTable) else None,
            screwOptionsFromParameterNode(p), seedsNode=p.spineSeeds, tableNode=p.screwTable)
        p.screwTable = outputs["table"]
        self._updateState()

    @widgets.moduleAction("Tissue analysis failed.")
    def onTissueApplyButton(self) -> None:
        """Analyse the tissue composition and show the two tables."""
        p = self._parameterNode
        outputs = self.logic.runTissue(
            p.inputVolume, p.calibrationTable,
            sliceRange=None if p.tissueWholeScan else (p.tissueFirstSlice, p.tissueLastSlice),
            l3PointNode=p.tissueL3Point, tableNode=p.tissueTable,
            measuresTableNode=p.tissueMeasuresTable, labelmapNode=p.tissueLabelmap)
        p.tissueTable = outputs["table"]
        p.tissueMeasuresTable = outputs["measures_table"]
        p.tissueLabelmap = outputs["labelmap"]
        slicer.util.setSliceViewerLayers(background=p.inputVolume, label=outputs["labelmap"])
        self._updateState()

    @widgets.moduleAction("Writing the tissue report failed.", askFolder="Export tissue report")
    def onTissueExportReportButton(self, folder: str) -> None:
        """Write tissue.json, tissue.csv and tissue_report.pdf into the chosen folder."""
        p = self._parameterNode
        paths = self.logic.exportTissueReport(folder, p.tissueTable)
        slicer.util.showStatusMessage(f"Tissue report written to {paths['report']}", 5000)

    @widgets.moduleAction("QA measurement failed.")
    def onQAApplyButton(self) -> None:
        """Measure the QA phantom, append the session to the log and show the flags."""
        p = self._parameterNode
        outputs = self.logic.runQA(
            p.inputVolume,
            p.calibrationTable if self.logic.hasCalibration(p.calibrationTable) else None,
            p.qaPhantomType, p.qaLogPath, p.qaSession or None, p.qaTable)
        p.qaTable = outputs["table"]
        self._updateState()


#
# QCTBoneDensityLogic
#


class QCTBoneDensityLogic(CalibrationLogicMixin, ScriptedLoadableModuleLogic):
    """Scene-level operations of the module, usable from the Python console without the GUI.

    Each method reads nodes, calls ``boneqct``, and writes nodes; nothing is computed here.
    """

    def getParameterNode(self):
        """The module's parameter node, wrapped with typed fields."""
        return QCTBoneDensityParameterNode(super().getParameterNode())

    def convertToBmd(self, inputVolume, calibrationTable, outputVolume=None):
        """Write the BMD map (mg/cm3) of ``inputVolume`` into ``outputVolume`` (created if None).

        The output has exactly the input's grid and geometry; voxels are float32 mg/cm3 of the
        calibration material, which is recorded in the node attribute ``BoneQCT.Quantity``.
        """
        if inputVolume is None:
            raise ValueError("Select the CT volume to convert.")
        from boneqct.calibration import convert_volume_to_bmd
        from BoneQCTLib.calibration import calibration_from_table_node
        from BoneQCTLib.volumes import update_node_from_volume, volume_from_node

        calibration = calibration_from_table_node(calibrationTable)
        bmd = convert_volume_to_bmd(volume_from_node(inputVolume), calibration)
        outputVolume = update_node_from_volume(bmd, outputVolume, name=f"{inputVolume.GetName()} BMD")
        outputVolume.SetAttribute("BoneQCT.Quantity", f"BMD (mg/cm3 {calibration.material})")
        return outputVolume

    def runSpine(self, inputVolume, calibrationTable=None, seedsNode=None, labelsNode=None,
                 options=None, ageYears=None, sex=None, tableNode=None, roiLabelmapNode=None,
                 roiSegmentationNode=None, roiCentersNode=None) -> dict:
        """Measure each vertebral level of ``inputVolume`` with ``options`` (a ``SpineOptions``;
        None: the defaults) and write the results into the scene.

        Levels come from ``seedsNode`` (markups points named by level) when given, else from
        ``labelsNode`` (label map or segmentation in ``options.label_scheme`` numbering): T11-L5
        are measured, T4-T10 assessed for fractures only (``outputs["thoracic"]``). Without a
        calibration table the values are HU only. Output nodes given are overwritten, the
        others created. Returns the dict of ``QCTBoneDensityLib.run_spine``: "result",
        "volume", "table", "roi_labelmap", "roi_segmentation", "roi_centers", "chart" (or None).
        """
        from QCTBoneDensityLib.spine import run_spine

        outputs = run_spine(
            inputVolume, calibrationTable, options, seeds_node=seedsNode, labels_node=labelsNode,
            age_years=ageYears, sex=sex,
            table_node=tableNode, roi_labelmap_node=roiLabelmapNode,
            roi_segmentation_node=roiSegmentationNode, roi_centers_node=roiCentersNode)
        logWarnings("spine", outputs["result"])
        if outputs["thoracic"] is not None:
            logWarnings("fracture assessment T4-T10", outputs["thoracic"])
        return outputs

    def detectSeeds(self, inputVolume, seedsNode=None):
        """Detect and name the vertebral bodies of ``inputVolume`` into ``seedsNode`` (a markups
        point list; None creates one); returns the list. The detection's warnings (transitional
        anatomy, names to check) go to the log."""
        from QCTBoneDensityLib.detect import detect_levels_to_markups

        outputs = detect_levels_to_markups(inputVolume, seedsNode)
        logWarnings("detection", outputs["result"])
        return outputs["markups"]

    def nameSeedsByLevel(self, seedsNode, lowestLevel: str) -> list:
        """Name the placed points of ``seedsNode`` by level (T4-L5) from their height, the lowest
        one ``lowestLevel``; returns the names in list order."""
        from boneqct.spine.levels import VFA_LEVEL_NAMES
        from BoneQCTLib.vertebrae import name_points_by_level

        return name_points_by_level(seedsNode, lowestLevel, VFA_LEVEL_NAMES)

    def screwLineNodes(self) -> list:
        """The planned screws: the scene's markups lines, except the height lines of a
        fracture assessment."""
        from QCTBoneDensityLib.fracture import LEVEL_ATTRIBUTE

        return [node for node in slicer.util.getNodesByClass("vtkMRMLMarkupsLineNode")
                if node.GetAttribute(LEVEL_ATTRIBUTE) is None]

    def runScrews(self, inputVolume, calibrationTable=None, options=None, seedsNode=None,
                  tableNode=None) -> dict:
        """Measure the planned screws (:meth:`screwLineNodes`) with ``options`` (a
        ``ScrewOptions``); ``seedsNode`` names each screw's level. Returns the dict of
        ``QCTBoneDensityLib.screw.run_screws``: "result", "table", "models"."""
        from QCTBoneDensityLib.screw import run_screws

        outputs = run_screws(inputVolume, calibrationTable, options,
                             line_nodes=self.screwLineNodes(), seeds_node=seedsNode,
                             table_node=tableNode)
        logWarnings("screw", outputs["result"])
        return outputs

    def assessedLevels(self, spineTable) -> list:
        """The levels whose height lines a spine table references (empty if none)."""
        from QCTBoneDensityLib.fracture import assessed_levels

        return assessed_levels(spineTable)

    def fractureTable(self, spineTable):
        """The fracture table (heights, ratios, Genant grade and type) of a spine table."""
        from QCTBoneDensityLib.fracture import FRACTURE_TABLE_ROLE

        return spineTable.GetNodeReference(FRACTURE_TABLE_ROLE) if spineTable else None

    def showLevelSagittally(self, spineTable, level: str, sliceNode) -> None:
        """Reformat ``sliceNode`` to ``level``'s mid-sagittal plane through its height lines."""
        from QCTBoneDensityLib.fracture import show_level_in_slice_view

        show_level_in_slice_view(spineTable, level, sliceNode)

    def recomputeFractureGrades(self, spineTable) -> dict:
        """Heights and Genant grades from the spine table's height lines as they are now, into
        its fracture table; returns the assessment by level."""
        from QCTBoneDensityLib.fracture import recompute_grades

        return recompute_grades(spineTable)

    def spineSummary(self, tableNode) -> str:
        """Mean BMD, category, T/Z-scores and warnings of a spine table (empty if none)."""
        from QCTBoneDensityLib.spine import spine_summary_text

        return spine_summary_text(tableNode)

    def canExportSpineReport(self, tableNode) -> bool:
        """Whether ``tableNode`` holds a spine measurement whose CT and ROI label map are in
        the scene (what the report is written from; also after the scene was reloaded)."""
        from QCTBoneDensityLib.spine import can_export_spine_report

        return can_export_spine_report(tableNode)

    def exportSpineReport(self, path, tableNode, anonymize: bool = False):
        """Write the spine report PDF of the measurement held by ``tableNode``; returns the path."""
        from QCTBoneDensityLib.spine import export_spine_report

        return export_spine_report(path, tableNode, anonymize=anonymize)

    def runTissue(self, inputVolume, calibrationTable, sliceRange=None, l3PointNode=None,
                  tableNode=None, measuresTableNode=None, labelmapNode=None) -> dict:
        """Tissue composition of ``inputVolume`` into the compartments and measures tables and
        the tissue classes into a label map (output nodes given are overwritten).

        ``sliceRange`` is (first, last) k indices, both included (None: the whole scan);
        ``l3PointNode`` an optional markups list with the point in L3. Returns the dict of
        ``QCTBoneDensityLib.run_tissue``: "result", "table", "measures_table", "labelmap".
        """
        from QCTBoneDensityLib.tissue import run_tissue

        from boneqct.tissue import TissueOptions

        slices = () if sliceRange is None else (int(sliceRange[0]), int(sliceRange[1]))
        return run_tissue(inputVolume, calibrationTable, TissueOptions(slices=slices),
                          l3_node=l3PointNode, table_node=tableNode,
                          measures_table_node=measuresTableNode, labelmap_node=labelmapNode)

    def hasTissueResult(self, tableNode) -> bool:
        """Whether ``tableNode`` holds a tissue composition written by this module."""
        from QCTBoneDensityLib.tissue import has_tissue_result

        return has_tissue_result(tableNode)

    def tissueSummary(self, tableNode) -> str:
        """Calibration, slices, fitted tissue CT values, thresholds and L3 muscle area."""
        from QCTBoneDensityLib.tissue import tissue_summary_text

        return tissue_summary_text(tableNode)

    def exportTissueReport(self, folder, tableNode, anonymize: bool = False) -> dict:
        """Write tissue.json, tissue.csv and tissue_report.pdf into ``folder``; returns the paths.

        Written from the document stored on the table, so a saved scene can be reported again.
        """
        from QCTBoneDensityLib.tissue import export_tissue_report

        return export_tissue_report(folder, tableNode, anonymize=anonymize)

    def runQA(self, inputVolume, calibrationTable=None, phantomType: str = "esp", logPath=None,
              session=None, tableNode=None) -> dict:
        """Measure the QA phantom, append the session to ``logPath`` and flag drift.

        Returns the dict of ``QCTBoneDensityLib.run_qa``: "rows", "charts", "log", "table".
        """
        from QCTBoneDensityLib.qa import run_qa

        from boneqct.qa import QAOptions

        outputs = run_qa(inputVolume, calibrationTable, QAOptions(phantom_type=phantomType,
                                                                  session=session or ""),
                         log_path=logPath, table_node=tableNode)
        flagged = [c.insert for c in outputs["charts"].values() if c.drift or c.out_of_control]
        if flagged:
            logging.warning(f"BoneQCT QA: drift or out-of-control sessions for {', '.join(flagged)}")
        return outputs

    def qaSummary(self, tableNode) -> str:
        """Session, log file and flagged inserts of a QA table (empty if none)."""
        from QCTBoneDensityLib.qa import qa_summary_text

        return qa_summary_text(tableNode)


#
# QCTBoneDensityTest
#


@functools.lru_cache(maxsize=1)
def _spinePhantom():
    """The core's default digital spine phantom with calibration rods, made once for the
    self-tests that read it (3-5 s each time)."""
    from boneqct.phantoms import make_spine_phantom

    return make_spine_phantom()


class QCTBoneDensityTest(widgets.ModuleTest):
    """In-Slicer self-test: a digital phantom from the core, calibrated and converted end to end."""

    def test_ManualCalibrationIsIdentity(self) -> None:
        """Slope 1, intercept 0 leaves the voxel values and the geometry unchanged."""
        import numpy as np

        from boneqct.volume import Volume, ijk_to_ras_matrix
        from BoneQCTLib.volumes import update_node_from_volume

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

        from boneqct.calibration import convert_volume_to_bmd, load_phantom_definition
        from BoneQCTLib.calibration import calibration_from_table_node
        from BoneQCTLib.volumes import update_node_from_volume, volume_from_node

        self.delayDisplay("Phantom calibration")
        ct = _spinePhantom().volume
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

    def test_SpinePhantomEndToEnd(self) -> None:
        """Phantom -> nodes -> calibrate -> seeds from the truth -> spine; BMD within 2% of truth;
        the report written from the table."""
        import tempfile

        import numpy as np

        from BoneQCTLib.volumes import update_node_from_volume

        self.delayDisplay("Spine measurement on the digital phantom")
        phantom = _spinePhantom()
        inputVolume = update_node_from_volume(phantom.volume, name="spine phantom")
        logic = QCTBoneDensityLogic()
        calibrationTable = logic.calibrateWithPhantom(inputVolume, "mindways-model3")
        seeds = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seeds")
        truth = {v["level"]: v for v in phantom.truth["vertebrae"]}
        for level, vertebra in truth.items():
            seeds.AddControlPoint(*vertebra["body_center_ras_mm"], level)

        outputs = logic.runSpine(inputVolume, calibrationTable, seedsNode=seeds)
        table = outputs["table"]
        self.assertEqual(table.GetNumberOfRows(), len(truth))
        self.assertEqual(table.GetColumnUnitLabel("BMD (mg/cm3)"), "mg/cm3")
        levels = table.GetTable().GetColumnByName("Level")
        bmd = table.GetTable().GetColumnByName("BMD (mg/cm3)")
        for row in range(table.GetNumberOfRows()):
            expected = truth[levels.GetValue(row)]["trabecular_bmd_mg_cm3"]
            # 2 %, or 1.5 mg/cm3 at low density (the rod calibration's own intercept error)
            self.assertLess(abs(bmd.GetValue(row) - expected), max(0.02 * expected, 1.5))
        segmentation = outputs["roi_segmentation"].GetSegmentation()
        self.assertEqual(segmentation.GetNumberOfSegments(), len(truth))
        self.assertEqual(outputs["roi_centers"].GetNumberOfControlPoints(), len(truth))
        labelmapMatrix, ctMatrix = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
        outputs["roi_labelmap"].GetIJKToRASMatrix(labelmapMatrix)
        inputVolume.GetIJKToRASMatrix(ctMatrix)
        np.testing.assert_allclose(slicer.util.arrayFromVTKMatrix(labelmapMatrix),
                                   slicer.util.arrayFromVTKMatrix(ctMatrix), atol=1e-9)
        self.assertTrue(logic.spineSummary(table).startswith("Mean BMD of L1,L2"))
        # the report is written from the table (a new Logic keeps nothing of the measurement)
        freshLogic = QCTBoneDensityLogic()
        self.assertTrue(freshLogic.canExportSpineReport(table))
        with tempfile.TemporaryDirectory() as folder:
            report = freshLogic.exportSpineReport(pathlib.Path(folder) / "spine_report.pdf", table)
            self.assertGreater(report.stat().st_size, 10000)
        self.delayDisplay("Spine measurement passed")

    def test_ThoracicFractureAssessment(self) -> None:
        """Seeds T9-L1 on a phantom with a T10 wedge: BMD for T11-L1 only, height lines and
        grades for all five (T10 moderate or worse, the others 0), T10 shown sagittally,
        the grades recomputed from the lines."""
        import numpy as np

        from boneqct.phantoms import ScannerParams, make_spine_phantom
        from boneqct.phantoms.anatomy import anatomical_spine_params
        from BoneQCTLib.volumes import update_node_from_volume

        self.delayDisplay("Fracture assessment of thoracic levels")
        levels = ["T9", "T10", "T11", "T12", "L1"]
        phantom = make_spine_phantom(
            anatomical_spine_params(tuple(levels), spine_tilt_deg=5.0, phantom_present=False,
                                    deformities=(("T10", "wedge"),)),
            ScannerParams(pixel_mm=0.8, matrix=(100, 150), n_slices=85, slice_spacing_mm=2.0,
                          slice_thickness_mm=2.0, fov_center_ras_mm=(0.0, -45.0),
                          noise_sd_hu=15.0, supersample=2), seed=17)
        inputVolume = update_node_from_volume(phantom.volume, name="thoracic phantom")
        seeds = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seeds")
        for vertebra in phantom.truth["vertebrae"]:
            seeds.AddControlPoint(*vertebra["body_center_ras_mm"], vertebra["level"])
        logic = QCTBoneDensityLogic()
        table = logic.runSpine(inputVolume, seedsNode=seeds)["table"]
        self.assertEqual(table.GetNumberOfRows(), 3)  # BMD: T11, T12, L1
        self.assertEqual(logic.assessedLevels(table), levels)
        fractures = logic.fractureTable(table)
        grades = {fractures.GetCellText(row, 0): int(fractures.GetCellText(row, 7))
                  for row in range(fractures.GetNumberOfRows())}
        self.assertGreaterEqual(grades.pop("T10"), 2)
        self.assertEqual(set(grades.values()), {0})
        # the yellow view's slice node (a new one where the scene has no views)
        sliceNode = (slicer.mrmlScene.GetNodeByID("vtkMRMLSliceNodeYellow")
                     or slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSliceNode"))
        logic.showLevelSagittally(table, "T10", sliceNode)
        up = [sliceNode.GetSliceToRAS().GetElement(row, 1) for row in range(3)]
        axis = phantom.truth["vertebrae"][1]["body_axis_ras"]
        self.assertGreater(float(np.dot(up, axis)), float(np.cos(np.radians(3.0))))
        self.assertEqual(list(logic.recomputeFractureGrades(table)), levels)
        self.delayDisplay("Fracture assessment passed")

    def test_TissueWithInternalCalibration(self) -> None:
        """Phantom -> internal calibration -> tissue tables and class label map equal to the core's."""
        import math

        import numpy as np

        from boneqct.calibration.internal import internal_calibration
        from boneqct.tissue import TissueOptions, analyze_tissue, tissue_label_map
        from BoneQCTLib.volumes import update_node_from_volume

        self.delayDisplay("Internal calibration and tissue composition on the digital phantom")
        phantom = _spinePhantom()
        inputVolume = update_node_from_volume(phantom.volume, name="tissue phantom")
        logic = QCTBoneDensityLogic()
        calibrationTable = logic.calibrateInternally(inputVolume)
        self.assertTrue(logic.hasCalibration(calibrationTable))
        self.assertTrue(logic.calibrationSummary(calibrationTable).startswith("Internal (phantomless)"))
        l3 = next(v for v in phantom.truth["vertebrae"] if v["level"] == "L3")["body_center_ras_mm"]
        l3Node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "L3")
        l3Node.AddControlPoint(*l3, "L3")

        # the slices within 6 of L3's centre (the whole scan takes twice as long)
        l3Slice = int(round(phantom.volume.ras_to_ijk_points([l3])[0][2]))
        sliceRange = (max(l3Slice - 6, 0), min(l3Slice + 6, phantom.volume.size_ijk[2] - 1))
        outputs = logic.runTissue(inputVolume, calibrationTable, sliceRange, l3PointNode=l3Node)
        table, measures = outputs["table"], outputs["measures_table"]
        # the node has no kVp (a warning), which changes neither the slope nor the intercept
        expected = analyze_tissue(phantom.volume, internal_calibration(phantom.volume),
                                  TissueOptions(slices=sliceRange), l3_point_ras_mm=l3)
        regions = table.GetTable().GetColumnByName("Region")
        compartments = table.GetTable().GetColumnByName("Compartment")
        mass = table.GetTable().GetColumnByName("Mass (g)")
        for row in range(table.GetNumberOfRows()):
            region, compartment = regions.GetValue(row), compartments.GetValue(row)
            group = (expected.fat_compartments if compartment in expected.fat_compartments
                     else expected.regions[region])
            self.assertEqual(mass.GetValue(row), group[compartment]["mass_g"])
        self.assertEqual(table.GetColumnUnitLabel("Mass (g)"), "g")
        self.assertEqual(measures.GetColumnUnitLabel("Integral BMD (mg/cm3)"), "mg/cm3")
        integral = measures.GetTable().GetColumnByName("Integral BMD (mg/cm3)").GetValue(0)
        self.assertFalse(math.isnan(integral))
        self.assertIn("Skeletal muscle area at L3", logic.tissueSummary(table))
        self.assertTrue(logic.hasTissueResult(table))
        labelmap = outputs["labelmap"]
        labelmapMatrix, ctMatrix = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
        labelmap.GetIJKToRASMatrix(labelmapMatrix)
        inputVolume.GetIJKToRASMatrix(ctMatrix)
        np.testing.assert_array_equal(slicer.util.arrayFromVTKMatrix(labelmapMatrix),
                                      slicer.util.arrayFromVTKMatrix(ctMatrix))
        labels = tissue_label_map(phantom.volume, expected)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(labelmap), labels.array_kji)
        colors = labelmap.GetDisplayNode().GetColorNode()
        for value, name in labels.metadata["label_table"].items():
            self.assertEqual(colors.GetColorName(int(value)), name)
        self.delayDisplay("Tissue composition passed")

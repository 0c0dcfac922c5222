"""Spine adapters: scene nodes <-> the core spine pipeline (``boneqct.spine``).

Inputs: seed points from a markups point list (control point labels are level names) and a
vertebra label map from a label map volume node or a segmentation node. Outputs: the per-level
table (units and descriptions on every column, as Slicer's SegmentStatistics does), the ROIs
as a label map (one label per level, named by a colour table) and as a segmentation (one
segment per level, named by level), the ROI centres as a markups point list, and the
reference curve as a plot chart when the result holds one.

Only ``slicer.vtkMRML*``, ``slicer.util`` and ``vtk`` are used (no Qt), so everything here runs
under PyPI's ``slicer-core`` as well as inside Slicer. ``boneqct.spine`` is imported inside the
functions that need it, so this file loads before the core's dependencies are installed.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import slicer
import slicer.util
import vtk

from QCTBoneDensityLib.tables import add_column, json_default
from QCTBoneDensityLib.volumes import labelmap_to_node

#: Attributes of the spine table node holding the diagnostic summary.
ATTRIBUTE_SPINE_MEAN_BMD_MG_CM3 = "BoneQCT.Spine.MeanBMDMgCm3"
ATTRIBUTE_SPINE_MEAN_HU = "BoneQCT.Spine.MeanHU"
ATTRIBUTE_SPINE_LEVELS_USED = "BoneQCT.Spine.LevelsUsed"
ATTRIBUTE_SPINE_CATEGORY = "BoneQCT.Spine.Category"
ATTRIBUTE_SPINE_T_SCORE = "BoneQCT.Spine.TScore"
ATTRIBUTE_SPINE_Z_SCORE = "BoneQCT.Spine.ZScore"
ATTRIBUTE_SPINE_CALIBRATED = "BoneQCT.Spine.Calibrated"
ATTRIBUTE_SPINE_MATERIAL = "BoneQCT.Spine.Material"
ATTRIBUTE_SPINE_WARNINGS = "BoneQCT.Spine.Warnings"
#: ``SpineResult.to_dict()`` as JSON: the spine.json document, saved with the scene.
ATTRIBUTE_SPINE_JSON = "BoneQCT.Spine.JSON"
#: Node reference role from the spine table to the reference-curve chart.
REFERENCE_CHART_ROLE = "BoneQCT.ReferenceChart"


def _optional(value):
    return math.nan if value is None else float(value)


def _cement_text(value) -> str:
    return "" if value is None else ("yes" if value else "no")


def _qc_text(qc: dict) -> str:
    if not qc:
        return ""
    if qc.get("passed"):
        return "pass"
    failed = [key for key, ok in qc.items() if key != "passed" and isinstance(ok, bool) and not ok]
    return "FAIL" + (f" ({', '.join(failed)})" if failed else "")


#: (column name, value of a LevelResult, vtk array class, unit label, description)
SPINE_COLUMNS = (
    ("Level", lambda lv: lv.level, vtk.vtkStringArray, "", "Vertebral level"),
    ("BMD (mg/cm3)", lambda lv: _optional(lv.bmd_mg_cm3), vtk.vtkDoubleArray, "mg/cm3",
     "Mean trabecular bone mineral density in the ROI, in mg/cm3 of the calibration material "
     "(empty when uncalibrated)"),
    ("SD (mg/cm3)", lambda lv: _optional(lv.sd_mg_cm3), vtk.vtkDoubleArray, "mg/cm3",
     "Standard deviation of the mineral density in the ROI"),
    ("Median (mg/cm3)", lambda lv: _optional(lv.median_mg_cm3), vtk.vtkDoubleArray, "mg/cm3",
     "Median mineral density in the ROI"),
    ("Mean (HU)", lambda lv: _optional(lv.mean_hu), vtk.vtkDoubleArray, "HU",
     "Mean CT number in the ROI"),
    ("SD (HU)", lambda lv: _optional(lv.sd_hu), vtk.vtkDoubleArray, "HU",
     "Standard deviation of the CT numbers in the ROI"),
    ("Voxels", lambda lv: int(lv.n_voxels or 0), vtk.vtkIntArray, "voxels",
     "Number of voxels in the ROI (0 when the level was not measured)"),
    ("ROI volume (mm3)", lambda lv: _optional(lv.roi_volume_mm3), vtk.vtkDoubleArray, "mm3",
     "Volume of the ROI"),
    ("Cement augmentation", lambda lv: _cement_text(lv.cement_augmentation), vtk.vtkStringArray, "",
     "Whether the BMD is below the cement-augmentation threshold (empty when uncalibrated)"),
    ("QC", lambda lv: _qc_text(lv.qc), vtk.vtkStringArray, "",
     "ROI quality check: pass, or FAIL with the checks that failed"),
    ("Not measured because", lambda lv: lv.reason or "", vtk.vtkStringArray, "",
     "Why the level could not be measured (empty when it was)"),
)

#: Last column: whether the level is in the diagnostic mean (filled from the result).
USED_COLUMN = ("Used", vtk.vtkStringArray, "",
               "yes: the level is in the diagnostic mean; excluded: left out by the user")


def _used_text(result, lv) -> str:
    if lv.level in result.levels_used:
        return "yes"
    return "excluded" if getattr(lv, "excluded", False) else ""


# ----------------------------------------------------------------------------- inputs

def _level_names() -> tuple[str, ...]:
    from boneqct.spine.levels import LEVEL_NAMES

    return LEVEL_NAMES


def seeds_from_markups_node(node) -> dict[str, np.ndarray]:
    """Seed points from a markups node: ``{level: RAS position (mm)}``.

    Each control point's label is its level ("L1", "t12"; case and surrounding spaces are
    ignored). Positions are world RAS (a parent transform of the markups is applied), in mm.
    Control points without a defined position are skipped.

    Raises:
        ValueError: no node or no points, a label that is not a level, or a level given twice.
    """
    if node is None:
        raise ValueError("Select the markups point list that holds the seed points.")
    levels = _level_names()
    seeds: dict[str, np.ndarray] = {}
    for index in range(node.GetNumberOfControlPoints()):
        if node.GetNthControlPointPositionStatus(index) != node.PositionDefined:
            continue
        label = node.GetNthControlPointLabel(index)
        level = label.strip().upper()
        if level not in levels:
            raise ValueError(
                f"The seed point '{label}' of '{node.GetName()}' is not named by a vertebral level. "
                f"Name each point by its level ({', '.join(levels)}).")
        if level in seeds:
            raise ValueError(f"Level {level} has more than one seed point in '{node.GetName()}'. "
                             "Keep one point per level.")
        position = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(index, position)
        seeds[level] = np.array(position, dtype=float)
    if not seeds:
        raise ValueError(f"'{node.GetName()}' has no placed points: place one point per level, "
                         "named by its level (e.g. L1).")
    return seeds


_LEVEL_IN_NAME = re.compile(r"(?:^|[^A-Za-z0-9])([TL]\d{1,2})(?:$|[^0-9])", re.IGNORECASE)


def _segment_label_value(segment, scheme: str) -> int | None:
    """Label value (in ``scheme``) of a segment: from a level in its name, else its label value."""
    from boneqct.spine.levels import LABEL_SCHEMES, label_for_level

    match = _LEVEL_IN_NAME.search(segment.GetName() or "")
    if match and match.group(1).upper() in _level_names():
        return label_for_level(match.group(1).upper(), scheme)
    value = segment.GetLabelValue()
    return value if value in LABEL_SCHEMES[scheme] else None


def labels_from_node(node, reference_volume_node, label_scheme: str = "totalsegmentator"):
    """A vertebra label map (core ``Volume``) from a label map volume or segmentation node.

    Args:
        node: a ``vtkMRMLLabelMapVolumeNode`` (or scalar volume) in ``label_scheme`` numbering,
            used on its own grid; or a ``vtkMRMLSegmentationNode``, exported onto the geometry
            of ``reference_volume_node``. A segment is a level when its name contains the level
            ("L1", "vertebrae_L1", "L1 vertebra") and gets that level's label value in
            ``label_scheme``; otherwise its label value is kept when the scheme knows it (a
            label map imported into a segmentation); other segments are left out.
        reference_volume_node: the CT volume node (geometry for a segmentation).
        label_scheme: "totalsegmentator" or "verse".

    Raises:
        ValueError: no node, or a segmentation with no vertebral level.
    """
    from QCTBoneDensityLib.volumes import volume_from_node

    if node is None:
        raise ValueError("Select the vertebra label map or segmentation.")
    if not node.IsA("vtkMRMLSegmentationNode"):
        return volume_from_node(node)
    if reference_volume_node is None:
        raise ValueError("Select the CT volume: the segmentation is exported on its grid.")
    from boneqct.spine.levels import LABEL_SCHEMES

    if label_scheme not in LABEL_SCHEMES:
        raise ValueError(f"Unknown label scheme '{label_scheme}'; use one of "
                         f"{', '.join(sorted(LABEL_SCHEMES))}.")
    segmentation = node.GetSegmentation()
    segment_ids, values = vtk.vtkStringArray(), []
    for index in range(segmentation.GetNumberOfSegments()):
        value = _segment_label_value(segmentation.GetNthSegment(index), label_scheme)
        if value is not None:
            segment_ids.InsertNextValue(segmentation.GetNthSegmentID(index))
            values.append(value)
    if not values:
        raise ValueError(
            f"The segmentation '{node.GetName()}' has no vertebral level: name the segments by "
            f"level ({', '.join(_level_names())}) or check the label scheme ({label_scheme}).")
    scene = node.GetScene() or slicer.mrmlScene
    temporary = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__BoneQCT_temporary_labels__")
    try:
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                node, segment_ids, temporary, reference_volume_node):
            raise ValueError(f"The segmentation '{node.GetName()}' could not be exported to a label map.")
        exported = volume_from_node(temporary)
    finally:
        display = temporary.GetDisplayNode()
        if display is not None and display.GetColorNode() is not None \
                and display.GetColorNode().GetName() == temporary.GetName() + "_ColorTable":
            scene.RemoveNode(display.GetColorNode())
        scene.RemoveNode(temporary)
    # exported voxels are n + 1 for the n-th exported segment: map them to the scheme's values
    lut = np.zeros(len(values) + 1, dtype=np.uint8)
    lut[1:] = values
    return exported.with_array(lut[exported.array_kji.astype(np.intp)])


# ----------------------------------------------------------------------------- outputs

def spine_result_to_table_node(result, table_node=None, name: str = "BoneQCT spine"):
    """Write a ``SpineResult`` into a table node: one row per level, summary as attributes.

    Columns: :data:`SPINE_COLUMNS` then "Used" (in the diagnostic mean / excluded). Every
    column has a unit label and a description. Missing values (e.g. BMD when
    uncalibrated) are NaN in number columns and empty in text columns. The node attributes
    ``BoneQCT.Spine.*`` hold the mean BMD, levels used, category, T- and Z-score (empty when
    absent), and ``BoneQCT.Spine.JSON`` the whole spine.json document.
    """
    if table_node is None:
        table_node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", name)
    was_modifying = table_node.StartModify()
    table_node.RemoveAllColumns()
    for column_name, getter, array_class, unit, description in SPINE_COLUMNS:
        column = array_class()
        column.SetName(column_name)
        for level in result.levels:
            column.InsertNextValue(getter(level))
        table_node.AddColumn(column)
        table_node.SetColumnUnitLabel(column_name, unit)
        table_node.SetColumnDescription(column_name, description)
    column_name, array_class, unit, description = USED_COLUMN
    column = array_class()
    column.SetName(column_name)
    for level in result.levels:
        column.InsertNextValue(_used_text(result, level))
    table_node.AddColumn(column)
    table_node.SetColumnUnitLabel(column_name, unit)
    table_node.SetColumnDescription(column_name, description)
    calibration = getattr(result, "calibration", None)

    def number(value):
        return "" if value is None else repr(float(value))

    table_node.SetAttribute(ATTRIBUTE_SPINE_MEAN_BMD_MG_CM3, number(result.mean_bmd_mg_cm3))
    table_node.SetAttribute(ATTRIBUTE_SPINE_MEAN_HU, number(getattr(result, "mean_hu", None)))
    table_node.SetAttribute(ATTRIBUTE_SPINE_LEVELS_USED, ",".join(result.levels_used))
    table_node.SetAttribute(ATTRIBUTE_SPINE_CATEGORY, result.category or "")
    table_node.SetAttribute(ATTRIBUTE_SPINE_T_SCORE, number(result.t_score))
    table_node.SetAttribute(ATTRIBUTE_SPINE_Z_SCORE, number(result.z_score))
    table_node.SetAttribute(ATTRIBUTE_SPINE_CALIBRATED, "true" if result.calibrated else "false")
    table_node.SetAttribute(ATTRIBUTE_SPINE_MATERIAL, "" if calibration is None else str(calibration.material))
    table_node.SetAttribute(ATTRIBUTE_SPINE_WARNINGS, "\n".join(str(w) for w in result.warnings))
    table_node.SetAttribute(ATTRIBUTE_SPINE_JSON, json.dumps(result.to_dict(), default=json_default))
    table_node.EndModify(was_modifying)
    return table_node


def has_spine_result(table_node) -> bool:
    """Whether ``table_node`` holds a result written by :func:`spine_result_to_table_node`."""
    return table_node is not None and table_node.GetAttribute(ATTRIBUTE_SPINE_JSON) is not None


def spine_summary_text(table_node) -> str:
    """One or two lines summarising the spine table (empty when it holds no result)."""
    if not has_spine_result(table_node):
        return ""
    used = table_node.GetAttribute(ATTRIBUTE_SPINE_LEVELS_USED) or "-"
    mean_bmd = table_node.GetAttribute(ATTRIBUTE_SPINE_MEAN_BMD_MG_CM3)
    if mean_bmd:
        material = table_node.GetAttribute(ATTRIBUTE_SPINE_MATERIAL)
        text = f"Mean BMD of {used}: {float(mean_bmd):.1f} mg/cm3 {material}".rstrip()
        category = table_node.GetAttribute(ATTRIBUTE_SPINE_CATEGORY)
        if category:
            text += f", category (ACR): {category}"
    else:
        mean_hu = table_node.GetAttribute(ATTRIBUTE_SPINE_MEAN_HU)
        text = f"Uncalibrated: mean of {used}: {float(mean_hu):.1f} HU" if mean_hu else "Uncalibrated"
    for attribute, name in ((ATTRIBUTE_SPINE_T_SCORE, "T-score"), (ATTRIBUTE_SPINE_Z_SCORE, "Z-score")):
        value = table_node.GetAttribute(attribute)
        if value:
            text += f", {name} {float(value):.2f}"
    warnings = table_node.GetAttribute(ATTRIBUTE_SPINE_WARNINGS)
    if warnings:
        text += "\nWarnings: " + warnings.replace("\n", "; ")
    return text


def roi_labelmap_to_node(volume_hu, result, node=None, name: str = "BoneQCT spine ROIs"):
    """The ROIs of ``result`` as a label map volume node on the CT grid.

    Label n + 1 is the n-th measured level (``boneqct.spine.pipeline.roi_label_map``); the node's
    colour table names each label by its level. ``node`` is overwritten when given.
    """
    from boneqct.spine.pipeline import roi_label_map

    names = {0: "Background", **{n + 1: lv.level for n, lv in enumerate(result.measured_levels)}}
    return labelmap_to_node(roi_label_map(volume_hu, result), names, node, name=name,
                            colors_attribute="BoneQCT.SpineROIColors",
                            quantity="Spine ROI labels (label n = n-th level)")


def roi_segmentation_from_labelmap(labelmap_node, segmentation_node=None,
                                   name: str = "BoneQCT spine ROIs"):
    """Import a ROI label map (from :func:`roi_labelmap_to_node`) into a segmentation node.

    One segment per level, named by the level, with the label map's colours; ``segmentation_node``
    is emptied and reused when given.
    """
    if segmentation_node is None:
        segmentation_node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        segmentation_node.CreateDefaultDisplayNodes()
    segmentation_node.GetSegmentation().RemoveAllSegments()
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(labelmap_node)
    if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
            labelmap_node, segmentation_node):
        raise ValueError("The ROI label map could not be imported into a segmentation.")
    display = labelmap_node.GetDisplayNode()
    color_node = display.GetColorNode() if display is not None else None
    segmentation = segmentation_node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        value = segment.GetLabelValue()
        if color_node is not None and 0 < value < color_node.GetNumberOfColors():
            segment.SetName(color_node.GetColorName(value))
            rgba = [0.0, 0.0, 0.0, 0.0]
            color_node.GetColor(value, rgba)
            segment.SetColor(rgba[:3])
    return segmentation_node


def roi_centers_to_markups(result, node=None, name: str = "BoneQCT spine ROI centres"):
    """The ROI centres (RAS mm) as a markups point list, one control point per level, locked."""
    if node is None:
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
        node.CreateDefaultDisplayNodes()
    was_modifying = node.StartModify()
    node.RemoveAllControlPoints()
    for level in result.measured_levels:
        index = node.AddControlPoint(vtk.vtkVector3d(*map(float, level.roi_center_ras_mm)), level.level)
        node.SetNthControlPointLocked(index, True)
        node.SetNthControlPointDescription(index, f"ROI centre of {level.level} (RAS mm)")
    node.EndModify(was_modifying)
    return node


def reference_curve(result) -> dict | None:
    """``{"age_years", "mean_mg_cm3", "sd_mg_cm3"}`` lists from ``result.reference``, or None.

    Reads the pipeline's ``reference["curve"]`` (keys ``age_years``, ``mean``, ``sd``) or the
    same lists at the top level of ``reference`` (``mean_mg_cm3``, ``sd_mg_cm3``).
    """
    reference = getattr(result, "reference", None) or {}
    curve = reference.get("curve") if isinstance(reference.get("curve"), dict) else reference
    ages = curve.get("age_years")
    means = curve.get("mean_mg_cm3", curve.get("mean"))
    sds = curve.get("sd_mg_cm3", curve.get("sd"))
    if not isinstance(ages, (list, tuple, np.ndarray)) or means is None or len(ages) == 0:
        return None
    if len(means) != len(ages) or (sds is not None and len(sds) != len(ages)):
        return None
    return {"age_years": [float(a) for a in ages], "mean_mg_cm3": [float(m) for m in means],
            "sd_mg_cm3": None if sds is None else [float(s) for s in sds]}


def _patient_point(result) -> tuple[float, float] | None:
    reference = getattr(result, "reference", None) or {}
    patient = reference.get("patient") if isinstance(reference.get("patient"), dict) else {}
    age = patient.get("age_years", reference.get("patient_age_years", reference.get("age_years")))
    if isinstance(age, (list, tuple, np.ndarray)):
        age = None
    value = patient.get("bmd_mg_cm3", result.mean_bmd_mg_cm3)
    if age is None or value is None:
        return None
    return float(age), float(value)


def _series(name: str, table_node, x_column: str, y_column: str, color, line=True):
    series = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", name)
    series.SetAndObserveTableNodeID(table_node.GetID())
    series.SetXColumnName(x_column)
    series.SetYColumnName(y_column)
    series.SetPlotType(series.PlotTypeScatter)
    series.SetColor(*color)
    if line:
        series.SetMarkerStyle(series.MarkerStyleNone)
    else:
        series.SetLineStyle(series.LineStyleNone)
        series.SetMarkerStyle(series.MarkerStyleCircle)
        series.SetMarkerSize(12)
    return series


def _double_column(name: str, values, unit: str, description: str, table_node) -> None:
    add_column(table_node, name, vtk.vtkDoubleArray, [float(v) for v in values], unit, description)


def _remove_chart(chart_node) -> None:
    """Remove a chart made by :func:`reference_plot`, with its series and tables."""
    scene = chart_node.GetScene()
    if scene is None:
        return
    all_series = [chart_node.GetNthPlotSeriesNode(i) for i in range(chart_node.GetNumberOfPlotSeriesNodes())]
    for series in all_series:
        if series is not None:
            table = series.GetTableNode()
            if table is not None and table.GetAttribute("BoneQCT.ReferenceCurve") and table.GetScene():
                scene.RemoveNode(table)
            scene.RemoveNode(series)
    scene.RemoveNode(chart_node)


def reference_plot(result, chart_node=None, name: str = "BoneQCT spine reference"):
    """A plot chart of the reference curve (mean and +/- 1 SD by age) with the patient's point.

    Returns the chart node, or None when ``result.reference`` holds no curve (then a given
    ``chart_node`` is removed with its series and tables, so no stale curve stays in the scene).
    The curve is in a table node named "<name> curve" (columns with units and descriptions),
    the patient point in "<name> patient".
    """
    curve = reference_curve(result)
    if curve is None:
        if chart_node is not None:
            _remove_chart(chart_node)
        return None
    if chart_node is not None:
        _remove_chart(chart_node)
    chart_node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    curve_table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", f"{name} curve")
    curve_table.SetAttribute("BoneQCT.ReferenceCurve", "1")
    ages, means, sds = curve["age_years"], curve["mean_mg_cm3"], curve["sd_mg_cm3"]
    _double_column("Age (years)", ages, "years", "Middle of the reference age band", curve_table)
    _double_column("Mean (mg/cm3)", means, "mg/cm3", "Reference mean BMD of the age band", curve_table)
    chart_node.AddAndObservePlotSeriesNodeID(
        _series("Reference mean", curve_table, "Age (years)", "Mean (mg/cm3)", (0.12, 0.31, 0.47)).GetID())
    if sds is not None:
        _double_column("Mean - 1 SD (mg/cm3)", np.subtract(means, sds), "mg/cm3",
                       "Reference mean minus one standard deviation", curve_table)
        _double_column("Mean + 1 SD (mg/cm3)", np.add(means, sds), "mg/cm3",
                       "Reference mean plus one standard deviation", curve_table)
        for column in ("Mean - 1 SD (mg/cm3)", "Mean + 1 SD (mg/cm3)"):
            series = _series(f"Reference {column[5:11]}", curve_table, "Age (years)", column,
                             (0.62, 0.76, 0.90))
            series.SetLineStyle(series.LineStyleDash)
            chart_node.AddAndObservePlotSeriesNodeID(series.GetID())
    point = _patient_point(result)
    if point is not None:
        patient_table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", f"{name} patient")
        patient_table.SetAttribute("BoneQCT.ReferenceCurve", "1")
        _double_column("Age (years)", [point[0]], "years", "Patient age", patient_table)
        _double_column("BMD (mg/cm3)", [point[1]], "mg/cm3", "Patient's mean spine BMD", patient_table)
        chart_node.AddAndObservePlotSeriesNodeID(
            _series("Patient", patient_table, "Age (years)", "BMD (mg/cm3)", (0.85, 0.15, 0.15),
                    line=False).GetID())
    chart_node.SetTitle("Spine BMD and reference")
    chart_node.SetXAxisTitle("Age (years)")
    chart_node.SetYAxisTitle("BMD (mg/cm3)")
    return chart_node


# ----------------------------------------------------------------------------- whole analysis

def parse_levels(text) -> tuple[str, ...]:
    """Level names from "L1,L2" (or "L1 L2", or a sequence); ValueError for an unknown name."""
    names = re.split(r"[,;\s]+", text.strip()) if isinstance(text, str) else list(text)
    levels, known = [], _level_names()
    for name in names:
        if not name:
            continue
        level = str(name).strip().upper()
        if level not in known:
            raise ValueError(f"'{name}' is not a vertebral level; list levels such as L1,L2 "
                             f"(known: {', '.join(known)}).")
        if level not in levels:
            levels.append(level)
    if not levels:
        raise ValueError("List the levels used for the diagnostic mean, e.g. L1,L2.")
    return tuple(levels)


def run_spine(ct_node, calibration_table_node=None, *, seeds_node=None, labels_node=None,
              label_scheme: str = "totalsegmentator", levels_used="L1,L2", exclude=(),
              thickness_mm: float = 9.0, margin_mm: float = 2.0,
              cement_threshold_mg_cm3: float = 50.0, age_years: float | None = None,
              sex: str | None = None, reference=None, table_node=None, roi_labelmap_node=None,
              roi_segmentation_node=None, roi_centers_node=None) -> dict:
    """Read the nodes, run ``boneqct.spine.pipeline.analyze_spine``, write the result nodes.

    Args:
        ct_node: CT volume node (HU).
        calibration_table_node: a calibration table (``calibration_to_table_node``); None
            measures HU only (no BMD, category or cement flag).
        seeds_node: markups point list with one point per level (labels = level names); used
            when given, else ``labels_node`` (label map volume or segmentation node).
        levels_used: levels of the diagnostic mean ("L1,L2" or a sequence).
        exclude: levels left out of the mean (e.g. fractured).
        thickness_mm, margin_mm: ROI slab thickness and margin to the cortex (mm).
        cement_threshold_mg_cm3: BMD below which cement augmentation is suggested.
        age_years, sex ("F"/"M"), reference (``boneqct.reference.Reference``): for T/Z-scores.
        table_node, roi_labelmap_node, roi_segmentation_node, roi_centers_node: output nodes
            to overwrite (None creates them).

    Returns:
        ``{"result": SpineResult, "volume": the CT as a core Volume, "table", "roi_labelmap",
        "roi_segmentation", "roi_centers", "chart" (None without a reference curve)}``.
    """
    if ct_node is None:
        raise ValueError("Select the CT volume to measure.")
    if seeds_node is None and labels_node is None:
        raise ValueError("Select seed points (one per level) or a vertebra label map / segmentation.")
    from boneqct.spine.options import SpineOptions
    from boneqct.spine.pipeline import analyze_spine
    from QCTBoneDensityLib.tables import calibration_from_table_node
    from QCTBoneDensityLib.volumes import volume_from_node

    volume_hu = volume_from_node(ct_node)
    calibration = None if calibration_table_node is None else calibration_from_table_node(calibration_table_node)
    inputs = ({"seeds": seeds_from_markups_node(seeds_node)} if seeds_node is not None else
              {"labels": labels_from_node(labels_node, ct_node, label_scheme)})
    options = SpineOptions(
        levels_used=tuple(parse_levels(levels_used)),
        exclude=tuple(parse_levels(exclude)) if exclude else (), roi_thickness_mm=float(thickness_mm),
        margin_mm=float(margin_mm), cement_threshold_mg_cm3=float(cement_threshold_mg_cm3),
        label_scheme=label_scheme)
    result = analyze_spine(volume_hu, calibration, options, **inputs, reference=reference,
                           age_years=None if age_years is None else float(age_years), sex=sex or None)
    name = ct_node.GetName()
    table = spine_result_to_table_node(result, table_node, name=f"{name} spine")
    labelmap = roi_labelmap_to_node(volume_hu, result, roi_labelmap_node, name=f"{name} spine ROIs")
    segmentation = roi_segmentation_from_labelmap(labelmap, roi_segmentation_node,
                                                  name=f"{name} spine ROI segments")
    centers = roi_centers_to_markups(result, roi_centers_node, name=f"{name} spine ROI centres")
    chart = reference_plot(result, table.GetNodeReference(REFERENCE_CHART_ROLE),
                           name=f"{name} spine reference")
    table.SetNodeReferenceID(REFERENCE_CHART_ROLE, None if chart is None else chart.GetID())
    return {"result": result, "volume": volume_hu, "table": table, "roi_labelmap": labelmap,
            "roi_segmentation": segmentation, "roi_centers": centers, "chart": chart}

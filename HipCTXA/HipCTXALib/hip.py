"""Hip CTXA adapters: scene nodes <-> the core hip pipeline (``boneqct.hip``).

Inputs: the CT volume node (HU), a calibration table (``BoneQCTLib.calibration``, as written
by QCT Bone Density or by this module), an optional seed point (markups point list) or a femur
label map / segmentation (TotalSegmentator's femur_left / femur_right).

Outputs, one per step of the CTXA workflow:
- extraction: the filled femur as a segmentation node (one segment);
- rotation: a linear transform node holding ``FemurFrame.dxa_rotation_ras()`` (put the CT
  under it to see the femur in the DXA position) and, optionally, the BMD volume resampled in
  the DXA position; the frame's angles are attributes of the results table;
- ROIs: the projection as a single-slice scalar volume node in g/cm2 (in the DXA position, as
  the core's NIfTI output) and the regions as a label map on the same grid, named by a
  colour table (neck, trochanter, intertrochanter);
- results: a table node, one row per region, every column with a unit and a description.

MRML-only (no Qt: tested under PyPI's ``slicer-core``); ``boneqct.hip`` is imported inside the
functions, so the file loads before the core's dependencies are installed.
"""

from __future__ import annotations

import math

import numpy as np
import slicer
import slicer.util
import vtk

from BoneQCTLib import tables
from BoneQCTLib.calibration import calibration_from_table_node
from BoneQCTLib.markups import first_point
from BoneQCTLib.volumes import (
    labelmap_to_node,
    patient_age_and_sex,
    segments_to_volume,
    update_node_from_volume,
    volume_from_node,
)

#: Region rows of the results table, in order (``boneqct.hip.rois.ROI_NAMES``).
REGIONS = ("neck", "trochanter", "intertrochanter", "total")
#: Region names shown in the table and the label map's colour table.
REGION_TITLES = {"neck": "Femoral neck", "trochanter": "Trochanter",
                 "intertrochanter": "Intertrochanter", "total": "Total hip"}
#: Label map colours (RGB 0-1) of the regions, by label value (``boneqct.hip.rois.ROI_LABELS``).
REGION_COLORS = {1: (1.0, 0.84, 0.04), 2: (0.19, 0.82, 0.35), 3: (0.04, 0.52, 1.0)}
#: Colour of the femur segment (RGB 0-1).
FEMUR_COLOR = (0.95, 0.91, 0.78)


def _number(value) -> float:
    return math.nan if value is None else float(value)


#: Columns of the results table ("Region" first), one row per region (rows:
#: ``{"region": name, **HipResult.rois[name]}``).
HIP_COLUMNS = tables.columns("hip_regions")

#: Attributes of the results table (frame angles, interpretation, the whole hip.json).
ATTRIBUTE_SIDE = "BoneQCT.Hip.Side"
ATTRIBUTE_MATERIAL = "BoneQCT.Hip.Material"
ATTRIBUTE_NECK_SHAFT_ANGLE_DEG = "BoneQCT.Hip.NeckShaftAngleDeg"
ATTRIBUTE_ANTEVERSION_DEG = "BoneQCT.Hip.AnteversionDeg"
ATTRIBUTE_HEAD_RADIUS_MM = "BoneQCT.Hip.HeadRadiusMm"
ATTRIBUTE_HEAD_FIT_RMS_MM = "BoneQCT.Hip.HeadFitRmsMm"
ATTRIBUTE_NECK_LENGTH_MM = "BoneQCT.Hip.NeckLengthMm"
ATTRIBUTE_POPULATION = "BoneQCT.Hip.ReferencePopulation"
ATTRIBUTE_T_SCORE_MIN = "BoneQCT.Hip.TScoreMin"
ATTRIBUTE_CATEGORY = "BoneQCT.Hip.WHOCategory"
ATTRIBUTE_WARNINGS = "BoneQCT.Hip.Warnings"
#: Kind of the document on the results table: ``HipResult.to_dict()`` as the attribute
#: ``BoneQCT.Hip.JSON`` (the hip.json document without exam metadata).
HIP_DOCUMENT = "Hip"
#: Node references of the results table to the images the report draws (saved with the scene).
REFERENCE_PROJECTION = "BoneQCT.Projection"
REFERENCE_REGIONS = "BoneQCT.Regions"


def _new_node(node_class: str, name: str):
    node = slicer.mrmlScene.AddNewNodeByClass(node_class, name)
    node.CreateDefaultDisplayNodes()
    return node


# ----------------------------------------------------------------------------- inputs

def _is_side_femur_segment(name: str, side: str) -> bool:
    words = name.lower().replace("_", " ").replace("-", " ").split()
    return "femur" in words and side in words


def femur_labels_from_node(node, reference_volume_node, side: str,
                           label_scheme: str = "totalsegmentator"):
    """The femur label map (core ``Volume`` in ``label_scheme`` numbering) from a node.

    Args:
        node: a ``vtkMRMLLabelMapVolumeNode`` in ``label_scheme`` numbering (used on its own
            grid), or a ``vtkMRMLSegmentationNode`` whose segment of ``side`` is named like
            "femur_left" / "Femur left" / "left femur" (exported onto the CT grid and given
            the scheme's label value of that femur).
        reference_volume_node: the CT volume node (grid of an exported segmentation).
        side: "left" or "right".
        label_scheme: "totalsegmentator" or "phantom" (``boneqct.hip.extraction.FEMUR_LABELS``).
    """
    from boneqct.hip.extraction import FEMUR_LABELS

    if node is None:
        raise ValueError("Select the femur label map or segmentation.")
    if label_scheme not in FEMUR_LABELS:
        raise ValueError(f"Unknown label scheme '{label_scheme}'; use one of "
                         f"{', '.join(FEMUR_LABELS)}.")
    if not node.IsA("vtkMRMLSegmentationNode"):
        return volume_from_node(node)
    segmentation = node.GetSegmentation()
    segment_ids = vtk.vtkStringArray()
    for index in range(segmentation.GetNumberOfSegments()):
        if _is_side_femur_segment(segmentation.GetNthSegment(index).GetName() or "", side):
            segment_ids.InsertNextValue(segmentation.GetNthSegmentID(index))
    if segment_ids.GetNumberOfValues() != 1:
        raise ValueError(f"The segmentation '{node.GetName()}' needs exactly one segment of the "
                         f"{side} femur (named e.g. femur_{side}); it has "
                         f"{segment_ids.GetNumberOfValues()}.")
    exported = segments_to_volume(node, segment_ids, reference_volume_node)
    value = FEMUR_LABELS[label_scheme][side]
    return exported.with_array(np.where(exported.array_kji > 0, value, 0).astype(np.uint8))


# ----------------------------------------------------------------------------- outputs

def hip_result_to_table_node(result, table_node=None, name: str = "BoneQCT hip"):
    """Write a ``HipResult`` into a table node: one row per region, the frame as attributes.

    Columns: "Region" then :data:`HIP_COLUMNS`, each with a unit label and a description;
    missing values (a T-score without reference data) are NaN. Attributes ``BoneQCT.Hip.*``
    hold the side, material, the frame (neck-shaft angle, anteversion, head radius and fit,
    neck length), the reference population, lowest T-score, WHO category, warnings, and
    ``BoneQCT.Hip.JSON`` the whole result (``HipResult.to_dict()``).
    """
    table_node = tables.table_node_or_new(table_node, name)
    tables.write_table(table_node, HIP_COLUMNS,
                ({"region": region, **result.rois[region]} for region in REGIONS))
    frame, interpretation = result.frame, result.interpretation
    attributes = {
        ATTRIBUTE_SIDE: result.side,
        ATTRIBUTE_MATERIAL: str(result.calibration.material),
        ATTRIBUTE_NECK_SHAFT_ANGLE_DEG: repr(float(frame.neck_shaft_angle_deg)),
        ATTRIBUTE_ANTEVERSION_DEG: repr(float(frame.anteversion_deg)),
        ATTRIBUTE_HEAD_RADIUS_MM: repr(float(frame.head_radius_mm)),
        ATTRIBUTE_HEAD_FIT_RMS_MM: repr(float(frame.head_fit_rms_mm)),
        ATTRIBUTE_NECK_LENGTH_MM: repr(float(frame.neck_length_mm)),
        ATTRIBUTE_POPULATION: interpretation.get("population") or "",
        ATTRIBUTE_T_SCORE_MIN: "" if interpretation.get("t_score_min") is None
        else repr(float(interpretation["t_score_min"])),
        ATTRIBUTE_CATEGORY: interpretation.get("category") or "",
        ATTRIBUTE_WARNINGS: "\n".join(str(w) for w in result.warnings),
    }
    for key, value in attributes.items():
        table_node.SetAttribute(key, value)
    tables.store_document(table_node, HIP_DOCUMENT, result.to_dict())
    return table_node


def has_hip_result(table_node) -> bool:
    """Whether ``table_node`` holds a result written by :func:`hip_result_to_table_node`."""
    return tables.has_document(table_node, HIP_DOCUMENT)


def hip_summary_text(table_node) -> str:
    """Neck and total-hip aBMD, T-scores, WHO category, frame angles and warnings (or "")."""
    if not has_hip_result(table_node):
        return ""
    document = tables.read_document(table_node, HIP_DOCUMENT)
    rois = document["rois"]
    parts = []
    for region in ("neck", "total"):
        roi = rois[region]
        text = f"{REGION_TITLES[region]} {_number(roi['abmd_g_cm2']):.3f} g/cm2"
        if roi.get("t_score") is not None:
            text += f" (T {roi['t_score']:.2f})"
        parts.append(text)
    text = f"{document['side'].capitalize()} hip: " + ", ".join(parts)
    category = table_node.GetAttribute(ATTRIBUTE_CATEGORY)
    if category:
        text += f"; WHO category: {category}"
    head_neck = (document.get("head_neck") or {}).get("regions")
    if head_neck:
        values = " / ".join("-" if region["vbmd_mg_cm3"] is None else f"{region['vbmd_mg_cm3']:.0f}"
                            for region in head_neck.values())
        text += (f"\n{' / '.join(head_neck).capitalize()} vBMD: {values} mg/cm3 "
                 f"{table_node.GetAttribute(ATTRIBUTE_MATERIAL)}")
    text += "\n" + hip_frame_text(table_node)
    warnings = table_node.GetAttribute(ATTRIBUTE_WARNINGS)
    if warnings:
        text += "\nWarnings: " + warnings.replace("\n", "; ")
    return text


def hip_frame_text(table_node) -> str:
    """The anatomical frame's angles and head radius stored on a results table (or "")."""
    if not has_hip_result(table_node):
        return ""
    return (f"Neck-shaft angle {float(table_node.GetAttribute(ATTRIBUTE_NECK_SHAFT_ANGLE_DEG)):.1f}"
            f" deg, anteversion (to the scanner) "
            f"{float(table_node.GetAttribute(ATTRIBUTE_ANTEVERSION_DEG)):.1f} deg, head radius "
            f"{float(table_node.GetAttribute(ATTRIBUTE_HEAD_RADIUS_MM)):.1f} mm")


def femur_segmentation_node(result, segmentation_node=None, name: str = "BoneQCT femur"):
    """The extracted (filled) femur as a segmentation node with one segment.

    The mask is ``result.femur_mask_kji`` on ``result.volume_bmd``'s grid; ``segmentation_node``
    is emptied and reused when given.
    """
    grid = result.volume_bmd
    mask = grid.with_array(np.asarray(result.femur_mask_kji, dtype=np.uint8))
    if segmentation_node is None:
        segmentation_node = _new_node("vtkMRMLSegmentationNode", name)
    segmentation_node.GetSegmentation().RemoveAllSegments()
    scene = segmentation_node.GetScene() or slicer.mrmlScene
    temporary = update_node_from_volume(mask, name="__BoneQCT_temporary_femur_mask__",
                                        node_class="vtkMRMLLabelMapVolumeNode")
    try:
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(temporary)
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
                temporary, segmentation_node):
            raise ValueError("The femur mask could not be imported into a segmentation.")
    finally:
        scene.RemoveNode(temporary)
    segment = segmentation_node.GetSegmentation().GetNthSegment(0)
    segment.SetName(f"femur_{result.side}")
    segment.SetColor(FEMUR_COLOR)
    return segmentation_node


def dxa_transform_node(frame, transform_node=None, name: str = "BoneQCT DXA position"):
    """A linear transform node holding ``frame.dxa_rotation_ras()`` (to parent): the rotation
    about the head centre that brings the femur to the DXA position."""
    if transform_node is None:
        transform_node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    transform_node.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(frame.dxa_rotation_ras()))
    return transform_node


def transform_matrix(transform_node) -> np.ndarray:
    """The 4x4 to-parent matrix of a linear transform node."""
    matrix = vtk.vtkMatrix4x4()
    transform_node.GetMatrixTransformToParent(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def projection_volume(result):
    """The core's projection image as a one-slice ``Volume`` in g/cm2, in the DXA position
    (``HipResult.projection_image``: what hip_projection.nii.gz holds)."""
    return result.projection_image


def projection_to_volume_node(result, node=None, name: str = "BoneQCT hip projection"):
    """The areal density image (g/cm2) as a single-slice scalar volume node, in the DXA position."""
    volume = projection_volume(result)
    node = update_node_from_volume(volume, node, name=name)
    node.SetAttribute("BoneQCT.Quantity", "Areal BMD (g/cm2)")
    node.SetAttribute("BoneQCT.PixelMm", repr(float(result.projection_grid["pixel_mm"])))
    display = node.GetDisplayNode()
    if display is not None:
        display.AutoWindowLevelOff()
        top = float(np.max(volume.array_kji)) if volume.array_kji.size else 1.0
        display.SetWindowLevelMinMax(0.0, max(top, 1e-6))
    return node


def roi_labelmap_to_node(result, node=None, name: str = "BoneQCT hip regions"):
    """The regions as a single-slice label map on the projection's grid (1 neck, 2 trochanter,
    3 intertrochanter; the total hip is their union), named by a colour table
    (``HipResult.regions_volume``: what hip_regions.nii.gz holds)."""
    names = dict(zip(sorted(REGION_COLORS), REGIONS[:3], strict=True))
    return labelmap_to_node(result.regions_volume(), names, node=node, name=name,
                            colors=REGION_COLORS, colors_attribute="BoneQCT.HipRegionColors",
                            quantity="Hip regions (1 neck, 2 trochanter, 3 intertrochanter)")


def rotated_volume_to_node(result, node=None, name: str = "BoneQCT BMD in DXA position"):
    """The BMD volume around the femur resampled in the DXA position (mg/cm3)."""
    from boneqct.hip.projection import rotated_volume

    volume = rotated_volume(result.volume_bmd, result.femur_mask_kji, result.frame)
    node = update_node_from_volume(volume, node, name=name)
    node.SetAttribute("BoneQCT.Quantity", f"BMD (mg/cm3 {result.calibration.material})")
    return node


# ----------------------------------------------------------------------------- whole analysis

def run_hip(ct_node, calibration_table_node, side: str, options=None, *, seed_node=None,
            labels_node=None, population: str | None = "nhanes3", sex: str | None = None,
            age_years: float | None = None, table_node=None, segmentation_node=None,
            transform_node=None, projection_node=None, roi_labelmap_node=None,
            rotated_volume_node=None, rotated_volume: bool = True) -> dict:
    """Read the nodes, run ``boneqct.hip.pipeline.analyze_hip``, write the result nodes.

    The results table holds the result's document, the exam metadata the report shows and
    references to the projection and region nodes, so the report can be written from the
    table alone, also after the scene is saved and reloaded (:func:`export_hip_report`).

    Args:
        ct_node: CT volume node (HU).
        calibration_table_node: a BoneQCT calibration table (required: CTXA needs BMD).
        side: "left" or "right".
        options: a ``boneqct.hip.options.HipOptions`` (None: the defaults).
        seed_node: optional markups point list, its first point in the femoral head or neck.
        labels_node: optional femur label map / segmentation (``options.label_scheme``
            numbering); give at most one of ``seed_node`` and ``labels_node``.
        population ("nhanes3", "chinese-women" or None), sex ("F"/"M"), age_years.
        table_node, segmentation_node, transform_node, projection_node, roi_labelmap_node,
        rotated_volume_node: output nodes to overwrite (None creates them).
        rotated_volume: whether to resample the BMD volume in the DXA position.

    Returns:
        ``{"result": HipResult, "volume": the CT as a core Volume, "table", "segmentation",
        "transform", "projection", "roi_labelmap", "rotated_volume" (None when not asked)}``.
    """
    if ct_node is None:
        raise ValueError("Select the CT volume to measure.")
    if seed_node is not None and labels_node is not None:
        raise ValueError("Give either a seed point or a femur label map, not both.")
    from boneqct.hip.options import HipOptions
    from boneqct.hip.pipeline import analyze_hip

    options = options or HipOptions()
    calibration = None
    if calibration_table_node is not None:
        calibration = calibration_from_table_node(calibration_table_node)
    volume_hu = volume_from_node(ct_node)
    labels = None if labels_node is None else femur_labels_from_node(labels_node, ct_node, side,
                                                                     options.label_scheme)
    age_years, sex = patient_age_and_sex(volume_hu, age_years, sex)
    age_years = None if age_years is None else float(age_years)
    result = analyze_hip(volume_hu, calibration, options, side=side,
                         seed_ras_mm=first_point(seed_node, "in the femoral head"), labels=labels,
                         population=population, sex=sex, age_years=age_years)
    name = f"{ct_node.GetName()} {side} hip"
    outputs = {
        "result": result, "volume": volume_hu,
        "table": hip_result_to_table_node(result, table_node, name=name),
        "segmentation": femur_segmentation_node(result, segmentation_node, name=f"{name} femur"),
        "transform": dxa_transform_node(result.frame, transform_node, name=f"{name} DXA position"),
        "projection": projection_to_volume_node(result, projection_node, name=f"{name} projection"),
        "roi_labelmap": roi_labelmap_to_node(result, roi_labelmap_node, name=f"{name} regions"),
        "rotated_volume": None,
    }
    if rotated_volume:
        outputs["rotated_volume"] = rotated_volume_to_node(result, rotated_volume_node,
                                                           name=f"{name} BMD in DXA position")
    table = outputs["table"]
    table.SetNodeReferenceID(REFERENCE_PROJECTION, outputs["projection"].GetID())
    table.SetNodeReferenceID(REFERENCE_REGIONS, outputs["roi_labelmap"].GetID())
    tables.store_exam_of(table, volume_hu, ct_node, age_years, sex)
    return outputs


def can_export_hip_report(table_node) -> bool:
    """Whether ``table_node`` holds a hip result and references its projection and region
    images (what the report draws)."""
    return has_hip_result(table_node) and all(
        tables.referenced_volume(table_node, role) is not None
        for role in (REFERENCE_PROJECTION, REFERENCE_REGIONS))


def hip_result_from_table_node(table_node):
    """The ``HipResult`` a results table holds (``HipResult.from_dict`` of its document), with
    the projection image and region labels of the nodes it references: what the report needs.

    Raises:
        ValueError: the table holds no hip result, or its projection or regions are gone.
    """
    from boneqct.hip.pipeline import HipResult

    if not can_export_hip_report(table_node):
        raise ValueError("Measure the hip first: the report needs the results table with its "
                         "projection and region volumes.")
    projection = volume_from_node(tables.referenced_volume(table_node, REFERENCE_PROJECTION))
    regions = volume_from_node(tables.referenced_volume(table_node, REFERENCE_REGIONS))
    return HipResult.from_dict(tables.read_document(table_node, HIP_DOCUMENT),
                               projection_image=projection, roi_labels=regions.array_kji[0])


def export_hip_report(folder, table_node, anonymize: bool = False) -> dict:
    """Write hip.json, hip.csv, the projection and its regions (NIfTI, PNG) and hip_report.pdf
    of the result held by ``table_node`` (:func:`hip_result_from_table_node`) into ``folder``;
    returns their paths by key ("json", "csv", "projection", "regions", "png", "report")."""
    from boneqct.hip.outputs import write_hip_outputs

    return write_hip_outputs(folder, hip_result_from_table_node(table_node),
                             tables.read_exam(table_node), anonymize=anonymize)

"""Tissue adapters: scene nodes <-> the core's tissue composition (``boneqct.tissue``).

Inputs: the CT volume node, a calibration table (``BoneQCTLib.calibration``: phantom, internal
or manual), an optional markups point list with the L3 point for the skeletal muscle area.
Outputs: the tissue composition as two table nodes with a unit label and a description on every column
(as Slicer's SegmentStatistics does):

* compartments: one row per region and compartment (image and spine: fat, muscle, skin,
  cortical and cancellous mineral; image: subcutaneous and visceral fat), mass (g), area (cm2)
  and volume (cm3), the rows of the core's ``tissue.csv``;
* measures: one row per region, cortical/cancellous/integral BMD (mg/cm3) and the fat/lean
  and bone/muscle ratios by volume and by mass.

The reference densities, fitted tissue CT values and thresholds are attributes of the
compartments table (``BoneQCT.Tissue.Reference.<key>``), with the whole tissue.json document
(``BoneQCT.Tissue.JSON``) so the report can be written again from a saved scene. The tissue
classes are also shown as a label map volume node on the CT grid (the core's
``tissue_label_map``), whose colour table names each class.

Only ``slicer.vtkMRML*``, ``slicer.util`` and ``vtk`` are used (no Qt); the core is imported
inside the functions, so this file loads before the core's dependencies are installed.
"""

from __future__ import annotations

import numpy as np

from BoneQCTLib import tables
from BoneQCTLib.markups import defined_points

#: Document kind of a compartments table: ``TissueResult.to_dict()`` (tissue.json).
TISSUE_KIND = "Tissue"
#: Attribute holding the tissue.json document (``BoneQCT.Tissue.JSON``).
ATTRIBUTE_TISSUE_JSON = tables.document_attribute(TISSUE_KIND)
#: Prefix of the attributes holding ``result["reference"]`` numbers (densities, CT values, thresholds).
ATTRIBUTE_TISSUE_REFERENCE_PREFIX = "BoneQCT.Tissue.Reference."
ATTRIBUTE_TISSUE_CALIBRATION = "BoneQCT.Tissue.Calibration"
ATTRIBUTE_TISSUE_SLICES = "BoneQCT.Tissue.Slices"
ATTRIBUTE_TISSUE_L3_AREA_CM2 = "BoneQCT.Tissue.SkeletalMuscleAreaL3Cm2"
ATTRIBUTE_TISSUE_L3_SLICE = "BoneQCT.Tissue.SkeletalMuscleL3Slice"
#: Node reference role from the compartments table to the measures table.
MEASURES_TABLE_ROLE = "BoneQCT.TissueMeasures"

#: Compartments of each region, in the order of the core's ``boneqct.tissue.composition.TISSUES``.
REGION_TISSUES = ("fat", "muscle", "skin", "cortical_mineral", "cancellous_mineral")
#: Fat compartments of the whole image (``result["fat_compartments"]``).
FAT_COMPARTMENTS = ("subcutaneous_fat", "visceral_fat")

#: Columns of the compartments table (region, compartment, mass, area, volume) and of the
#: measures table (region, densities and ratios; an empty ratio is NaN). Rows are dicts
#: (:func:`tissue_result_to_table_nodes`).
COMPARTMENT_COLUMNS = tables.columns("tissue_compartments")
MEASURE_COLUMNS = tables.columns("tissue_measures")

#: Display colours (RGB 0-1) of the tissue classes of ``boneqct.tissue.tissue_label_map``, by
#: class name (label 0, outside the body, is transparent).
TISSUE_CLASS_COLORS = {
    "skin": (0.87, 0.68, 0.58),
    "subcutaneous_fat": (0.98, 0.88, 0.30),
    "visceral_fat": (0.96, 0.55, 0.10),
    "muscle": (0.75, 0.20, 0.20),
    "cortical_bone": (0.98, 0.98, 0.92),
    "cancellous_bone": (0.45, 0.65, 0.95),
    "other": (0.55, 0.55, 0.55),
}
#: Attribute marking the colour tables of tissue label maps (reused on a re-run).
ATTRIBUTE_TISSUE_LABEL_COLORS = "BoneQCT.TissueLabelColors"

# ----------------------------------------------------------------------------- markups inputs

def l3_point_from_markups(node) -> np.ndarray | None:
    """The point (RAS mm) in L3 for the skeletal muscle area, or None without a node.

    The control point labelled L3 (so the spine seed list can be reused), else the only
    placed point of the list.

    Raises:
        ValueError: no placed point, or several points none of which is labelled L3.
    """
    if node is None:
        return None
    points = defined_points(node)
    named = [position for label, position in points if label.strip().upper() == "L3"]
    if named:
        return named[0]
    if len(points) == 1:
        return points[0][1]
    raise ValueError(f"'{node.GetName()}' has {len(points)} placed points and none is named L3: "
                     "place one point in L3, or name the L3 point 'L3'.")


# ----------------------------------------------------------------------------- tissue outputs

def tissue_result_to_table_nodes(result, table_node=None, measures_table_node=None,
                                 name: str = "BoneQCT tissue"):
    """Write a ``boneqct.tissue.TissueResult`` into the compartments and measures tables.

    Returns:
        ``(compartments table, measures table)``. Missing values (a ratio with an empty
        denominator) are NaN. The compartments table references the measures table (role
        ``BoneQCT.TissueMeasures``) and holds the reference values and the document as
        attributes (see the module docstring).
    """
    table_node = tables.table_node_or_new(table_node, name)
    measures_table_node = tables.table_node_or_new(measures_table_node, f"{name} measures")

    was_modifying = table_node.StartModify()
    rows = [{**result.regions[region][tissue], "region": region, "compartment": tissue}
            for region in result.regions for tissue in REGION_TISSUES]
    rows += [{**result.fat_compartments[compartment], "region": "image", "compartment": compartment}
             for compartment in FAT_COMPARTMENTS]
    tables.write_table(table_node, COMPARTMENT_COLUMNS, rows)
    for key, value in result.reference.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            table_node.SetAttribute(ATTRIBUTE_TISSUE_REFERENCE_PREFIX + key, repr(float(value)))
    calibration = result.reference["calibration"]
    table_node.SetAttribute(ATTRIBUTE_TISSUE_CALIBRATION,
                            f"{calibration['method']} ({calibration['material']})")
    extent = result.extent
    table_node.SetAttribute(ATTRIBUTE_TISSUE_SLICES, f"{extent['k_first']}:{extent['k_stop'] - 1}")
    muscle_l3 = result.skeletal_muscle_l3
    table_node.SetAttribute(ATTRIBUTE_TISSUE_L3_AREA_CM2,
                            "" if muscle_l3 is None else repr(float(muscle_l3["area_cm2"])))
    table_node.SetAttribute(ATTRIBUTE_TISSUE_L3_SLICE, "" if muscle_l3 is None else str(muscle_l3["k"]))
    tables.store_document(table_node, TISSUE_KIND, result.to_dict())
    table_node.SetNodeReferenceID(MEASURES_TABLE_ROLE, measures_table_node.GetID())
    table_node.EndModify(was_modifying)

    tables.write_table(measures_table_node, MEASURE_COLUMNS,
                [{**result.regions[region], "region": region} for region in result.regions])
    return table_node, measures_table_node


def has_tissue_result(table_node) -> bool:
    """Whether ``table_node`` holds a result written by :func:`tissue_result_to_table_nodes`."""
    return tables.has_document(table_node, TISSUE_KIND)


def tissue_document_from_table_node(table_node) -> dict:
    """The tissue.json document stored on a compartments table (what the report is written from)."""
    if not has_tissue_result(table_node):
        raise ValueError("The selected table holds no tissue composition: run the tissue "
                         "analysis first, or select the table it produced.")
    return tables.read_document(table_node, TISSUE_KIND)


def tissue_result_from_table_node(table_node):
    """The ``boneqct.tissue.TissueResult`` stored on a compartments table (without masks)."""
    from boneqct.tissue import TissueResult

    return TissueResult.from_dict(tissue_document_from_table_node(table_node))


def tissue_summary_text(table_node) -> str:
    """A few lines: calibration, slices, fitted CT values and thresholds, L3 muscle area."""
    if not has_tissue_result(table_node):
        return ""

    def reference(key):
        return float(table_node.GetAttribute(ATTRIBUTE_TISSUE_REFERENCE_PREFIX + key))

    text = (f"Slices {table_node.GetAttribute(ATTRIBUTE_TISSUE_SLICES)}, calibration "
            f"{table_node.GetAttribute(ATTRIBUTE_TISSUE_CALIBRATION)}."
            f"\nFat / muscle CT value: {reference('fat_hu'):.1f} / {reference('muscle_hu'):.1f} HU "
            f"({reference('fat_density_g_cm3'):g} / {reference('muscle_density_g_cm3'):g} g/cm3); "
            f"fat/muscle threshold {reference('fat_muscle_threshold_hu'):.1f} HU; cortical "
            f"{reference('cortical_threshold_mg_cm3'):g} mg/cm3 ({reference('cortical_threshold_hu'):.0f} HU).")
    area = table_node.GetAttribute(ATTRIBUTE_TISSUE_L3_AREA_CM2)
    if area:
        text += (f"\nSkeletal muscle area at L3 (slice "
                 f"{table_node.GetAttribute(ATTRIBUTE_TISSUE_L3_SLICE)}): {float(area):.1f} cm2")
    return text


def tissue_labelmap_to_node(volume, result, node=None, name: str = "BoneQCT tissue classes"):
    """The tissue classes of ``result`` as a label map volume node on the grid of ``volume``.

    The voxels are the core's ``boneqct.tissue.tissue_label_map(volume, result)``; the colour
    table names each label as the core's ``metadata["label_table"]`` does (0 outside, 1 skin,
    2 subcutaneous fat, ...) with the colours of :data:`TISSUE_CLASS_COLORS`. ``node`` is
    overwritten when given.
    """
    from boneqct.tissue import tissue_label_map
    from BoneQCTLib.volumes import labelmap_to_node

    labels = tissue_label_map(volume, result)
    names = {int(value): label for value, label in labels.metadata["label_table"].items()}
    colors = {value: TISSUE_CLASS_COLORS[label] for value, label in names.items()
              if label in TISSUE_CLASS_COLORS}
    quantity = "Tissue classes (" + ", ".join(f"{v} {names[v]}" for v in sorted(names)) + ")"
    return labelmap_to_node(labels, names, node, name=name, colors=colors,
                            colors_attribute=ATTRIBUTE_TISSUE_LABEL_COLORS, quantity=quantity)


def run_tissue(ct_node, calibration_table_node, options=None, *, l3_node=None, table_node=None,
               measures_table_node=None, labelmap_node=None) -> dict:
    """Read the nodes, run ``boneqct.tissue.analyze_tissue``, write the two tables.

    Args:
        ct_node: axial CT volume node (HU).
        calibration_table_node: a calibration table (phantom, internal or manual); required,
            the thresholds and mineral densities come from it.
        options: a ``boneqct.tissue.TissueOptions`` (slices first, last both included;
            thresholds); None: the defaults (the whole scan).
        l3_node: optional markups point list with the point in L3 (:func:`l3_point_from_markups`).
        table_node, measures_table_node: output tables to overwrite (None creates them).
        labelmap_node: label map volume node receiving the tissue classes
            (:func:`tissue_labelmap_to_node`); None creates one.

    Returns:
        ``{"result": the core's TissueResult (with its masks), "table", "measures_table",
        "labelmap"}``.
    """
    if ct_node is None:
        raise ValueError("Select the CT volume to analyse.")
    if calibration_table_node is None:
        raise ValueError("Tissue analysis needs a calibration: calibrate first (phantom, "
                         "internal or manual).")
    from boneqct.tissue import analyze_tissue
    from BoneQCTLib.calibration import calibration_from_table_node
    from BoneQCTLib.volumes import volume_from_node

    calibration = calibration_from_table_node(calibration_table_node)
    volume = volume_from_node(ct_node)
    result = analyze_tissue(volume, calibration, options,
                            l3_point_ras_mm=l3_point_from_markups(l3_node))
    table, measures = tissue_result_to_table_nodes(result, table_node, measures_table_node,
                                                   name=f"{ct_node.GetName()} tissue")
    labelmap = tissue_labelmap_to_node(volume, result, labelmap_node,
                                       name=f"{ct_node.GetName()} tissue classes")
    return {"result": result, "table": table, "measures_table": measures, "labelmap": labelmap}


def export_tissue_report(out_dir, table_node, metadata: dict | None = None,
                         anonymize: bool = False) -> dict:
    """Write tissue.json, tissue.csv and tissue_report.pdf from a compartments table.

    The report is written from the document stored on the table, so it works on a saved
    scene too. Returns the core's ``{"json", "csv", "report"}`` paths.
    """
    from boneqct.tissue import write_tissue_outputs

    return write_tissue_outputs(out_dir, tissue_result_from_table_node(table_node), metadata,
                                anonymize=anonymize)

"""Calibration adapters: :class:`boneqct.calibration.Calibration` <-> ``vtkMRMLTableNode``.

The table has one row per phantom rod; every column has a unit label and a description
(``SetColumnUnitLabel`` / ``SetColumnDescription``, as Slicer's SegmentStatistics does).
The fit itself (material, slope, intercept, R2, warnings) is stored as attributes of the
table node, so the calibration is saved with the scene and can be rebuilt from it.
"""

from __future__ import annotations

import slicer
import vtk

#: Attribute names on the table node that hold the fit summary.
ATTRIBUTE_MATERIAL = "BoneQCT.Material"
ATTRIBUTE_SLOPE_HU_PER_MG_CM3 = "BoneQCT.SlopeHUPerMgCm3"
ATTRIBUTE_INTERCEPT_HU = "BoneQCT.InterceptHU"
ATTRIBUTE_R2 = "BoneQCT.R2"
ATTRIBUTE_WARNINGS = "BoneQCT.Warnings"

#: (column name, key in a rod dict, vtk array class, unit label, description)
ROD_COLUMNS = (
    ("Rod", "name", vtk.vtkStringArray, "", "Rod name as printed on the phantom certificate"),
    ("Density (mg/cm3)", "density_mg_cm3", vtk.vtkDoubleArray, "mg/cm3",
     "Certified mineral density of the rod, in the phantom's material"),
    ("Measured (HU)", "measured_hu", vtk.vtkDoubleArray, "HU",
     "Mean CT number measured inside the rod"),
    ("SD (HU)", "sd_hu", vtk.vtkDoubleArray, "HU",
     "Standard deviation of the CT numbers inside the rod"),
    ("Voxels", "n_voxels", vtk.vtkIntArray, "voxels",
     "Number of voxels averaged inside the rod"),
    ("Residual (HU)", "residual_hu", vtk.vtkDoubleArray, "HU",
     "Measured minus fitted CT number of the rod"),
)


def calibration_to_table_node(calibration, table_node=None, name: str = "BoneQCT calibration"):
    """Write a calibration into a table node (one row per rod, fit summary as attributes).

    Args:
        calibration: a ``boneqct.calibration.Calibration``.
        table_node: an existing ``vtkMRMLTableNode`` to overwrite; None adds a new one to
            ``slicer.mrmlScene`` named ``name``.

    Returns:
        The table node. Its attributes ``BoneQCT.Material``, ``BoneQCT.SlopeHUPerMgCm3``,
        ``BoneQCT.InterceptHU``, ``BoneQCT.R2`` and ``BoneQCT.Warnings`` hold the fit.
    """
    if table_node is None:
        table_node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", name)
    was_modifying = table_node.StartModify()
    table_node.RemoveAllColumns()
    rods = list(calibration.rods or [])
    for column_name, key, array_class, unit, description in ROD_COLUMNS:
        column = array_class()
        column.SetName(column_name)
        for rod in rods:
            value = rod[key]
            if array_class is vtk.vtkStringArray:
                column.InsertNextValue(str(value))
            elif array_class is vtk.vtkIntArray:
                column.InsertNextValue(int(value))
            else:
                column.InsertNextValue(float(value))
        table_node.AddColumn(column)
        table_node.SetColumnUnitLabel(column_name, unit)
        table_node.SetColumnDescription(column_name, description)
    r2 = calibration.r2
    table_node.SetAttribute(ATTRIBUTE_MATERIAL, str(calibration.material))
    table_node.SetAttribute(ATTRIBUTE_SLOPE_HU_PER_MG_CM3, repr(float(calibration.slope_hu_per_mg_cm3)))
    table_node.SetAttribute(ATTRIBUTE_INTERCEPT_HU, repr(float(calibration.intercept_hu)))
    table_node.SetAttribute(ATTRIBUTE_R2, "" if r2 is None else repr(float(r2)))
    table_node.SetAttribute(ATTRIBUTE_WARNINGS, "\n".join(str(w) for w in calibration.warnings or []))
    table_node.EndModify(was_modifying)
    return table_node


def calibration_from_table_node(table_node):
    """Rebuild the HU -> density calibration stored on a table node.

    Uses the fit summary attributes written by :func:`calibration_to_table_node` (material,
    slope, intercept), so the returned calibration converts HU exactly as the original did;
    per-rod measurements stay in the table.

    Raises:
        ValueError: if the table does not hold a BoneQCT calibration.
    """
    if table_node is None or table_node.GetAttribute(ATTRIBUTE_SLOPE_HU_PER_MG_CM3) is None:
        raise ValueError(
            "The selected table does not hold a BoneQCT calibration: run Calibrate first, or "
            "select the calibration table it produced."
        )
    from boneqct.calibration import manual_calibration

    return manual_calibration(
        slope_hu_per_mg_cm3=float(table_node.GetAttribute(ATTRIBUTE_SLOPE_HU_PER_MG_CM3)),
        intercept_hu=float(table_node.GetAttribute(ATTRIBUTE_INTERCEPT_HU)),
        material=table_node.GetAttribute(ATTRIBUTE_MATERIAL),
    )

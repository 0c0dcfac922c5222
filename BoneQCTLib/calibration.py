"""Calibration adapters: :class:`boneqct.calibration.Calibration` <-> ``vtkMRMLTableNode``.

Calibrations are made here from the scene (a phantom in the scan, the patient's own tissues
with optional markups points, or a known line) for every module. The table has one row per
phantom rod (or tissue ROI of an internal calibration), written by
the shared column-spec writer (:func:`BoneQCTLib.tables.write_table`: units and descriptions
on every column). The whole calibration (``Calibration.to_dict()``, including any per-slice
line) is the table's document ``BoneQCT.Calibration.JSON``, with its summary (material,
slope, intercept, R2, warnings) in readable attributes beside it, so the calibration is saved
with the scene and rebuilt exactly from it. All modules read their calibration from here.
"""

from __future__ import annotations

import logging

import numpy as np

from BoneQCTLib.markups import points_by_name
from BoneQCTLib.tables import (
    columns,
    document_attribute,
    has_document,
    read_document,
    store_document,
    table_node_or_new,
    write_table,
)
from BoneQCTLib.volumes import volume_from_node

#: Attribute names on the table node that hold the fit summary.
ATTRIBUTE_MATERIAL = "BoneQCT.Material"
ATTRIBUTE_SLOPE_HU_PER_MG_CM3 = "BoneQCT.SlopeHUPerMgCm3"
ATTRIBUTE_INTERCEPT_HU = "BoneQCT.InterceptHU"
ATTRIBUTE_R2 = "BoneQCT.R2"
ATTRIBUTE_WARNINGS = "BoneQCT.Warnings"
#: How the calibration was obtained: "phantom", "internal" (phantomless) or "manual".
ATTRIBUTE_METHOD = "BoneQCT.CalibrationMethod"
#: Document kind of a calibration table (attribute ``BoneQCT.Calibration.JSON``).
CALIBRATION_KIND = "Calibration"
#: Attribute holding ``Calibration.to_dict()`` as JSON (what :func:`calibration_from_table_node` reads).
ATTRIBUTE_CALIBRATION_JSON = document_attribute(CALIBRATION_KIND)

#: One row per rod (a rod dict of ``Calibration.rods``).
ROD_COLUMNS = columns("calibration_rods")


def calibration_to_table_node(calibration, table_node=None, name: str = "BoneQCT calibration"):
    """Write a calibration into a table node (one row per rod, fit summary as attributes).

    Args:
        calibration: a ``boneqct.calibration.Calibration``.
        table_node: an existing ``vtkMRMLTableNode`` to overwrite; None adds a new one to
            ``slicer.mrmlScene`` named ``name``.

    Returns:
        The table node. Its attribute ``BoneQCT.Calibration.JSON`` holds the calibration;
        ``BoneQCT.Material``, ``BoneQCT.SlopeHUPerMgCm3``, ``BoneQCT.InterceptHU``,
        ``BoneQCT.R2``, ``BoneQCT.Warnings`` and ``BoneQCT.CalibrationMethod`` summarise it
        for display (:func:`calibration_summary_text`).
    """
    table_node = table_node_or_new(table_node, name)
    was_modifying = table_node.StartModify()
    write_table(table_node, ROD_COLUMNS, calibration.rods or [])
    r2 = calibration.r2
    table_node.SetAttribute(ATTRIBUTE_MATERIAL, str(calibration.material))
    table_node.SetAttribute(ATTRIBUTE_SLOPE_HU_PER_MG_CM3, repr(float(calibration.slope_hu_per_mg_cm3)))
    table_node.SetAttribute(ATTRIBUTE_INTERCEPT_HU, repr(float(calibration.intercept_hu)))
    table_node.SetAttribute(ATTRIBUTE_R2, "" if r2 is None else repr(float(r2)))
    table_node.SetAttribute(ATTRIBUTE_WARNINGS, "\n".join(str(w) for w in calibration.warnings or []))
    table_node.SetAttribute(ATTRIBUTE_METHOD, str(calibration.method))
    store_document(table_node, CALIBRATION_KIND, calibration.to_dict())
    table_node.EndModify(was_modifying)
    return table_node


def phantom_calibration_to_table_node(volume_node, phantom_name: str, table_node=None,
                                      slice_range=None):
    """Fit the phantom seen in ``volume_node`` and record it in a (new or given) table node.

    ``slice_range`` is an optional (first, last) k-index range holding the phantom, both
    included (``boneqct.calibration.options.CalibrationOptions.slices``); QC warnings
    go to the log (they carry no patient identity) and into the table's attributes.
    """
    if volume_node is None:
        raise ValueError("Select the CT volume that shows the calibration phantom.")
    from boneqct.calibration.options import CalibrationOptions
    from boneqct.calibration.pipeline import calibrate

    slices = () if slice_range is None else (int(slice_range[0]), int(slice_range[1]))
    calibration = calibrate(volume_from_node(volume_node),
                            CalibrationOptions(phantom=phantom_name, slices=slices))
    for warning in calibration.warnings:
        logging.warning(f"BoneQCT calibration: {warning}")
    return calibration_to_table_node(calibration, table_node,
                                     name=f"{volume_node.GetName()} calibration ({phantom_name})")


def manual_calibration_to_table_node(slope_hu_per_mg_cm3: float, intercept_hu: float,
                                     material: str, table_node=None):
    """Record a known calibration (HU = slope x density + intercept) in a table node."""
    from boneqct.calibration import manual_calibration

    calibration = manual_calibration(slope_hu_per_mg_cm3, intercept_hu, material)
    return calibration_to_table_node(calibration, table_node,
                                     name=f"Manual calibration ({material})")


# ----------------------------------------------------------------------------- internal calibration

def internal_points_from_markups(node) -> dict[str, np.ndarray]:
    """ROI points of the internal calibration: ``{tissue: RAS position (mm)}``.

    Each control point is named by the tissue it lies in (air, fat, muscle, blood; case and
    surrounding spaces ignored); its ROI replaces the automatic one (blood has none). None or
    a list without placed points gives ``{}`` (all ROIs automatic).

    Raises:
        ValueError: a label that is not one of those tissues, or a tissue given twice.
    """
    if node is None:
        return {}
    # the tissues a point can name (the core is imported lazily, as everywhere in this Lib)
    from boneqct.calibration.attenuation import TISSUES as INTERNAL_TISSUES

    return points_by_name(node, INTERNAL_TISSUES, "internal-calibration tissue")


def internal_calibration_to_table_node(ct_node, points_node=None, table_node=None, k_range=None,
                             kvp: float | None = None):
    """Phantomless calibration of ``ct_node`` from air, fat and muscle (and blood at a point).

    Args:
        ct_node: CT volume node (HU), axial.
        points_node: optional markups point list naming tissue ROIs
            (:func:`internal_points_from_markups`); missing tissues are placed automatically.
        table_node: calibration table to overwrite (None creates one).
        k_range: optional half-open slice range searched for the automatic ROIs.
        kvp: tube voltage of the scan; default the DICOM header's (Slicer's DICOM database,
            ``BoneQCTLib.volumes.exam_metadata_from_node``). The core warns when it is unknown
            or not about 120 kVp.

    Returns:
        ``(calibration, table node)``; the table has one row per tissue ROI (measured HU, SD,
        voxels, residual from the tissue line) and the fit's R2 and warnings, as a phantom
        calibration's table does (:func:`calibration_to_table_node`).
    """
    if ct_node is None:
        raise ValueError("Select the CT volume to calibrate from its own tissues.")
    from boneqct.calibration.internal import internal_calibration

    volume = volume_from_node(ct_node)
    if kvp is not None:
        volume.metadata["kvp"] = float(kvp)
    calibration = internal_calibration(volume, internal_points_from_markups(points_node), k_range=k_range)
    table = calibration_to_table_node(calibration, table_node,
                                      name=f"{ct_node.GetName()} calibration (internal)")
    return calibration, table


def has_calibration(table_node) -> bool:
    """Whether ``table_node`` holds a calibration written by :func:`calibration_to_table_node`."""
    return has_document(table_node, CALIBRATION_KIND)


def calibration_from_table_node(table_node):
    """Rebuild the :class:`boneqct.calibration.Calibration` stored on a table node.

    Reads the JSON written by :func:`calibration_to_table_node`, so the result converts HU
    exactly as the original did (including a per-slice line), with its rods and warnings.

    Raises:
        ValueError: if the table does not hold a BoneQCT calibration.
    """
    if not has_calibration(table_node):
        raise ValueError(
            "The selected table does not hold a BoneQCT calibration: run Calibrate first, or "
            "select the calibration table it produced."
        )
    from boneqct.calibration import Calibration

    return Calibration.from_dict(read_document(table_node, CALIBRATION_KIND))


#: How each calibration method is named in the summary.
METHOD_NAMES = {"phantom": "Phantom", "internal": "Internal (phantomless)", "manual": "Manual"}


def calibration_summary_text(table_node) -> str:
    """The calibration line, its QC (R2, per-ROI placement of an internal calibration) and its
    warnings, from a calibration table (empty when it holds none)."""
    if not has_calibration(table_node):
        return ""
    method = table_node.GetAttribute(ATTRIBUTE_METHOD) or ""
    summary = (
        (f"{METHOD_NAMES.get(method, method)}: " if method else "")
        + f"HU = {float(table_node.GetAttribute(ATTRIBUTE_SLOPE_HU_PER_MG_CM3)):.4f} x density"
        f" + {float(table_node.GetAttribute(ATTRIBUTE_INTERCEPT_HU)):.2f}"
        f" (mg/cm3 {table_node.GetAttribute(ATTRIBUTE_MATERIAL)})"
    )
    r2 = table_node.GetAttribute(ATTRIBUTE_R2)
    if r2:
        summary += f", R2 = {float(r2):.4f}" + (" (tissue fit)" if method == "internal" else "")
    if method == "internal":
        rods = read_document(table_node, CALIBRATION_KIND).get("rods") or []
        summary += "\nROIs: " + ", ".join(
            f"{rod['name']} ({rod.get('placed', 'automatic')})" for rod in rods)
    warnings = table_node.GetAttribute(ATTRIBUTE_WARNINGS)
    if warnings:
        summary += "\nWarnings: " + warnings.replace("\n", "; ")
    return summary

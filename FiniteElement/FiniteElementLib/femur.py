"""Femur sideways-fall adapters (no ``qt``/``ctk``): the scene's CT, calibration table, seed
point or femur label map -> ``boneqct.fe.femur.analyze_femur_fall`` -> a one-row results table
(units, descriptions; fe_hip.json stored as ``BoneQCT.FEHip.JSON``) and the solved mesh as a
model node (``FiniteElementLib.fe.mesh_to_model_node``); the report (fe_hip.json,
fe_hip_report.pdf) written from the table alone."""

from __future__ import annotations

from pathlib import Path

from BoneQCTLib.tables import (
    columns,
    has_document,
    read_document,
    read_exam,
    store_document,
    store_exam_of,
    table_node_or_new,
    write_table,
    yes_no,
)

#: Kind of the document on the results table (attribute ``BoneQCT.FEHip.JSON``).
FE_HIP_DOCUMENT = "FEHip"
#: Columns of the one-row results table (the row: the fe_hip.json document).
FE_HIP_COLUMNS = columns("fe_hip", {
    "converged": lambda doc: yes_no(doc["solver"]["converged"], "unknown")})


def fe_hip_result_to_table_node(result, table_node=None, name: str = "BoneQCT FE hip"):
    """Write a ``FemurFallResult`` into a one-row table node holding its document."""
    table_node = table_node_or_new(table_node, name)
    document = result.to_dict()
    write_table(table_node, FE_HIP_COLUMNS, [document])
    store_document(table_node, FE_HIP_DOCUMENT, document)
    return table_node


def fe_hip_summary_text(table_node) -> str:
    """Side, strength and stiffness of a femur results table (empty if none)."""
    document = read_document(table_node, FE_HIP_DOCUMENT)
    if document is None:
        return ""
    return (f"{document['side']} femur, sideways fall: strength {document['strength_n']:.0f} N "
            f"({document['criterion']}), stiffness {document['stiffness_n_mm']:.0f} N/mm")


def can_export_fe_hip_report(table_node) -> bool:
    """Whether ``table_node`` holds a femur sideways-fall result (all the report needs)."""
    return has_document(table_node, FE_HIP_DOCUMENT)


def run_fe_hip(ct_node, calibration_table_node, side: str, options=None, *, seed_node=None,
               labels_node=None, sex=None, table_node=None, model_node=None,
               color_by: str = "effective_strain") -> dict:
    """Sideways-fall strength of one femur of the scene's CT (``analyze_femur_fall``).

    Args:
        side: "left" or "right".
        options: ``boneqct.fe.femur.FemurFEOptions`` (None: the defaults).
        seed_node: optional markups point list, its first placed point in the femoral head; or
        labels_node: optional femur label map volume node (``options.label_scheme``).

    Returns {"result", "table", "model"}.

    Raises:
        ValueError: no CT, no calibration, both a seed and labels, a seed list without a
            placed point. boneqct.errors.BoneQCTError: from the core (femur not found, ...).
    """
    from boneqct.fe.femur import FemurFEOptions, analyze_femur_fall
    from BoneQCTLib.calibration import calibration_from_table_node, has_calibration
    from BoneQCTLib.markups import first_point
    from BoneQCTLib.volumes import patient_age_and_sex, volume_from_node
    from FiniteElementLib.fe import mesh_to_model_node

    if ct_node is None:
        raise ValueError("Select the CT volume.")
    if not has_calibration(calibration_table_node):
        raise ValueError("The finite-element model needs calibrated density: calibrate in the "
                         "QCT Bone Density module and select its calibration table.")
    if seed_node is not None and labels_node is not None:
        raise ValueError("Give either a seed point or a femur label map, not both.")
    seed = first_point(seed_node, "in the femoral head")
    volume_hu = volume_from_node(ct_node)
    age_years, sex = patient_age_and_sex(volume_hu, None, sex)
    result = analyze_femur_fall(
        volume_hu, calibration_from_table_node(calibration_table_node),
        options or FemurFEOptions(), side=side, seed_ras_mm=seed,
        labels=volume_from_node(labels_node) if labels_node is not None else None, sex=sex)
    outputs = {"result": result, "table": fe_hip_result_to_table_node(result, table_node),
               "model": mesh_to_model_node(result, model_node, name="BoneQCT FE hip mesh",
                                           color_by=color_by)}
    store_exam_of(outputs["table"], volume_hu, ct_node, age_years, sex)
    return outputs


def export_fe_hip_report(folder, table_node, anonymize: bool = False) -> dict[str, Path]:
    """Write fe_hip.json and fe_hip_report.pdf of the result held by ``table_node``
    (``FemurFallResult.from_dict`` of its document, the exam stored beside it) into ``folder``;
    returns the paths by key "json" and "report".

    Raises:
        ValueError: the table holds no femur result.
    """
    from boneqct.fe.femur import FemurFallResult
    from boneqct.fe.femur_report import write_femur_outputs

    document = read_document(table_node, FE_HIP_DOCUMENT)
    if document is None:
        raise ValueError("Apply first: the report is written from the results table.")
    return write_femur_outputs(Path(folder), FemurFallResult.from_dict(document),
                               read_exam(table_node), anonymize=anonymize)

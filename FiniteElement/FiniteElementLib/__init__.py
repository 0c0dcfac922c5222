"""MRML adapters for the Finite Element module (no ``qt``/``ctk``).

The volume adapters are shared with the other BoneQCT modules and live in
``QCTBoneDensityLib``; this package re-exports them so the module has one import point, beside
its own result adapters (``FiniteElementLib.fe``).
"""

from QCTBoneDensityLib.volumes import update_node_from_volume, volume_from_node  # noqa: F401

from FiniteElementLib.fe import (  # noqa: F401
    COLOR_FIELDS,
    color_model_by,
    export_fe_report,
    fe_document_from_table_node,
    fe_result_to_table_node,
    fe_summary_text,
    load_displacement_plot,
    mesh_to_model_node,
    run_fe,
)

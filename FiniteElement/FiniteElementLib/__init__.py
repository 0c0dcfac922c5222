"""MRML adapters of the Finite Element module (no ``qt``/``ctk``): the result adapters of
``FiniteElementLib.fe``. Volumes, calibration tables and vertebral inputs are read with the
shared ``BoneQCTLib`` (imported from there, not re-exported here).
"""

from FiniteElementLib.fe import (  # noqa: F401
    COLOR_FIELDS,
    can_export_fe_report,
    color_model_by,
    export_fe_report,
    fe_document_from_table_node,
    fe_result_to_table_node,
    fe_summary_text,
    load_displacement_plot,
    mesh_to_model_node,
    run_fe,
)

"""MRML adapters of the Hip CTXA module (no ``qt``/``ctk``).

The hip adapters (``hip``) turn the scene's nodes into the core's inputs and a ``HipResult`` into
nodes: femur segmentation, DXA transform, projection and region volumes, results table. Volumes
and calibration tables are read with the shared ``BoneQCTLib`` (imported from there, not
re-exported here).
"""

from HipCTXALib.hip import (  # noqa: F401
    HIP_COLUMNS,
    REGIONS,
    can_export_hip_report,
    dxa_transform_node,
    export_hip_report,
    femur_labels_from_node,
    femur_segmentation_node,
    has_hip_result,
    hip_result_from_table_node,
    hip_result_to_table_node,
    hip_summary_text,
    projection_to_volume_node,
    projection_volume,
    roi_labelmap_to_node,
    rotated_volume_to_node,
    run_hip,
    seed_from_markups_node,
    transform_matrix,
)

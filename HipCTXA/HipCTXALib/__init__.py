"""MRML adapters for the Hip CTXA module (no ``qt``/``ctk``).

The volume and calibration-table adapters are shared with the other BoneQCT modules and live in
``QCTBoneDensityLib``; this package re-exports them so the module has one import point. The
hip adapters (``hip``) turn the scene's nodes into the core's inputs and a ``HipResult`` into
nodes: femur segmentation, DXA transform, projection and region volumes, results table.
"""

from QCTBoneDensityLib.tables import (  # noqa: F401
    calibration_from_table_node,
    calibration_summary_text,
    calibration_to_table_node,
    has_calibration,
)
from QCTBoneDensityLib.volumes import update_node_from_volume, volume_from_node  # noqa: F401

from HipCTXALib.hip import (  # noqa: F401
    HIP_COLUMNS,
    REGIONS,
    dxa_transform_node,
    export_hip_report,
    femur_labels_from_node,
    femur_segmentation_node,
    has_hip_result,
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

"""MRML adapters for BoneQCT: scene nodes <-> ``boneqct`` core objects.

Only ``slicer.vtkMRML*`` and ``slicer.util`` are used here (no ``qt``/``ctk``), so these
functions run and are tested under PyPI's ``slicer-core`` as well as inside Slicer. The
HipCTXA and FiniteElement modules import them from here rather than keeping copies.
"""

from QCTBoneDensityLib.dependencies import (  # noqa: F401
    PYTHON_REQUIREMENTS,
    install_python_packages,
    missing_python_packages,
)
from QCTBoneDensityLib.qa import qa_rows_to_table_node, qa_summary_text, run_qa  # noqa: F401
from QCTBoneDensityLib.spine import (  # noqa: F401
    has_spine_result,
    labels_from_node,
    parse_levels,
    reference_plot,
    roi_centers_to_markups,
    roi_labelmap_to_node,
    roi_segmentation_from_labelmap,
    run_spine,
    seeds_from_markups_node,
    spine_result_to_table_node,
    spine_summary_text,
)
from QCTBoneDensityLib.tables import (  # noqa: F401
    calibration_from_table_node,
    calibration_summary_text,
    calibration_to_table_node,
    has_calibration,
    manual_calibration_to_table_node,
    phantom_calibration_to_table_node,
)
from QCTBoneDensityLib.tissue import (  # noqa: F401
    export_tissue_report,
    has_tissue_result,
    internal_points_from_markups,
    l3_point_from_markups,
    run_internal_calibration,
    run_tissue,
    tissue_document_from_table_node,
    tissue_labelmap_to_node,
    tissue_result_to_table_nodes,
    tissue_summary_text,
)
from QCTBoneDensityLib.volumes import (  # noqa: F401
    label_color_table,
    labelmap_to_node,
    update_node_from_volume,
    volume_from_node,
)

"""MRML adapters of the QCT Bone Density module: scene nodes <-> ``boneqct`` core objects.

Only ``slicer.vtkMRML*`` and ``slicer.util`` are used here (no ``qt``/``ctk``), so these
functions run and are tested under PyPI's ``slicer-core`` as well as inside Slicer. What the
other modules share (volumes, calibration tables, vertebral inputs, the table writer, the
dependency guard) is in ``BoneQCTLib``; this package holds the spine, tissue and QA adapters.
"""

from QCTBoneDensityLib.qa import qa_rows_to_table_node, qa_summary_text, run_qa  # noqa: F401
from QCTBoneDensityLib.spine import (  # noqa: F401
    can_export_spine_report,
    export_spine_report,
    has_spine_result,
    parse_levels,
    reference_plot,
    roi_centers_to_markups,
    roi_labelmap_to_node,
    roi_segmentation_from_labelmap,
    run_spine,
    spine_result_from_table_node,
    spine_result_to_table_node,
    spine_summary_text,
)
from QCTBoneDensityLib.tissue import (  # noqa: F401
    export_tissue_report,
    has_tissue_result,
    l3_point_from_markups,
    run_tissue,
    tissue_document_from_table_node,
    tissue_labelmap_to_node,
    tissue_result_to_table_nodes,
    tissue_summary_text,
)

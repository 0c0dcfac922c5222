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
    calibration_to_table_node,
    has_calibration,
)
from QCTBoneDensityLib.volumes import update_node_from_volume, volume_from_node  # noqa: F401

"""What the module logics share: the CT volume from the scene and the calibration table.

:class:`CalibrationLogicMixin` goes into each module's ``ScriptedLoadableModuleLogic`` (before
it), so QCT Bone Density, Hip CTXA and Finite Element calibrate and read calibrations the same
way. The adapters are imported inside the methods: this file loads before the core's
dependencies are installed (every action first calls ``BoneQCTLib.dependencies``).
"""

import logging


def logWarnings(measurement: str, result) -> None:
    """Log the warnings of a core result (they carry no patient identity) under
    ``BoneQCT <measurement>``."""
    for warning in result.warnings:
        logging.warning(f"BoneQCT {measurement}: {warning}")


class CalibrationLogicMixin:
    """Volume and calibration operations of a module logic, usable from the Python console."""

    def volumeFromNode(self, volumeNode):
        """The selected volume as a core ``boneqct.volume.Volume`` (voxels copied, IJK->RAS kept)."""
        from BoneQCTLib.volumes import volume_from_node

        return volume_from_node(volumeNode)

    def calibrateWithPhantom(self, inputVolume, phantomName: str, tableNode=None, sliceRange=None):
        """Fit the phantom seen in ``inputVolume``; returns the (new or given) calibration table.

        ``sliceRange`` is an optional (first, last) k-index range holding the phantom.
        """
        from BoneQCTLib.calibration import phantom_calibration_to_table_node

        return phantom_calibration_to_table_node(inputVolume, phantomName, tableNode, sliceRange)

    def calibrateInternally(self, inputVolume, pointsNode=None, tableNode=None):
        """Phantomless calibration from the patient's air, fat and muscle; returns the table.

        ``pointsNode`` is an optional markups point list whose points, named air, fat, muscle
        or blood, replace the automatic ROIs. The table holds one row per tissue ROI and the
        fit's QC (R2, warnings), as a phantom calibration's does.
        """
        from BoneQCTLib.calibration import internal_calibration_to_table_node

        calibration, table = internal_calibration_to_table_node(inputVolume, pointsNode, tableNode)
        logWarnings("internal calibration", calibration)
        return table

    def calibrateManually(self, slopeHuPerMgCm3: float, interceptHu: float, material: str,
                          tableNode=None):
        """Record a known calibration (HU = slope * density + intercept) in a table node."""
        from BoneQCTLib.calibration import manual_calibration_to_table_node

        return manual_calibration_to_table_node(slopeHuPerMgCm3, interceptHu, material, tableNode)

    def hasCalibration(self, tableNode) -> bool:
        """Whether ``tableNode`` holds a BoneQCT calibration."""
        from BoneQCTLib.calibration import has_calibration

        return has_calibration(tableNode)

    def calibrationSummary(self, tableNode) -> str:
        """The calibration held by ``tableNode`` in one or a few lines (empty if none)."""
        from BoneQCTLib.calibration import calibration_summary_text

        return calibration_summary_text(tableNode)

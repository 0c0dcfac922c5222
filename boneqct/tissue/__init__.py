"""Tissue composition (after the QCT PRO Tissue Analysis Report): fat, muscle, skin, cortical
and cancellous mineral by mass, area and volume, for the whole image and the spine region;
subcutaneous and visceral fat; skeletal muscle area at L3. See ``analyze_tissue``."""

from boneqct.tissue.composition import (
    FAT_DENSITY_G_CM3,
    MUSCLE_DENSITY_G_CM3,
    TissueError,
    analyze_tissue,
    tissue_label_map,
    tissue_reference,
)
from boneqct.tissue.options import TissueOptions
from boneqct.tissue.outputs import write_tissue_outputs
from boneqct.tissue.result import TissueResult

__all__ = [
    "FAT_DENSITY_G_CM3",
    "MUSCLE_DENSITY_G_CM3",
    "TissueError",
    "TissueOptions",
    "TissueResult",
    "analyze_tissue",
    "tissue_label_map",
    "tissue_reference",
    "write_tissue_outputs",
]

"""Tissue composition (after the QCT PRO Tissue Analysis Report): fat, muscle, skin, cortical
and cancellous mineral by mass, area and volume, for the whole image and the spine region;
subcutaneous and visceral fat; skeletal muscle area at L3. See ``analyze_tissue``."""

from boneqct.lazy_exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "composition": ("FAT_DENSITY_G_CM3", "MUSCLE_DENSITY_G_CM3", "TissueError",
                    "analyze_tissue", "tissue_label_map", "tissue_reference"),
    "options": ("TissueOptions",),
    "outputs": ("write_tissue_outputs",),
    "result": ("TissueResult",),
})

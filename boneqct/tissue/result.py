"""The result of ``analyze_tissue``: the tissue.json document and, for label maps and the
figure, the voxel masks of the analysed slices."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from boneqct.options import options_from_dict, options_to_dict
from boneqct.tissue.options import TissueOptions

#: Keys of the tissue.json document, in its order (``options`` added with issue 12).
DOCUMENT_KEYS = ("reference", "extent", "regions", "fat_compartments", "skeletal_muscle_l3",
                 "warnings")


@dataclass
class TissueResult:
    """Tissue composition of a slice, slab or scan.

    Attributes:
        reference: densities (g/cm3), fitted and measured tissue CT values (HU), thresholds,
            the calibration's line and the trabecular densities found (mg/cm3).
        extent: ``k_first``, ``k_stop`` (half-open), ``n_slices``, ``slab_thickness_mm``.
        regions: "image" and "spine" -> fat/muscle/skin/cortical_mineral/cancellous_mineral
            {mass_g, area_cm2, volume_cm3}, densities (mg/cm3) and ratios.
        fat_compartments: subcutaneous_fat / visceral_fat {mass_g, area_cm2, volume_cm3}.
        skeletal_muscle_l3: None, or k, area_cm2, window_hu, mean_hu, mask of the L3 area.
        warnings: plausibility warnings for the report.
        options: the options measured with.
        masks_kji: voxel masks of the analysed slices (not in the document; None after
            ``from_dict``).
    """

    reference: dict
    extent: dict
    regions: dict
    fat_compartments: dict
    skeletal_muscle_l3: dict | None
    warnings: list[str]
    options: TissueOptions
    masks_kji: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """The tissue.json document (JSON-serialisable, without the masks)."""
        return {**{key: getattr(self, key) for key in DOCUMENT_KEYS},
                "options": options_to_dict(self.options)}

    @classmethod
    def from_dict(cls, document: dict) -> TissueResult:
        """Inverse of :meth:`to_dict`. A document written before the options were recorded
        takes them from its reference values (threshold, skin) and its slices."""
        if "options" in document:
            options = options_from_dict(TissueOptions, document["options"])
        else:
            reference, extent = document["reference"], document["extent"]
            options = TissueOptions(
                slices=(extent["k_first"], extent["k_stop"] - 1),
                cortical_threshold_mg_cm3=reference["cortical_threshold_mg_cm3"],
                skin_thickness_mm=reference["skin_thickness_mm"])
        return cls(**{key: document[key] for key in DOCUMENT_KEYS}, options=options)

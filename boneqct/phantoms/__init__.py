"""Digital test objects with known truth: a synthetic lumbar-spine CT with a rod phantom.

``make_spine_phantom`` renders the exam; ``write_phantom`` writes it as DICOM/NIfTI with its
label map and truth JSON. See ``anatomy.LABELS`` for the label table.
"""

from boneqct.phantoms.anatomy import LABELS, SpinePhantomParams
from boneqct.phantoms.scanner import KVP_CALIBRATION_PRESETS, ScannerParams
from boneqct.phantoms.spine_phantom import SpinePhantom, make_spine_phantom, write_phantom

__all__ = [
    "KVP_CALIBRATION_PRESETS",
    "LABELS",
    "ScannerParams",
    "SpinePhantom",
    "SpinePhantomParams",
    "make_spine_phantom",
    "write_phantom",
]

"""Digital test objects with known truth: a synthetic lumbar-spine CT with a rod phantom.

``make_spine_phantom`` renders the exam; ``write_phantom`` writes it as DICOM/NIfTI with its
label map and truth JSON. See ``anatomy.LABELS`` for the label table.
"""

from boneqct.lazy_exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "anatomy": ("LABELS", "SpinePhantomParams"),
    "scanner": ("KVP_CALIBRATION_PRESETS", "ScannerParams"),
    "spine_phantom": ("SpinePhantom", "make_spine_phantom", "write_phantom"),
})

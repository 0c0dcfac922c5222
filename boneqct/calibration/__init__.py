"""HU -> mineral density calibration: phantom definitions, rod detection, fit, conversion."""

from boneqct.lazy_exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "definitions": ("PhantomDefinition", "Rod", "bundled_phantom_names",
                    "load_phantom_definition"),
    "fit": ("Calibration", "convert_volume_to_bmd", "fit_calibration", "manual_calibration"),
    "phantom_calibration": ("calibrate_with_phantom", "per_slice_calibration"),
    "rod_detection": ("DetectedRod", "RodDetection", "detect_rods"),
})

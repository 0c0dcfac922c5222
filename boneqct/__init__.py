"""BoneQCT core: calibrated bone densitometry from clinical CT, free of Slicer.

Subpackages are named for what a user measures: ``io`` (CT input and output),
``calibration`` (HU -> mineral density), ``phantoms`` (digital test objects),
and the measurement pipelines built on them.
"""

__version__ = "0.1.0"

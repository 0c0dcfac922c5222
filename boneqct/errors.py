"""User-facing errors.

Every problem with the user's input is raised as :class:`BoneQCTError` with a
one-paragraph message that names the problem and what to do about it. The
command line prints the message (never a traceback) and exits non-zero.
Messages never carry patient identity.
"""


class BoneQCTError(Exception):
    """A problem with the input that the user can fix; the message says how."""


class InputError(BoneQCTError):
    """The CT input cannot be read or is unsuitable for measurement."""


class CalibrationError(BoneQCTError):
    """The calibration phantom cannot be found or fits badly."""


class SpineError(BoneQCTError):
    """A vertebral level cannot be measured (seed outside bone, level out of the scan...)."""


class ReferenceMismatchError(BoneQCTError):
    """A reference applies to another site, measure or material than the measurement."""


class ResourceError(BoneQCTError):
    """A computation would need more memory than the limit; the message says what to do."""


class TissueError(BoneQCTError):
    """The tissue analysis cannot run on this input (no calibration, empty range...)."""


class PrecisionError(BoneQCTError):
    """A precision table cannot be read or holds too few repeated measurements."""


class QAError(BoneQCTError):
    """A QA phantom cannot be found or measured, or a QA log cannot be read."""


class UserFileError(BoneQCTError):
    """A file handed in by the user is unreadable or not of the expected structure."""


class OptionsError(BoneQCTError):
    """An option is outside its range or not one of its choices."""


class HipError(BoneQCTError):
    """The hip cannot be measured as asked."""


class NoCalibrationError(HipError):
    """CTXA needs calibrated mineral density."""


class FemurNotFoundError(HipError):
    """No proximal femur on the requested side."""


class TruncatedFemurError(HipError):
    """The scan does not hold the whole proximal femur."""


class FusedFemurError(HipError):
    """The bone threshold joins the femur to the pelvis where the extraction cannot cut them."""


class ImplantError(HipError):
    """Metal in the femur: that side is refused."""


class FEError(BoneQCTError):
    """A finite-element model cannot be built or compared (empty mask, unknown law, ...)."""


class ScrewError(BoneQCTError):
    """A planned screw cannot be measured (zero length, outside the image, unreadable line)."""


class DetectionError(SpineError):
    """The vertebrae cannot be found or named automatically (no spine, not a CT in HU, no
    anatomical anchor); the message says what to give instead (seed points or labels)."""

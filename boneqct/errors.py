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

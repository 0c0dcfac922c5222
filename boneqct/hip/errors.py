"""Errors of the hip CTXA analysis; each message names the problem and the remedy."""

from boneqct.errors import BoneQCTError


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

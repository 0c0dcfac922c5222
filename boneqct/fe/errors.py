"""The finite-element package's user-facing error."""

from boneqct.errors import BoneQCTError


class FEError(BoneQCTError):
    """A finite-element model cannot be built or compared (empty mask, unknown law, ...)."""

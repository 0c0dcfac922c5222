"""Options of the phantom calibration: the one place for their defaults, ranges and help
(``boneqct.options``); ``boneqct calibrate``, the Slicer module and ``calibrate`` use it.

Also the slice range ``FIRST:LAST`` (both included) shared by the commands that take one."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from boneqct.errors import OptionsError
from boneqct.options import check_options, option

#: The phantom of the digital phantom and of the Slicer module's default.
DEFAULT_PHANTOM = "mindways-model3"


def parse_slices(text: str) -> tuple[int, int]:
    """``FIRST:LAST`` (both included) or ``K`` (one slice) -> (first, last); argparse's usage
    error otherwise."""
    first, colon, last = text.partition(":")
    try:
        slices = (int(first), int(last if colon else first))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not FIRST:LAST (slice indices k, both included) or one index") from None
    try:
        check_slices(slices)
    except OptionsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return slices


def check_slices(slices: tuple) -> None:
    """() (all slices) or (first, last), 0 <= first <= last; OptionsError otherwise."""
    if slices == ():
        return
    if (len(slices) != 2 or not all(isinstance(k, int) and not isinstance(k, bool) for k in slices)
            or not 0 <= slices[0] <= slices[1]):
        raise OptionsError(f"Slice range {slices!r}: give FIRST:LAST slice indices with "
                           "0 <= FIRST <= LAST (both included).")


def slice_stop_range(slices: tuple) -> tuple[int, int] | None:
    """The half-open range (first, last + 1) of an inclusive slice range; None for all."""
    return None if slices == () else (slices[0], slices[1] + 1)


@dataclass(frozen=True)
class CalibrationOptions:
    """How the phantom scanned with the patient calibrates the scan (see each field's help)."""

    phantom: str = option(DEFAULT_PHANTOM, "bundled phantom name (mindways-model3, qrm-bdc-3, "
                          "qrm-bdc-6, b-mas-200) or a certificate JSON file")
    slices: tuple[int, ...] = option(
        (), "slice index range k to search, FIRST:LAST (both included) or one index; "
        "default all slices", parse=parse_slices, metavar="FIRST:LAST")
    per_slice: bool = option(
        False, "also fit slope and intercept as a function of z (long scans)")

    def __post_init__(self):
        check_options(self)
        check_slices(self.slices)
        if not self.phantom:
            raise OptionsError("No phantom is named; give a bundled phantom name or a "
                               "certificate JSON file.")

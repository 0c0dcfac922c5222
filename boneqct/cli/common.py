"""Options and input handling shared by the subcommands."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np

from boneqct.errors import BoneQCTError
from boneqct.io.user_json import read_user_json
from boneqct.options import number_in
from boneqct.resources import (
    DEFAULT_MAX_MEMORY_GB,
    MAX_MAX_MEMORY_GB,
    MIN_MAX_MEMORY_GB,
    limited_memory,
)


def add_max_memory_option(parser) -> None:
    """Add ``--max-memory-gb`` to a subcommand parser and run its handler under that limit.

    Call it after ``parser.set_defaults(handler=...)``.
    """
    handler = parser.get_default("handler")
    if handler is None:
        raise ValueError("add_max_memory_option needs the parser's handler set first")
    parser.add_argument(
        "--max-memory-gb", type=number_in(MIN_MAX_MEMORY_GB, MAX_MAX_MEMORY_GB, " GB"),
        default=DEFAULT_MAX_MEMORY_GB,
        help=f"refuse, before allocating, work estimated to need more memory than this, GB "
             f"(default {DEFAULT_MAX_MEMORY_GB:g}; {MIN_MAX_MEMORY_GB:g}-{MAX_MAX_MEMORY_GB:g})")

    @functools.wraps(handler)
    def limited(args):
        with limited_memory(args.max_memory_gb):
            return handler(args)

    parser.set_defaults(handler=limited)


def add_input(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="+", type=Path,
                        help="DICOM folder, DICOM files of one series, or a NIfTI/NRRD/MHA file")
    parser.add_argument("--series", metavar="UID", help="SeriesInstanceUID to use in a folder")


def add_calibration_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--phantom", help="calibrate with this phantom (name or certificate JSON)")
    group.add_argument("--calibration", type=Path, help="a calibration JSON from `boneqct "
                       "calibrate` (refused for another kVp or scanner), or 'internal' for a "
                       "phantomless estimate from the patient's own tissues (opportunistic, "
                       "no category)")
    group.add_argument("--slope", type=number_in(1e-3, MAX_SLOPE_HU_PER_MG_CM3),
                       help="manual calibration slope, HU per mg/cm3 "
                       "(with --intercept)")
    group.add_argument("--hu", action="store_true", help="no calibration: CT numbers only "
                       "(no BMD, no category, no cement flag)")
    parser.add_argument("--intercept", type=number_in(-MAX_ABS_INTERCEPT_HU, MAX_ABS_INTERCEPT_HU,
                                                      " HU"),
                        help="manual calibration intercept, HU")
    parser.add_argument("--material", choices=["K2HPO4", "HA"],
                        help="material of a manual calibration; without it the BMD gets no "
                             "category")
    parser.add_argument("--force-calibration", action="store_true",
                        help="apply a --calibration file measured at another kVp or on another "
                             "scanner (stated in the outputs; no category)")


def calibration_from_args(args, volume):
    """The calibration chosen on the command line, checked against the scan it is applied to
    (``Calibration.applied``), or None (HU only)."""
    from boneqct.calibration import calibrate_with_phantom, manual_calibration
    from boneqct.calibration.fit import MATERIAL_UNSTATED
    from boneqct.calibration.provenance import check_calibration_applies, measured_on_this_scan
    from boneqct.calibration.stored import read_calibration_file

    if (args.slope is None) != (args.intercept is None):
        raise BoneQCTError("A manual calibration needs both --slope and --intercept.")
    if args.material and args.slope is None:
        raise BoneQCTError("--material states the material of a manual calibration (--slope and "
                           "--intercept); a phantom or calibration file carries its own.")
    if args.force_calibration and (args.calibration is None or str(args.calibration) == "internal"):
        raise BoneQCTError("--force-calibration applies a --calibration file to a scan it was "
                           "not measured on; give the file with --calibration.")
    if args.phantom:
        calibration = measured_on_this_scan(calibrate_with_phantom(volume, args.phantom))
    elif args.calibration is not None and str(args.calibration) == "internal":
        from boneqct.calibration.internal import internal_calibration

        calibration = measured_on_this_scan(internal_calibration(volume))
    elif args.calibration:
        calibration = check_calibration_applies(read_calibration_file(args.calibration),
                                                volume.metadata, args.force_calibration)
    elif args.slope is not None:
        calibration = measured_on_this_scan(manual_calibration(
            args.slope, args.intercept, args.material or MATERIAL_UNSTATED))
    else:
        if not args.hu:
            print("warning: no calibration given: measuring HU only (no BMD, no category); "
                  "say --hu to choose this explicitly.", file=sys.stderr)
        return None
    _check_line(calibration)
    for warning in [*calibration.warnings, calibration.applied["warning"]]:
        if warning:
            print(f"warning: calibration: {warning}", file=sys.stderr)
    return calibration


#: Plausible calibration lines: a CT number rises with mineral density (slope > 0; K2HPO4 and
#: HA lines lie near 1-2 HU per mg/cm3, Goodsitt 1992) and the line meets zero mineral near
#: water, 0 HU; these wide bounds only catch impossible lines, e.g. a phantom definition that
#: does not match the rods in the scan (not verified as clinical limits).
MAX_SLOPE_HU_PER_MG_CM3 = 10.0
MAX_ABS_INTERCEPT_HU = 100.0


def _number(value) -> str:
    """A number for a message, whatever a file held (None, text)."""
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return repr(value)


def _check_line(calibration) -> None:
    """Refuse a calibration line that cannot convert HU to density (InputError-like exit 2):
    a slope that is not finite and positive, an intercept beyond +-MAX_ABS_INTERCEPT_HU, or
    per-slice values that are not finite."""
    slopes = [calibration.slope_hu_per_mg_cm3]
    intercepts = [calibration.intercept_hu]
    if calibration.per_slice:
        slopes += list(calibration.per_slice.get("slope_hu_per_mg_cm3") or [])
        intercepts += list(calibration.per_slice.get("intercept_hu") or [])
    try:
        slopes = np.asarray(slopes, float)
        intercepts = np.asarray(intercepts, float)
    except (TypeError, ValueError):
        raise BoneQCTError("The calibration's per-slice values are not numbers; recalibrate "
                           "with `boneqct calibrate`.") from None
    source = {"phantom": "The phantom fit", "internal": "The internal calibration",
              "manual": "The manual calibration"}.get(calibration.method, "The calibration")
    if not (np.all(np.isfinite(slopes)) and np.all(slopes > 0)
            and np.all(slopes <= MAX_SLOPE_HU_PER_MG_CM3)):
        raise BoneQCTError(f"{source} has a slope of {_number(calibration.slope_hu_per_mg_cm3)} HU per "
                           f"mg/cm3; a calibration line rises with density (0 < slope <= "
                           f"{MAX_SLOPE_HU_PER_MG_CM3:g}). Check the phantom definition (--phantom) "
                           "or the calibration values.")
    if not np.all(np.isfinite(intercepts)) or np.any(np.abs(intercepts) > MAX_ABS_INTERCEPT_HU):
        raise BoneQCTError(f"{source} has an intercept of {_number(calibration.intercept_hu)} HU; water-"
                           f"like tissue lies near 0 HU (|intercept| <= {MAX_ABS_INTERCEPT_HU:g}). "
                           "Check the calibration values.")


def load_input(args):
    from boneqct.io import load_ct

    source = args.input[0] if len(args.input) == 1 else list(args.input)
    volume = load_ct(source, series_uid=args.series)
    if getattr(args, "anonymize", False):
        from boneqct.io.dicom import scrub_identity

        volume.warnings = [scrub_identity(w, volume.metadata) for w in volume.warnings]
    for warning in volume.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return volume


def read_result_json(path: Path, kind: str) -> dict:
    """A result document (``spine.json``, ``fe.json``...) written by ``boneqct <kind>``, read
    strictly (``boneqct.io.user_json``); its fields are checked by the command using them."""
    return read_user_json(path, f"give {kind}.json files written by `boneqct {kind}`.")

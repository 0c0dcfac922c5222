"""Tissue composition command: tissue."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from boneqct.cli.common import add_calibration_options, add_input, calibration_from_args, load_input
from boneqct.errors import BoneQCTError
from boneqct.io.atomic import OUT_HELP, check_output_folder, write_output_set
from boneqct.options import add_options, options_from_args
from boneqct.tissue.options import TissueOptions


def register(sub) -> None:
    """Add this module's subcommands to the ``boneqct`` parser."""
    t = sub.add_parser("tissue", help="tissue composition: fat, muscle, skin, cortical and "
                       "cancellous mineral (mass, area, volume) of a slice, slab or scan")
    add_input(t)
    add_calibration_options(t)
    add_options(t, TissueOptions)
    t.add_argument("--l3", metavar="R,A,S", help="a point in L3 (RAS mm) for the skeletal "
                   "muscle area")
    t.add_argument("--out", type=Path, required=True, help=OUT_HELP)
    t.add_argument("--anonymize", action="store_true", help="leave patient identity out")
    t.set_defaults(handler=_cmd_tissue)


def _parse_point(text: str | None):
    """The --l3 point (R, A, S mm) or None."""
    if text is None:
        return None
    try:
        point = [float(v) for v in text.split(",")]
    except ValueError:
        point = []
    if len(point) != 3 or not np.all(np.isfinite(point)):
        raise BoneQCTError(f"--l3 '{text[:40]}' is not a point R,A,S of three finite "
                           "numbers in mm; give a point inside L3, e.g. --l3 0,-20,35.")
    return point


def _cmd_tissue(args) -> int:
    from boneqct.tissue import analyze_tissue, write_tissue_outputs

    options = options_from_args(TissueOptions, args)
    l3 = _parse_point(args.l3)
    check_output_folder(args.out)
    volume = load_input(args)
    calibration = calibration_from_args(args, volume)
    result = analyze_tissue(volume, calibration, options, l3_point_ras_mm=l3)
    paths = write_output_set(args.out, "tissue", lambda folder: write_tissue_outputs(
        folder, result, volume.metadata, args.anonymize))
    image = result.regions["image"]
    for tissue in ("fat", "muscle", "skin", "cortical_mineral", "cancellous_mineral"):
        f = image[tissue]
        print(f"{tissue}: {f['mass_g']:.1f} g, {f['area_cm2']:.1f} cm2, {f['volume_cm3']:.1f} cm3")
    if result.skeletal_muscle_l3:
        print(f"skeletal muscle area at L3: {result.skeletal_muscle_l3['area_cm2']:.1f} cm2")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"report: {paths['report']}")
    return 0

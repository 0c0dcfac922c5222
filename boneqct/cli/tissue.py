"""Tissue composition command: tissue."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from boneqct.cli.common import add_calibration_options, add_input, calibration_from_args, load_input
from boneqct.errors import BoneQCTError
from boneqct.io.atomic import OUT_HELP, check_output_folder, write_output_set


def register(sub) -> None:
    """Add this module's subcommands to the ``boneqct`` parser."""
    t = sub.add_parser("tissue", help="tissue composition: fat, muscle, skin, cortical and "
                       "cancellous mineral (mass, area, volume) of a slice, slab or scan")
    add_input(t)
    add_calibration_options(t)
    t.add_argument("--slices", metavar="FIRST:LAST",
                   help="slice index range k (inclusive); one number for one slice; default all")
    t.add_argument("--l3", metavar="R,A,S", help="a point in L3 (RAS mm) for the skeletal "
                   "muscle area")
    t.add_argument("--out", type=Path, required=True, help=OUT_HELP)
    t.add_argument("--anonymize", action="store_true", help="leave patient identity out")
    t.set_defaults(handler=_cmd_tissue)


def _parse_slices(text: str | None):
    if text is None:
        return None
    try:
        first, _, last = text.partition(":")
        return int(first), int(last or first) + 1
    except ValueError:
        raise BoneQCTError(f"--slices '{text}' is not FIRST:LAST (slice indices).") from None


def _cmd_tissue(args) -> int:
    from boneqct.tissue import analyze_tissue, write_tissue_outputs

    check_output_folder(args.out)
    volume = load_input(args)
    calibration = calibration_from_args(args, volume)
    l3 = None
    if args.l3:
        try:
            l3 = [float(v) for v in args.l3.split(",")]
        except ValueError:
            l3 = []
        if len(l3) != 3 or not np.all(np.isfinite(l3)):
            raise BoneQCTError(f"--l3 '{args.l3[:40]}' is not a point R,A,S of three finite "
                               "numbers in mm; give a point inside L3, e.g. --l3 0,-20,35.")
    result = analyze_tissue(volume, calibration, _parse_slices(args.slices), l3_point_ras_mm=l3)
    paths = write_output_set(args.out, "tissue", lambda folder: write_tissue_outputs(
        folder, result, volume.metadata, args.anonymize))
    image = result["regions"]["image"]
    for tissue in ("fat", "muscle", "skin", "cortical_mineral", "cancellous_mineral"):
        f = image[tissue]
        print(f"{tissue}: {f['mass_g']:.1f} g, {f['area_cm2']:.1f} cm2, {f['volume_cm3']:.1f} cm3")
    if result["skeletal_muscle_l3"]:
        print(f"skeletal muscle area at L3: {result['skeletal_muscle_l3']['area_cm2']:.1f} cm2")
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"report: {paths['report']}")
    return 0

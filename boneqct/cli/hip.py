"""Hip CTXA command: hip."""

from __future__ import annotations

import sys
from pathlib import Path

from boneqct.cli.common import (
    add_calibration_options,
    add_input,
    add_max_memory_option,
    calibration_from_args,
    load_input,
    number_in,
)
from boneqct.errors import BoneQCTError
from boneqct.hip.interpret import REFERENCE_SETS
from boneqct.hip.options import HipOptions
from boneqct.io.atomic import OUT_HELP, check_output_folder, write_output_set
from boneqct.options import add_options, options_from_args

#: DXA reference populations for T-scores, and none.
REFERENCE_CHOICES = (*REFERENCE_SETS, "none")


def register(sub) -> None:
    """Add this module's subcommands to the ``boneqct`` parser."""
    hip = sub.add_parser("hip", help="DXA-equivalent areal BMD of the proximal femur (CTXA)")
    add_input(hip)
    hip.add_argument("--side", choices=["left", "right"], required=True, help="which hip")
    hip.add_argument("--out", type=Path, required=True, help=OUT_HELP)
    add_calibration_options(hip)
    where = hip.add_mutually_exclusive_group()
    where.add_argument("--seed", metavar="R,A,S", help="a point in the femoral head (RAS mm)")
    where.add_argument("--labels", type=Path, help="label map with femur_left/femur_right")
    add_options(hip, HipOptions)
    hip.add_argument("--reference", choices=REFERENCE_CHOICES,
                     default="nhanes3", help="DXA reference population for T-scores")
    hip.add_argument("--age", type=number_in(0.0, 130.0, " years"),
                     help="patient age in years (else from DICOM)")
    hip.add_argument("--sex", choices=["F", "M"], help="patient sex (else from DICOM)")
    hip.add_argument("--anonymize", action="store_true",
                     help="leave patient identity out of the outputs")
    hip.set_defaults(handler=_cmd_hip)
    add_max_memory_option(hip)


def _parse_point(text: str):
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise BoneQCTError(f"--seed needs three numbers R,A,S in mm, not '{text}'.")
    return values


def _cmd_hip(args) -> int:
    from boneqct.hip.outputs import write_hip_outputs
    from boneqct.hip.pipeline import analyze_hip
    from boneqct.io import read_volume_file

    options = options_from_args(HipOptions, args)
    check_output_folder(args.out)
    volume = load_input(args)
    calibration = calibration_from_args(args, volume)
    sex = args.sex or volume.metadata.get("patient_sex")
    age = args.age if args.age is not None else volume.metadata.get("patient_age_years")
    result = analyze_hip(
        volume, calibration, options, side=args.side,
        seed_ras_mm=_parse_point(args.seed) if args.seed else None,
        labels=read_volume_file(args.labels) if args.labels else None,
        population=None if args.reference == "none" else args.reference,
        sex=sex if sex in ("F", "M") else None, age_years=age)
    paths = write_output_set(args.out, "hip", lambda folder: write_hip_outputs(
        folder, result, volume.metadata, anonymize=args.anonymize))
    for name, roi in result.rois.items():
        t = f", T {roi['t_score']:.2f}" if "t_score" in roi else ""
        print(f"{name}: {roi['abmd_g_cm2']:.3f} g/cm2, BMC {roi['bmc_g']:.2f} g, "
              f"area {roi['area_cm2']:.2f} cm2{t}")
    if result.interpretation.get("category"):
        print(f"WHO category: {result.interpretation['category']}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"report: {paths['report']}")
    return 0

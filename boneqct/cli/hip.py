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
from boneqct.io.atomic import OUT_HELP, check_output_folder, write_output_set


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
    hip.add_argument("--label-scheme", choices=["totalsegmentator", "phantom"],
                     default="totalsegmentator", help="numbering of --labels")
    hip.add_argument("--bone-threshold-mg-cm3", type=number_in(50.0, 1000.0, " mg/cm3"),
                     help="BMD threshold of the femur extraction (mg/cm3; default 200); "
                          "raise it when a narrow joint space joins the femur to the pelvis")
    hip.add_argument("--pixel-mm", type=number_in(0.2, 2.0, " mm"), default=0.5,
                     help="projection pixel (0.2-2 mm; finer grids outgrow memory and time)")
    hip.add_argument("--reference", choices=["nhanes3", "chinese-women", "none"],
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

    check_output_folder(args.out)
    volume = load_input(args)
    calibration = calibration_from_args(args, volume)
    sex = args.sex or volume.metadata.get("patient_sex")
    age = args.age if args.age is not None else volume.metadata.get("patient_age_years")
    threshold = {} if args.bone_threshold_mg_cm3 is None else {"bone_threshold_mg_cm3": args.bone_threshold_mg_cm3}
    result = analyze_hip(
        volume, calibration, args.side, **threshold,
        seed_ras_mm=_parse_point(args.seed) if args.seed else None,
        labels=read_volume_file(args.labels) if args.labels else None,
        label_scheme=args.label_scheme, pixel_mm=args.pixel_mm,
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

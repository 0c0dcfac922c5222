"""Femur finite-element command: fe-hip (proximal femur strength in a sideways fall)."""

from __future__ import annotations

from pathlib import Path

from boneqct.cli.common import (
    add_calibration_options,
    add_command,
    add_input,
    add_max_memory_option,
    add_out,
    add_patient_options,
    ct_and_calibration,
    parse_point,
    patient_sex,
    print_done,
    start_measurement,
)
from boneqct.cli.fe_export import add_export_option
from boneqct.io.atomic import write_output_set
from boneqct.options import add_options

FE_HIP_EXAMPLE = ("boneqct fe-hip hip_ct/ --side left --slope 1.2 --intercept -2 --material "
                  "K2HPO4 --seed -95,10,0 --out fe-hip-out")


def register(sub) -> None:
    """Add this module's subcommands to the ``boneqct`` parser."""
    from boneqct.fe.femur import FemurFEOptions

    fe_hip = add_command(sub, "fe-hip", "proximal femur stiffness and strength in a sideways "
                         "fall by voxel finite elements (linear, Pistoia criterion)",
                         FE_HIP_EXAMPLE)
    add_input(fe_hip)
    fe_hip.add_argument("--side", choices=["left", "right"], required=True, help="which hip")
    add_out(fe_hip)
    add_calibration_options(fe_hip)
    where = fe_hip.add_mutually_exclusive_group()
    where.add_argument("--seed", metavar="R,A,S", help="a point in the femoral head (RAS mm; "
                       "a left hip's R is negative: --seed -95,10,0)")
    where.add_argument("--labels", type=Path, help="label map with femur_left/femur_right")
    add_options(fe_hip, FemurFEOptions)
    add_export_option(fe_hip)
    add_patient_options(fe_hip, age=False, sex_for=" (recorded; the hip thresholds do not "
                        "apply to this linear strength)")
    fe_hip.set_defaults(handler=_cmd_fe_hip)
    add_max_memory_option(fe_hip)


def _cmd_fe_hip(args) -> int:
    from boneqct.fe.femur import FemurFEOptions, analyze_femur_fall
    from boneqct.fe.femur_report import write_femur_outputs
    from boneqct.io import read_volume_file

    seed = parse_point(args.seed, "--seed", "-95,10,0")
    options = start_measurement(args, FemurFEOptions)
    volume, calibration = ct_and_calibration(args)
    result = analyze_femur_fall(
        volume, calibration, options, side=args.side, seed_ras_mm=seed,
        labels=read_volume_file(args.labels) if args.labels else None,
        sex=patient_sex(args, volume))
    paths = write_output_set(args.out, "fe_hip", lambda folder: write_femur_outputs(
        folder, result, volume.metadata, anonymize=args.anonymize,
        export_formats=args.export or ()))
    print(f"{result.side} femur, sideways fall: strength {result.strength_n:.0f} N (Pistoia), "
          f"stiffness {result.stiffness_n_mm:.0f} N/mm, {result.n_elements} elements of "
          f"{result.element_mm:g} mm")
    print_done(result, paths)
    return 0

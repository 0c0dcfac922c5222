"""Femur finite-element command: fe-hip (proximal femur strength in a sideways fall)."""

from __future__ import annotations

from boneqct.cli import common
from boneqct.cli.fe_export import add_export_option, write_fe_result

FE_HIP_EXAMPLE = ("boneqct fe-hip hip_ct/ --side left --slope 1.2 --intercept -2 --material "
                  "K2HPO4 --seed -95,10,0 --out fe-hip-out")


def register(sub) -> None:
    """Add this module's subcommands to the ``boneqct`` parser."""
    from boneqct.fe.femur import FemurFEOptions

    fe_hip = common.add_measurement(sub, "fe-hip", "proximal femur stiffness and strength in a "
                             "sideways fall by voxel finite elements (linear, Pistoia "
                             "criterion)", FE_HIP_EXAMPLE, _cmd_fe_hip, FemurFEOptions,
                             where=common.add_femur_inputs)
    add_export_option(fe_hip)
    common.add_patient_options(fe_hip, age=False, sex_for=" (recorded; the hip thresholds do not "
                        "apply to this linear strength)")


def _cmd_fe_hip(args) -> int:
    from boneqct.fe.femur import FemurFEOptions, analyze_femur_fall
    from boneqct.fe.femur_report import write_femur_outputs

    options = common.start_measurement(args, FemurFEOptions)
    seed, labels = common.femur_inputs(args)
    volume, calibration = common.ct_and_calibration(args)
    result = analyze_femur_fall(volume, calibration, options, side=args.side, seed_ras_mm=seed,
                                labels=labels, sex=common.patient_sex(args, volume))
    return write_fe_result(args, "fe_hip", write_femur_outputs, result, volume,
                           f"{result.side} femur, sideways fall")

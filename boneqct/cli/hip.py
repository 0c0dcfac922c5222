"""Hip CTXA command: hip."""

from __future__ import annotations

from boneqct.cli import common
from boneqct.hip.interpret import REFERENCE_SETS
from boneqct.hip.options import HipOptions
from boneqct.io.atomic import write_output_set

#: DXA reference populations for T-scores, and none.
REFERENCE_CHOICES = (*REFERENCE_SETS, "none")
HIP_EXAMPLE = ("boneqct hip hip_ct/ --side left --slope 1.2 --intercept -2 --material K2HPO4 "
               "--seed -95,10,0 --out hip-out")


def register(sub) -> None:
    """Add this module's subcommands to the ``boneqct`` parser."""
    hip = common.add_measurement(sub, "hip", "DXA-equivalent areal BMD of the proximal femur (CTXA)",
                          HIP_EXAMPLE, _cmd_hip, HipOptions, where=common.add_femur_inputs)
    hip.add_argument("--reference", choices=REFERENCE_CHOICES,
                     default="nhanes3", help="DXA reference population for T-scores")
    common.add_patient_options(hip)
    common.add_dicom_option(hip)


def _cmd_hip(args) -> int:
    from boneqct.hip.outputs import write_hip_outputs
    from boneqct.hip.pipeline import analyze_hip
    options = common.start_measurement(args, HipOptions)
    seed, labels = common.femur_inputs(args)
    volume, calibration = common.ct_and_calibration(args)
    result = analyze_hip(
        volume, calibration, options, side=args.side, seed_ras_mm=seed, labels=labels,
        population=None if args.reference == "none" else args.reference,
        sex=common.patient_sex(args, volume), age_years=common.patient_age(args, volume))
    add_dicom = common.dicom_writer(args, "hip", volume, result)
    paths = write_output_set(args.out, "hip", lambda folder: add_dicom(folder, write_hip_outputs(
        folder, result, volume.metadata, anonymize=args.anonymize)))
    for name, roi in result.rois.items():
        t = f", T {roi['t_score']:.2f}" if "t_score" in roi else ""
        print(f"{name}: {roi['abmd_g_cm2']:.3f} g/cm2, BMC {roi['bmc_g']:.2f} g, "
              f"area {roi['area_cm2']:.2f} cm2{t}")
    if result.interpretation.get("category"):
        print(f"WHO category: {result.interpretation['category']}")
    elif result.interpretation.get("why"):
        print(f"WHO category: none ({result.interpretation['why']})")
    common.print_done(result, paths)
    return 0

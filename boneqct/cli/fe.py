"""Finite-element commands: fe (vertebral strength of one level), fe-compare (two exams)."""

from __future__ import annotations

import json
from pathlib import Path

from boneqct.cli import common
from boneqct.cli.fe_export import add_export_option, write_fe_result

FE_EXAMPLE = ("boneqct fe ct_folder/ --level L2 --phantom mindways-model3 --seed L2=0,-25,0 "
              "--out fe-out")
COMPARE_EXAMPLE = "boneqct fe-compare 2023/fe.json 2025/fe.json"


def register(sub) -> None:
    """Add this module's subcommands to the ``boneqct`` parser."""
    from boneqct.fe.options import FEOptions

    fe = common.add_measurement(sub, "fe", "vertebral stiffness and strength by voxel finite elements",
                         FE_EXAMPLE, _cmd_fe, FEOptions, where=_add_level_and_body)
    common.add_patient_options(fe, age=False, sex_for=" for the fragile flag")
    add_export_option(fe)
    common.add_dicom_option(fe)

    compare = common.add_command(sub, "fe-compare", "follow-up: change between two fe.json files",
                          COMPARE_EXAMPLE)
    compare.add_argument("old", type=Path, help="fe.json of the earlier exam")
    compare.add_argument("new", type=Path, help="fe.json of the later exam")
    compare.add_argument("--json", action="store_true", help="print JSON")
    compare.set_defaults(handler=_cmd_compare)


def _add_level_and_body(parser) -> None:
    parser.add_argument("--level", required=True, help="vertebral level to analyse (e.g. L2)")
    common.add_body_inputs(parser)


def _cmd_fe(args) -> int:
    from boneqct.fe.options import FEOptions
    from boneqct.fe.pipeline import analyze_fe
    from boneqct.fe.vertebra import write_fe_outputs

    seeds, labels, options = common.body_inputs(args, common.start_measurement(args, FEOptions))
    volume, calibration = common.ct_and_calibration(args)
    result = analyze_fe(volume, calibration, options, level=args.level, seeds=seeds,
                        labels=labels, sex=common.patient_sex(args, volume))
    flag = {True: "  FRAGILE BONE STRENGTH", False: "", None: ""}[result.fragile]
    return write_fe_result(args, "fe", write_fe_outputs, result, volume, result.level, flag,
                           add=common.dicom_writer(args, "fe", volume, result))


def _cmd_compare(args) -> int:
    from boneqct.fe.vertebra import compare_fe

    change = compare_fe(common.read_result_json(args.old, "fe"), common.read_result_json(args.new, "fe"))
    if args.json:
        print(json.dumps(change, indent=2))
        return 0
    print(f"{change['level']}: strength {change['old_strength_n']:.0f} -> "
          f"{change['new_strength_n']:.0f} N ({change['change_strength_percent']:+.1f}%), "
          f"stiffness {change['old_stiffness_n_mm']:.0f} -> {change['new_stiffness_n_mm']:.0f} "
          f"N/mm ({change['change_stiffness_percent']:+.1f}%)")
    return 0

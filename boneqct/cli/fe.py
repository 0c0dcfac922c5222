"""Finite-element commands: fe (vertebral strength of one level), fe-compare (two exams)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from boneqct.cli.common import (
    add_calibration_options,
    add_input,
    add_max_memory_option,
    calibration_from_args,
    load_input,
    read_result_json,
)
from boneqct.io.atomic import OUT_HELP, check_output_folder, write_output_set
from boneqct.options import add_options, options_from_args


def register(sub) -> None:
    """Add this module's subcommands to the ``boneqct`` parser."""
    from boneqct.fe.options import FEOptions

    fe = sub.add_parser("fe", help="vertebral stiffness and strength by voxel finite elements")
    add_input(fe)
    fe.add_argument("--level", required=True, help="vertebral level to analyse (e.g. L2)")
    fe.add_argument("--out", type=Path, required=True, help=OUT_HELP)
    add_calibration_options(fe)
    where = fe.add_mutually_exclusive_group(required=True)
    where.add_argument("--seeds", type=Path, help="Slicer markups file (.mrk.json) of seed "
                       "points labelled by level")
    where.add_argument("--seed", action="append", metavar="LEVEL=R,A,S",
                       help="a seed point inside the vertebral body, RAS mm")
    where.add_argument("--labels", type=Path, help="vertebra label map (NIfTI/NRRD)")
    add_options(fe, FEOptions)
    fe.add_argument("--sex", choices=["F", "M"], help="patient sex for the fragile flag "
                    "(else from DICOM)")
    fe.add_argument("--anonymize", action="store_true",
                    help="leave patient identity out of the outputs")
    fe.set_defaults(handler=_cmd_fe)
    add_max_memory_option(fe)

    compare = sub.add_parser("fe-compare", help="follow-up: change between two fe.json files")
    compare.add_argument("old", type=Path, help="fe.json of the earlier exam")
    compare.add_argument("new", type=Path, help="fe.json of the later exam")
    compare.add_argument("--json", action="store_true", help="print JSON")
    compare.set_defaults(handler=_cmd_compare)


def _cmd_fe(args) -> int:
    from boneqct.fe.options import FEOptions
    from boneqct.fe.pipeline import analyze_fe
    from boneqct.fe.vertebra import write_fe_outputs
    from boneqct.io import read_volume_file
    from boneqct.spine.seeds import parse_seed_args, read_markups_seeds

    options = options_from_args(FEOptions, args)
    check_output_folder(args.out)
    volume = load_input(args)
    calibration = calibration_from_args(args, volume)
    seeds = labels = None
    if args.labels:
        labels = read_volume_file(args.labels)
    else:
        seeds = read_markups_seeds(args.seeds) if args.seeds else parse_seed_args(args.seed)
    sex = args.sex or volume.metadata.get("patient_sex")
    result = analyze_fe(volume, calibration, options, level=args.level, seeds=seeds,
                        labels=labels, sex=sex if sex in ("F", "M") else None)
    paths = write_output_set(args.out, "fe", lambda folder: write_fe_outputs(
        folder, result, volume.metadata, anonymize=args.anonymize))
    flag = {True: "  FRAGILE BONE STRENGTH", False: "", None: ""}[result.fragile]
    print(f"{result.level}: strength {result.strength_n:.0f} N ({result.criterion}), stiffness "
          f"{result.stiffness_n_mm:.0f} N/mm, {result.n_elements} elements of "
          f"{result.element_mm:g} mm{flag}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"report: {paths['report']}")
    return 0


def _cmd_compare(args) -> int:
    from boneqct.fe.vertebra import compare_fe

    change = compare_fe(read_result_json(args.old, "fe"), read_result_json(args.new, "fe"))
    if args.json:
        print(json.dumps(change, indent=2))
        return 0
    print(f"{change['level']}: strength {change['old_strength_n']:.0f} -> "
          f"{change['new_strength_n']:.0f} N ({change['change_strength_percent']:+.1f}%), "
          f"stiffness {change['old_stiffness_n_mm']:.0f} -> {change['new_stiffness_n_mm']:.0f} "
          f"N/mm ({change['change_stiffness_percent']:+.1f}%)")
    return 0

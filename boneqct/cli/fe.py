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
    number_in,
    read_result_json,
)
from boneqct.errors import BoneQCTError
from boneqct.io.atomic import OUT_HELP, check_output_folder, write_output_set
from boneqct.resources import check_fe_model, fe_model_estimate


def register(sub) -> None:
    """Add this module's subcommands to the ``boneqct`` parser."""
    from boneqct.fe.analysis import CRITERIA, DEFAULT_PRECONDITIONER
    from boneqct.fe.materials import LAWS
    from boneqct.fe.solver import PRECONDITIONERS

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
    fe.add_argument("--label-scheme", choices=["totalsegmentator", "verse"],
                    default="totalsegmentator", help="numbering of --labels")
    fe.add_argument("--element-mm", type=number_in(0.5, 5.0, " mm"), default=1.0,
                    help="element edge, mm (default 1.0; 0.5-5: finer meshes outgrow this "
                         "machine's memory and time)")
    fe.add_argument("--law", choices=sorted(LAWS), default="morgan2003",
                    help="density-modulus law (default morgan2003)")
    fe.add_argument("--criterion", choices=CRITERIA, default="nonlinear",
                    help="strength criterion (default nonlinear: 2%% apparent strain)")
    fe.add_argument("--pmma-mm", type=number_in(0.0, 20.0, " mm"), default=3.0, help="PMMA layer thickness, mm")
    fe.add_argument("--preconditioner", choices=PRECONDITIONERS, default=DEFAULT_PRECONDITIONER,
                    help="CG preconditioner (gmg: geometric multigrid, the default; jacobi; "
                    "amg: smoothed aggregation)")
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


def _body(args, volume):
    """The delineated vertebral body of ``args.level``."""
    from boneqct.io import read_volume_file
    from boneqct.spine.body import body_from_label, delineate_body_from_seed
    from boneqct.spine.levels import label_for_level, normalize_level
    from boneqct.spine.seeds import parse_seed_args, read_markups_seeds

    level = normalize_level(args.level)
    if args.labels:
        return body_from_label(volume, read_volume_file(args.labels),
                               label_for_level(level, args.label_scheme), level)
    seeds = read_markups_seeds(args.seeds) if args.seeds else parse_seed_args(args.seed)
    if level not in seeds:
        raise BoneQCTError(f"No seed point for {level}; give one (e.g. --seed {level}=R,A,S) or "
                           "label a point with this level in the markups file.")
    return delineate_body_from_seed(volume, seeds[level], level)


def _cmd_fe(args) -> int:
    from boneqct.calibration import convert_volume_to_bmd
    from boneqct.calibration.fit import MATERIAL_UNSTATED
    from boneqct.fe.vertebra import analyze_vertebra, write_fe_outputs

    check_output_folder(args.out)
    volume = load_input(args)
    calibration = calibration_from_args(args, volume)
    if calibration is None:
        raise BoneQCTError("The finite-element model needs calibrated density: give --phantom, "
                           "--calibration or --slope/--intercept.")
    if calibration.material == MATERIAL_UNSTATED:
        raise BoneQCTError("The finite-element model's density laws depend on the calibration's "
                           "material: state it for the manual line with --material K2HPO4|HA.")
    body = _body(args, volume)
    check_fe_model(fe_model_estimate(body.body_mask_kji, volume.ijk_to_ras, body.axis_ras,
                                     body.anterior_ras, args.element_mm, args.pmma_mm),
                   args.element_mm)
    sex = args.sex or volume.metadata.get("patient_sex")
    result = analyze_vertebra(
        convert_volume_to_bmd(volume, calibration), body,
        density_material=calibration.material, law=args.law, criterion=args.criterion,
        element_mm=args.element_mm, pmma_mm=args.pmma_mm, preconditioner=args.preconditioner,
        sex=sex if sex in ("F", "M") else None)
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

"""Spine QCT commands: spine, compare."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
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
from boneqct.io.atomic import OUT_HELP, check_output_folder, write_output_set
from boneqct.options import add_options, options_from_args
from boneqct.spine.options import SpineOptions


def register(sub) -> None:
    """Add this module's subcommands to the ``boneqct`` parser."""
    spine = sub.add_parser("spine", help="per-level trabecular BMD of the lumbar spine")
    add_input(spine)
    spine.add_argument("--out", type=Path, required=True, help=OUT_HELP)
    add_calibration_options(spine)
    where = spine.add_mutually_exclusive_group(required=True)
    where.add_argument("--seeds", type=Path, help="Slicer markups file (.mrk.json) of seed "
                       "points labelled by level (L1, L2, ...)")
    where.add_argument("--seed", action="append", metavar="LEVEL=R,A,S",
                       help="a seed point inside a vertebral body, RAS mm (repeatable)")
    where.add_argument("--labels", type=Path, help="vertebra label map (NIfTI/NRRD) on any "
                       "grid covering the CT, or a TotalSegmentator output folder of "
                       "per-structure masks (vertebrae_L1.nii.gz ...)")
    add_options(spine, SpineOptions)
    spine.add_argument("--reference", help="reference data (bundled name or JSON file) for "
                       "T/Z-scores")
    spine.add_argument("--age", type=number_in(0.0, 130.0, " years"),
                       help="patient age in years (else from DICOM)")
    spine.add_argument("--sex", choices=["F", "M"], help="patient sex (else from DICOM)")
    spine.add_argument("--anonymize", action="store_true",
                       help="leave patient identity out of the outputs")
    spine.set_defaults(handler=_cmd_spine)
    add_max_memory_option(spine)

    compare = sub.add_parser("compare", help="follow-up: change between two spine.json files")
    compare.add_argument("old", type=Path, help="spine.json of the earlier exam")
    compare.add_argument("new", type=Path, help="spine.json of the later exam")
    lsc = compare.add_mutually_exclusive_group()
    lsc.add_argument("--lsc", type=number_in(1e-6, 1000.0, " mg/cm3"), metavar="MG_CM3",
                     help="least significant change")
    lsc.add_argument("--precision", type=number_in(1e-6, 1000.0, " mg/cm3"), metavar="MG_CM3",
                     help="precision error (RMS-SD); LSC = 2.77 x precision")
    compare.add_argument("--json", action="store_true", help="print JSON")
    compare.set_defaults(handler=_cmd_compare)


def _cmd_spine(args) -> int:
    from boneqct.reference import load_reference
    from boneqct.spine.interpret import CEMENT_NOTE
    from boneqct.spine.label_input import read_vertebra_labels
    from boneqct.spine.outputs import write_spine_outputs
    from boneqct.spine.pipeline import analyze_spine
    from boneqct.spine.seeds import parse_seed_args, read_markups_seeds

    options = options_from_args(SpineOptions, args)
    check_output_folder(args.out)
    volume = load_input(args)
    calibration = calibration_from_args(args, volume)
    seeds = labels = None
    if args.seeds:
        seeds = read_markups_seeds(args.seeds)
    elif args.seed:
        seeds = parse_seed_args(args.seed)
    else:
        labels, folder_scheme = read_vertebra_labels(args.labels)
        if folder_scheme:
            options = replace(options, label_scheme=folder_scheme)
    sex = args.sex or volume.metadata.get("patient_sex")
    age = args.age if args.age is not None else volume.metadata.get("patient_age_years")
    result = analyze_spine(
        volume, calibration, options, seeds=seeds, labels=labels,
        reference=load_reference(args.reference) if args.reference else None,
        age_years=age, sex=sex if sex in ("F", "M") else None)
    paths = write_output_set(args.out, "spine", lambda folder: write_spine_outputs(
        folder, result, volume, anonymize=args.anonymize))
    unit = "mg/cm3" if result.calibrated else "HU"
    for lv in result.levels:
        if not lv.measured:
            print(f"{lv.level}: not measured (see the warnings)")
            continue
        value = lv.bmd_mg_cm3 if result.calibrated else lv.mean_hu
        flag = "  CEMENT AUGMENTATION SUGGESTED" if lv.cement_augmentation else ""
        qc = "" if lv.qc["passed"] else "  (ROI QC failed: not used)"
        print(f"{lv.level}: {value:.1f} {unit}{flag}{qc}")
    if result.mean_bmd_mg_cm3 is not None:
        print(f"mean {'/'.join(result.levels_used)}: {result.mean_bmd_mg_cm3:.1f} mg/cm3 "
              f"({result.interpretation['basis']}), category: "
              f"{result.category or 'none (see the warnings)'}")
    if any(lv.cement_augmentation for lv in result.levels):
        print(CEMENT_NOTE)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"report: {paths['report']}")
    return 0


def _cmd_compare(args) -> int:
    from boneqct.spine.followup import compare_exams

    comparison = compare_exams(read_result_json(args.old, "spine"), read_result_json(args.new, "spine"),
                               lsc_mg_cm3=args.lsc, precision_mg_cm3=args.precision)
    for warning in comparison["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(comparison, indent=2))
        return 0
    for row in comparison["levels"] + ([comparison["mean"]] if "mean" in comparison else []):
        significant = ""
        if "significant" in row:
            significant = "  significant" if row["significant"] else "  within LSC"
        percent = ("" if row["change_percent"] is None
                   else f" ({row['change_percent']:+.1f}%)")
        print(f"{row['level']}: {row['old_bmd_mg_cm3']:.1f} -> {row['new_bmd_mg_cm3']:.1f} mg/cm3, "
              f"{row['change_mg_cm3']:+.1f} mg/cm3{percent}{significant}")
    if comparison["lsc_mg_cm3"] is not None:
        print(f"least significant change: {comparison['lsc_mg_cm3']:.2f} mg/cm3")
    else:
        print(comparison["note"])
    return 0

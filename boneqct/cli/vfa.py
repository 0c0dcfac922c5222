"""Vertebral fracture assessment command: vfa."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

from boneqct.cli.common import add_input, add_max_memory_option, load_input
from boneqct.io.atomic import OUT_HELP, check_output_folder, write_output_set
from boneqct.options import add_options, options_from_args
from boneqct.spine.fracture import FractureOptions
from boneqct.spine.options import SpineOptions


def register(sub) -> None:
    """Add the ``vfa`` subcommand to the ``boneqct`` parser."""
    vfa = sub.add_parser(
        "vfa", help="vertebral fracture assessment: heights, Genant grade and type, sagittal "
        "overview", description="Anterior, middle and posterior heights of each vertebral "
        "body, Genant grade and type, and a one-page sagittal overview. Example: boneqct vfa "
        "ct.nii.gz --labels vertebrae.nii.gz --out vfa_result")
    add_input(vfa)
    vfa.add_argument("--out", type=Path, required=True, help=OUT_HELP)
    where = vfa.add_mutually_exclusive_group(required=True)
    where.add_argument("--seeds", type=Path, help="Slicer markups file (.mrk.json) of seed "
                       "points labelled by level (L1, L2, ...)")
    where.add_argument("--seed", action="append", metavar="LEVEL=R,A,S",
                       help="a seed point inside a vertebral body, RAS mm (repeatable)")
    where.add_argument("--labels", type=Path, help="vertebra label map (NIfTI/NRRD) on any "
                       "grid covering the CT, or a TotalSegmentator output folder")
    add_options(vfa, FractureOptions)
    add_options(vfa, SpineOptions, skip=tuple(f.name for f in fields(SpineOptions)
                                              if f.name != "label_scheme"))
    vfa.add_argument("--anonymize", action="store_true",
                     help="leave patient identity out of the outputs")
    vfa.set_defaults(handler=_cmd_vfa)
    add_max_memory_option(vfa)


def _cmd_vfa(args) -> int:
    from boneqct.spine.label_input import read_vertebra_labels
    from boneqct.spine.seeds import parse_seed_args, read_markups_seeds
    from boneqct.spine.vfa import analyze_vfa, write_vfa_outputs

    options = options_from_args(FractureOptions, args)
    check_output_folder(args.out)
    volume = load_input(args)
    seeds = labels = None
    scheme = args.label_scheme
    if args.seeds:
        seeds = read_markups_seeds(args.seeds)
    elif args.seed:
        seeds = parse_seed_args(args.seed)
    else:
        labels, folder_scheme = read_vertebra_labels(args.labels)
        scheme = folder_scheme or scheme
    result = analyze_vfa(volume, options, seeds=seeds, labels=labels, label_scheme=scheme)
    paths = write_output_set(args.out, "vfa", lambda folder: write_vfa_outputs(
        folder, result, volume, anonymize=args.anonymize))
    for level in result.levels:
        fracture = level["fracture"]
        if fracture is None or fracture["heights_mm"] is None:
            print(f"{level['level']}: not measured (see the warnings)")
            continue
        h = fracture["heights_mm"]
        grade = ("not graded" if fracture["genant_grade"] is None
                 else f"Genant grade {fracture['genant_grade']} {fracture['type'] or ''}".rstrip())
        print(f"{level['level']}: heights anterior {h['anterior']:.1f}, middle {h['middle']:.1f}, "
              f"posterior {h['posterior']:.1f} mm; {grade}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"report: {paths['report']}")
    return 0

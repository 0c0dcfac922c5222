"""Screw-trajectory command: screw."""

from __future__ import annotations

from pathlib import Path

from boneqct.cli import common
from boneqct.errors import ScrewError
from boneqct.io.atomic import write_output_set
from boneqct.screw.options import ScrewOptions

#: Example command line shown by --help (a screw in the digital phantom's L2 body).
SCREW_EXAMPLE = ("boneqct screw ct_folder/ --phantom mindways-model3 "
                 "--line L2_left=12,-55,0:3,-20,0 --seed L2=0,-25,0 --out screw-out")


def _add_screw_inputs(parser) -> None:
    """The planned screws (--line or --lines: checked by the command, so that a line missing
    ends with its own message), their length, and where the vertebrae are (optional)."""
    screws = parser.add_mutually_exclusive_group()
    screws.add_argument("--line", action="append", metavar="NAME=R,A,S:R,A,S",
                        help="a planned screw: entry and tip, RAS mm (repeatable; negative "
                             "numbers as typed: L4_right=22,-60,10:5,-25,12)")
    screws.add_argument("--lines", type=Path, metavar="FILE.mrk.json",
                        help="Slicer markups file of line markups (entry point first, tip "
                             "second), LPS or RAS as its coordinateSystem says")
    parser.add_argument("--length-mm", type=common.number_in(5.0, 150.0, " mm"),
                        help="screw length: the tip is placed this far from the entry along "
                             "each line (default: the line's own length)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--seeds", type=Path, help="Slicer markups file of seed points labelled "
                       "by level (L1, L2, ...): names each screw's level")
    where.add_argument("--seed", action="append", metavar="LEVEL=R,A,S",
                       help="a point inside a vertebral body, RAS mm (repeatable): names each "
                            "screw's level and splits its path into pedicle and body")
    where.add_argument("--labels", type=Path, help="vertebra label map (NIfTI/NRRD) or a "
                       "TotalSegmentator output folder: names each screw's level")
    parser.add_argument("--anonymize", action="store_true",
                        help="leave patient identity out of the outputs")
    common.add_dicom_option(parser)


def register(sub) -> None:
    """Add the ``screw`` subcommand to the ``boneqct`` parser."""
    common.add_measurement(sub, "screw", "bone density along planned screw trajectories: calibrated "
                    "BMD in each screw's cylinder, in the thread shell around it and along its "
                    "path, cortical contact, level, and a cement suggestion (a research aid)",
                    SCREW_EXAMPLE, _cmd_screw, ScrewOptions, where=_add_screw_inputs)


def _cmd_screw(args) -> int:
    from boneqct.screw.lines import parse_line_args, read_markups_lines
    from boneqct.screw.outputs import write_screw_outputs
    from boneqct.screw.pipeline import analyze_screws

    if not args.line and not args.lines:
        raise ScrewError("No screw was given; give each planned screw as --line "
                         "NAME=R,A,S:R,A,S (entry:tip, RAS mm) or a Slicer markups line file "
                         "with --lines FILE.mrk.json.")
    options = common.start_measurement(args, ScrewOptions)
    lines = (read_markups_lines(args.lines, args.length_mm) if args.lines
             else parse_line_args(args.line, args.length_mm))
    if args.dicom:
        check_dicom_names(lines)
    seeds = labels = None
    if args.seeds or args.seed or args.labels:
        seeds, labels, options = common.body_inputs(args, options)
    volume, calibration = common.ct_and_calibration(args)
    result = analyze_screws(volume, calibration, options, lines=lines, seeds=seeds,
                            labels=labels)
    add_dicom = common.dicom_writer(args, "screw", volume, result)
    paths = write_output_set(args.out, "screw", lambda folder: add_dicom(folder, write_screw_outputs(
        folder, result, volume, anonymize=args.anonymize)))
    unit = "mg/cm3" if result.calibrated else "HU"
    for s in result.screws:
        if not s.measured:
            print(f"{s.name}: not measured (see the warnings)")
            continue
        value, shell, low = ((s.bmd_mg_cm3, s.shell_bmd_mg_cm3, s.min_segment_bmd_mg_cm3)
                             if result.calibrated else (s.mean_hu, s.shell_mean_hu,
                                                        s.min_segment_hu))
        flag = common.CEMENT_FLAG if s.cement_suggested else ""
        print(f"{s.name}{' (' + s.level + ')' if s.level else ''}: {value:.1f} {unit} in the "
              f"screw, {shell:.1f} in the shell, lowest segment {low:.1f}; cortical contact "
              f"{100 * s.cortical_contact_fraction:.0f}%{flag}")
    return common.print_done(result, paths, any(s.cement_suggested for s in result.screws))


#: Longest screw name the DICOM outputs hold (segment label and tracking identifier: LO).
MAX_DICOM_NAME = 64


def check_dicom_names(lines) -> None:
    """Refuse (exit 2) --dicom for a screw whose name DICOM would cut short: two screws could
    no longer be told apart in the SR and SEG."""
    for line in lines:
        if len(line.name) > MAX_DICOM_NAME:
            raise ScrewError(f"--dicom: the screw name '{line.name[:20]}...' has {len(line.name)} "
                             f"characters; DICOM segment labels and tracking identifiers hold "
                             f"at most {MAX_DICOM_NAME}. Give the screw a shorter name.")

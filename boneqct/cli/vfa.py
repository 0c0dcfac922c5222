"""Vertebral fracture assessment command: vfa."""

from __future__ import annotations

from dataclasses import fields

from boneqct.cli import common
from boneqct.io.atomic import write_output_set
from boneqct.options import add_options, options_from_args
from boneqct.spine.fracture import FractureOptions
from boneqct.spine.options import SpineOptions

#: Example command line shown by --help.
VFA_EXAMPLE = "boneqct vfa ct_folder/ --labels vertebrae.nii.gz --out vfa-out"


def register(sub) -> None:
    """Add the ``vfa`` subcommand to the ``boneqct`` parser."""
    vfa = common.add_command(sub, "vfa", "vertebral fracture assessment: anterior, middle and "
                      "posterior heights of each vertebral body, Genant grade and type, and a "
                      "one-page sagittal overview", VFA_EXAMPLE)
    common.add_input(vfa, slice_thickness=True)
    common.add_out(vfa)
    common.add_body_inputs(vfa, "vertebra label map (NIfTI/NRRD) on any grid covering the CT, or a "
                    "TotalSegmentator output folder; every level T4-L5 it holds is assessed "
                    "(none of --seeds/--seed/--labels: the bodies are detected and named, "
                    "see boneqct detect)", required=False)
    # no BMD mean here: the grade that leaves it is the spine command's
    add_options(vfa, FractureOptions, skip=("exclude_from_grade",))
    add_options(vfa, SpineOptions, skip=tuple(f.name for f in fields(SpineOptions)
                                              if f.name != "label_scheme"))
    vfa.add_argument("--anonymize", action="store_true",
                     help="leave patient identity out of the outputs")
    common.add_max_memory_option(vfa, _cmd_vfa)


def _cmd_vfa(args) -> int:
    from boneqct.spine.levels import VFA_LEVEL_NAMES
    from boneqct.spine.vfa import analyze_vfa, write_vfa_outputs

    seeds, labels, spine_options = common.body_inputs(
        args, common.start_measurement(args, SpineOptions), VFA_LEVEL_NAMES)
    options = options_from_args(FractureOptions, args)
    volume = common.load_input(args)
    detection = None
    if seeds is None and labels is None:  # neither seeds nor labels: detect the bodies
        from boneqct.spine.detect import detect_vertebrae

        detection = detect_vertebrae(volume)
        seeds = detection.seeds(VFA_LEVEL_NAMES)
    result = analyze_vfa(volume, options, seeds=seeds, labels=labels,
                         label_scheme=spine_options.label_scheme)
    if detection is not None:  # the names are a proposal: said where the grades are read
        result.warnings[:0] = [f"Detection: {w}" for w in detection.warnings]
    paths = write_output_set(args.out, "vfa", lambda folder: write_vfa_outputs(
        folder, result, volume, anonymize=args.anonymize, detection=detection))
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
    common.print_done(result, paths)
    return 0

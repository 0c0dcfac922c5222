"""Spine QCT commands: spine, compare."""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

from boneqct.cli import common
from boneqct.errors import SpineError
from boneqct.io.atomic import write_output_set
from boneqct.spine.options import SpineOptions

#: Example command lines shown by --help (the digital phantom's L1 and L2 centres).
SPINE_EXAMPLE = ("boneqct spine ct_folder/ --phantom mindways-model3 --seed L1=0,-25,29 "
                 "--seed L2=0,-25,0 --levels L1-L2 --out spine-out")
COMPARE_EXAMPLE = "boneqct compare 2023/spine.json 2025/spine.json --precision 2.5"
_DEFAULTS = {"--levels": SpineOptions().levels_used, "--exclude": SpineOptions().exclude}


def register(sub) -> None:
    """Add this module's subcommands to the ``boneqct`` parser."""
    spine = common.add_measurement(sub, "spine", "per-level trabecular BMD of the lumbar spine",
                            SPINE_EXAMPLE, _cmd_spine, SpineOptions,
                            where=partial(common.add_body_inputs, required=False),
                            slice_thickness=True)
    spine.add_argument("--reference", help="reference data (bundled name or JSON file) for "
                       "T/Z-scores")
    common.add_patient_options(spine)
    common.add_dicom_option(spine)

    compare = common.add_command(sub, "compare", "follow-up: change between two spine.json files",
                          COMPARE_EXAMPLE)
    compare.add_argument("old", type=Path, help="spine.json of the earlier exam")
    compare.add_argument("new", type=Path, help="spine.json of the later exam")
    lsc = compare.add_mutually_exclusive_group()
    lsc.add_argument("--lsc", type=common.number_in(1e-6, 1000.0, " mg/cm3"), metavar="MG_CM3",
                     help="least significant change")
    lsc.add_argument("--precision", type=common.number_in(1e-6, 1000.0, " mg/cm3"), metavar="MG_CM3",
                     help="precision error (RMS-SD); LSC = 2.77 x precision")
    compare.add_argument("--json", action="store_true", help="print JSON")
    compare.set_defaults(handler=_cmd_compare)


def _cmd_spine(args) -> int:
    from boneqct.reference import load_reference
    from boneqct.spine.outputs import write_spine_outputs
    from boneqct.spine.pipeline import analyze_spine

    seeds, labels, options = common.body_inputs(args, common.start_measurement(args, SpineOptions))
    detection = None
    if seeds is None and labels is None:  # neither seeds nor labels: detect the bodies
        from boneqct.spine.detect import detect_vertebrae

        volume, calibration = common.ct_and_calibration(args)
        detection = detect_vertebrae(volume)
        seeds = detection.seeds()
        check_level_names(options, given_levels(seeds, labels, options.label_scheme))
    else:
        check_level_names(options, given_levels(seeds, labels, options.label_scheme))
        volume, calibration = common.ct_and_calibration(args)
    result = analyze_spine(
        volume, calibration, options, seeds=seeds, labels=labels,
        reference=load_reference(args.reference) if args.reference else None,
        age_years=common.patient_age(args, volume), sex=common.patient_sex(args, volume))
    add_dicom = common.dicom_writer(args, "spine", volume, result)
    paths = write_output_set(args.out, "spine", lambda folder: add_dicom(folder, write_spine_outputs(
        folder, result, volume, anonymize=args.anonymize, detection=detection)))
    unit = "mg/cm3" if result.calibrated else "HU"
    for lv in result.levels:
        if not lv.measured:
            print(f"{lv.level}: not measured (see the warnings)")
            continue
        value = lv.bmd_mg_cm3 if result.calibrated else lv.mean_hu
        flag = common.CEMENT_FLAG if lv.cement_augmentation else ""
        qc = "" if lv.qc["passed"] else "  (ROI QC failed: not used)"
        print(f"{lv.level}: {value:.1f} {unit}{flag}{qc}")
    if result.mean_bmd_mg_cm3 is not None:
        print(f"mean {'/'.join(result.levels_used)}: {result.mean_bmd_mg_cm3:.1f} mg/cm3 "
              f"({result.interpretation['basis']}), category: "
              f"{result.category or 'none (see the warnings)'}")
    return common.print_done(result, paths, any(lv.cement_augmentation for lv in result.levels))


def given_levels(seeds: dict | None, labels, label_scheme: str) -> list[str]:
    """The levels the input names: the seeds' levels, or the levels whose label value the
    label map holds (in ``label_scheme`` numbering), cranial first."""
    from boneqct.spine.levels import LABEL_SCHEMES, LEVEL_NAMES

    if seeds is not None:
        return sorted(seeds, key=LEVEL_NAMES.index)
    present = [level for value, level in LABEL_SCHEMES[label_scheme].items()
               if (labels.array_kji == value).any()]
    return sorted(present, key=LEVEL_NAMES.index)


def check_level_names(options: SpineOptions, given: list[str]) -> None:
    """Refuse (exit 2) --levels or --exclude naming no level of the input: a typing mistake
    that would otherwise end in a diagnosis from other levels, or none. The default levels
    (L1, L2) are not checked: the analysis replaces a missing one by its neighbour."""
    for flag, named in (("--levels", options.levels_used), ("--exclude", options.exclude)):
        if named and named != _DEFAULTS[flag] and not set(named) & set(given):
            raise SpineError(f"{flag} {','.join(named)} names no level of the input, which "
                             f"has {', '.join(given) or 'no vertebral level'}; name levels "
                             f"that were given (e.g. {flag} {'-'.join(given[:2:1]) or 'L1-L2'}).")


def _cmd_compare(args) -> int:
    from boneqct.spine.followup import compare_exams

    comparison = compare_exams(common.read_result_json(args.old, "spine"), common.read_result_json(args.new, "spine"),
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

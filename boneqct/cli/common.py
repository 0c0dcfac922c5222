"""Options and input handling shared by the subcommands."""

from __future__ import annotations

import argparse
import functools
import os
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np

from boneqct.errors import BoneQCTError
from boneqct.io.atomic import OUT_HELP, check_output_folder
from boneqct.io.images import refuse_label_map
from boneqct.io.user_json import read_user_json
from boneqct.options import number_in, options_from_args
from boneqct.resources import (
    DEFAULT_MAX_MEMORY_GB,
    MAX_MAX_MEMORY_GB,
    MIN_MAX_MEMORY_GB,
    limited_memory,
)
from boneqct.volume import with_stated_slice_thickness


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that states each option's default (unless its text already does) and keeps the
    example's line breaks."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if "default" in text or not action.option_strings or default is argparse.SUPPRESS \
                or default is None or default is False or default in ("", (), []):
            return text
        shown = (",".join(map(str, action.default)) if isinstance(action.default, (list, tuple))
                 else action.default)
        return f"{text} (default {shown})"


def file_path(example_name: str):
    """An argparse type for an output file's path as typed: one ending in '/' names a folder,
    which Path would drop silently (`calibrate --out cal/` wrote a file named 'cal'); the
    message suggests ``example_name`` in it."""
    def parse(text: str) -> Path:
        if text.endswith(("/", os.sep)):
            raise argparse.ArgumentTypeError(f"'{text}' ends with '/', naming a folder; give a "
                                             f"file name (e.g. {text}{example_name})")
        return Path(text)
    return parse


def add_command(sub, name: str, help: str, example: str) -> argparse.ArgumentParser:
    """A subcommand parser whose --help states the defaults and ends with ``example`` (a
    full command line), with ``--quiet``."""
    parser = sub.add_parser(name, help=help,
                            description=textwrap.fill(help[:1].upper() + help[1:] + ".", 79),
                            formatter_class=HelpFormatter,
                            epilog=f"example:\n  {example}")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress display (shown on a terminal only, for steps over "
                             "2 s)")
    return parser


def add_measurement(sub, name: str, help: str, example: str, handler, options_class, *,
                    where=None, memory_limit: bool = True,
                    slice_thickness: bool = False) -> argparse.ArgumentParser:
    """A subcommand measuring a CT into an output folder: the input (``add_input``), --out,
    the calibration options, ``where(parser)`` (where the structure is, if given), the flags
    of ``options_class``, and ``handler`` (run under --max-memory-gb when ``memory_limit``)."""
    from boneqct.options import add_options

    parser = add_command(sub, name, help, example)
    add_input(parser, slice_thickness)
    add_out(parser)
    add_calibration_options(parser)
    if where is not None:
        where(parser)
    add_options(parser, options_class)
    parser.set_defaults(handler=handler)
    if memory_limit:
        add_max_memory_option(parser)
    return parser


def add_out(parser: argparse.ArgumentParser) -> None:
    """The required output folder of a measurement (replaced as one unit)."""
    parser.add_argument("--out", type=Path, required=True, help=OUT_HELP)


def add_body_inputs(parser: argparse.ArgumentParser, labels_help: str = "vertebra label map "
                    "(NIfTI/NRRD) on any grid covering the CT, or a TotalSegmentator output "
                    "folder of per-structure masks (vertebrae_L1.nii.gz ...)",
                    required: bool = True) -> None:
    """Where the vertebral bodies are: a markups file, --seed points, or a label map (none of
    them when not ``required``: the command detects the bodies)."""
    where = parser.add_mutually_exclusive_group(required=required)
    where.add_argument("--seeds", type=Path, help="Slicer markups file (.mrk.json) of seed "
                       "points labelled by level (L1, L2, ...)")
    where.add_argument("--seed", action="append", metavar="LEVEL=R,A,S",
                       help="a seed point inside a vertebral body, RAS mm (repeatable; "
                            "negative numbers as typed: L1=-5,20,31)")
    where.add_argument("--labels", type=Path, help=labels_help)


def add_femur_inputs(parser: argparse.ArgumentParser) -> None:
    """--side and where the femur is: a point in its head (--seed) or a label map."""
    parser.add_argument("--side", choices=["left", "right"], required=True, help="which hip")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--seed", metavar="R,A,S", help="a point in the femoral head (RAS mm; "
                       "a left hip's R is negative: --seed -95,10,0)")
    where.add_argument("--labels", type=Path, help="label map with femur_left/femur_right")


def femur_inputs(args):
    """(seed point RAS mm or None, label map or None) from --seed / --labels."""
    from boneqct.io import read_volume_file

    return (parse_point(args.seed, "--seed", "-95,10,0"),
            read_volume_file(args.labels) if args.labels else None)


def body_inputs(args, options, levels: tuple[str, ...] | None = None):
    """(seeds, labels, options) from --seeds, --seed or --labels: seed points by level (RAS
    mm) or a vertebra label map, the options' label scheme set by a TotalSegmentator folder;
    (None, None, options) when none is given (the bodies are to be detected). ``levels``:
    the level names accepted (None: those of spine QCT, ``LEVEL_NAMES``)."""
    from boneqct.spine.label_input import read_vertebra_labels
    from boneqct.spine.levels import LEVEL_NAMES
    from boneqct.spine.seeds import parse_seed_args, read_markups_seeds

    levels = levels or LEVEL_NAMES
    if args.seeds:
        return read_markups_seeds(args.seeds, levels), None, options
    if args.seed:
        return parse_seed_args(args.seed, levels), None, options
    if args.labels is None:
        return None, None, options
    labels, folder_scheme = read_vertebra_labels(args.labels, levels)
    return None, labels, replace(options, label_scheme=folder_scheme) if folder_scheme else options


def add_patient_options(parser: argparse.ArgumentParser, *, age: bool = True,
                        sex_for: str = "") -> None:
    """--age, --sex (else from DICOM) and --anonymize."""
    if age:
        parser.add_argument("--age", type=number_in(0.0, 130.0, " years"),
                            help="patient age in years (else from DICOM)")
    parser.add_argument("--sex", choices=["F", "M"],
                        help=f"patient sex{sex_for} (else from DICOM)")
    parser.add_argument("--anonymize", action="store_true",
                        help="leave patient identity out of the outputs")


def add_dicom_option(parser: argparse.ArgumentParser) -> None:
    """--dicom: the results also as DICOM objects in OUT/dicom/."""
    parser.add_argument("--dicom", action="store_true",
                        help="also write DICOM: an SR measurement report, a SEG of the regions "
                             "measured on the CT's slices and the report as Encapsulated PDF, "
                             "in OUT/dicom/ (import that folder in Slicer's DICOM module); "
                             "de-identified with --anonymize")


def dicom_writer(args, kind: str, volume, result):
    """``add(folder, paths) -> paths``: adds the DICOM outputs of ``result`` to an output set
    being written when --dicom was given (else returns ``paths`` unchanged). The source
    series is read here, before any output is written (``boneqct.dicom.dicom_source``)."""
    if not getattr(args, "dicom", False):
        return lambda folder, paths: paths
    from boneqct.dicom import dicom_source, write_dicom_outputs

    source = dicom_source(volume, list(args.input), args.series, anonymize=args.anonymize)
    return lambda folder, paths: {**paths, **write_dicom_outputs(folder, kind, paths, source,
                                                                  volume, result)}


def patient_sex(args, volume) -> str | None:
    """"F" or "M" from --sex or the DICOM header, else None."""
    sex = args.sex or volume.metadata.get("patient_sex")
    return sex if sex in ("F", "M") else None


def patient_age(args, volume) -> float | None:
    """Age in years from --age or the DICOM header."""
    return args.age if args.age is not None else volume.metadata.get("patient_age_years")


def parse_point(text: str | None, flag: str, example: str) -> list[float] | None:
    """A point R,A,S (RAS mm) given as text to ``flag``, or None; BoneQCTError naming the
    form otherwise."""
    if text is None:
        return None
    try:
        point = [float(v) for v in text.split(",")]
    except ValueError:
        point = []
    if len(point) != 3 or not np.all(np.isfinite(point)):
        raise BoneQCTError(f"{flag} '{text[:40]}' is not a point R,A,S of three finite numbers "
                           f"in mm; e.g. {flag} {example}.")
    return point


def start_measurement(args, options_class):
    """The options of a measurement writing an output folder, checked with the folder before
    anything is read."""
    options = options_from_args(options_class, args)
    check_output_folder(args.out)
    return options


def ct_and_calibration(args):
    """(volume, calibration): the CT of the command and the calibration chosen for it."""
    volume = load_input(args)
    return volume, calibration_from_args(args, volume)


#: What the command line prints beside a cement-augmentation flag.
CEMENT_FLAG = "  CEMENT AUGMENTATION SUGGESTED"


def print_done(result, paths: dict, cement_flagged: bool = False) -> int:
    """The cement note when anything was flagged for cement, the result's warnings (stderr)
    and where its report is; returns the exit status 0."""
    if cement_flagged:
        from boneqct.spine.interpret import CEMENT_NOTE

        print(CEMENT_NOTE)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"report: {paths['report']}")
    return 0


def add_max_memory_option(parser, handler=None) -> None:
    """Add ``--max-memory-gb`` to a subcommand parser and run its ``handler`` (default: the one
    set with ``parser.set_defaults(handler=...)``) under that limit."""
    handler = handler or parser.get_default("handler")
    if handler is None:
        raise ValueError("add_max_memory_option needs the parser's handler set first")
    parser.add_argument(
        "--max-memory-gb", type=number_in(MIN_MAX_MEMORY_GB, MAX_MAX_MEMORY_GB, " GB"),
        default=DEFAULT_MAX_MEMORY_GB,
        help=f"refuse, before allocating, work estimated to need more memory than this, GB "
             f"(default {DEFAULT_MAX_MEMORY_GB:g}; {MIN_MAX_MEMORY_GB:g}-{MAX_MAX_MEMORY_GB:g})")

    @functools.wraps(handler)
    def limited(args):
        with limited_memory(args.max_memory_gb):
            return handler(args)

    parser.set_defaults(handler=limited)


def add_input(parser: argparse.ArgumentParser, slice_thickness: bool = False) -> None:
    """The CT input and --series; with ``slice_thickness``, --slice-thickness (for the
    commands whose models read a voxel over its slice, or that record it)."""
    parser.add_argument("input", nargs="+", type=Path,
                        help="DICOM folder, DICOM files of one series, or a NIfTI/NRRD/MHA file")
    parser.add_argument("--series", metavar="UID", help="SeriesInstanceUID to use in a folder")
    if not slice_thickness:
        return
    parser.add_argument("--slice-thickness", type=number_in(0.05, 20.0, " mm"), metavar="MM",
                        help="the thickness (mm) the slices were reconstructed at, for a "
                             "volume file, which states none (a DICOM series states its "
                             "own); without it a volume file's slices are taken as thick as "
                             "they are apart")


def add_calibration_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--phantom", help="calibrate with this phantom (name or certificate JSON)")
    group.add_argument("--calibration", type=Path, help="a calibration JSON from `boneqct "
                       "calibrate` (refused for another kVp or scanner), or 'internal' for a "
                       "phantomless estimate from the patient's own tissues (opportunistic, "
                       "no category)")
    group.add_argument("--slope", type=number_in(MIN_SLOPE_HU_PER_MG_CM3, MAX_SLOPE_HU_PER_MG_CM3),
                       help="manual calibration slope, HU per mg/cm3 "
                       "(with --intercept)")
    group.add_argument("--hu", action="store_true", help="no calibration: CT numbers only "
                       "(no BMD, no category, no cement flag)")
    parser.add_argument("--intercept", type=number_in(-MAX_ABS_INTERCEPT_HU, MAX_ABS_INTERCEPT_HU,
                                                      " HU"),
                        help="manual calibration intercept, HU")
    parser.add_argument("--material", choices=["K2HPO4", "HA"],
                        help="material of a manual calibration; without it the BMD gets no "
                             "category")
    parser.add_argument("--force-calibration", action="store_true",
                        help="apply a --calibration file measured at another kVp or on another "
                             "scanner (stated in the outputs; no category)")


def calibration_from_args(args, volume):
    """The calibration chosen on the command line, checked against the scan it is applied to
    (``Calibration.applied``), or None (HU only)."""
    from boneqct.calibration import calibrate_with_phantom, manual_calibration
    from boneqct.calibration.fit import MATERIAL_UNSTATED
    from boneqct.calibration.provenance import check_calibration_applies, measured_on_this_scan
    from boneqct.calibration.stored import read_calibration_file

    if (args.slope is None) != (args.intercept is None):
        raise BoneQCTError("A manual calibration needs both --slope and --intercept.")
    if args.material and args.slope is None:
        raise BoneQCTError("--material states the material of a manual calibration (--slope and "
                           "--intercept); a phantom or calibration file carries its own.")
    if args.force_calibration and (args.calibration is None or str(args.calibration) == "internal"):
        raise BoneQCTError("--force-calibration applies a --calibration file to a scan it was "
                           "not measured on; give the file with --calibration.")
    if args.phantom:
        calibration = measured_on_this_scan(calibrate_with_phantom(volume, args.phantom))
    elif args.calibration is not None and str(args.calibration) == "internal":
        from boneqct.calibration.internal import internal_calibration

        calibration = measured_on_this_scan(internal_calibration(volume))
    elif args.calibration:
        calibration = check_calibration_applies(read_calibration_file(args.calibration),
                                                volume.metadata, args.force_calibration)
    elif args.slope is not None:
        calibration = measured_on_this_scan(manual_calibration(
            args.slope, args.intercept, args.material or MATERIAL_UNSTATED))
    else:
        if not args.hu:
            print("warning: no calibration given: measuring HU only (no BMD, no category); "
                  "say --hu to choose this explicitly.", file=sys.stderr)
        return None
    check_calibration_line(calibration)
    for warning in [*calibration.warnings, calibration.applied["warning"]]:
        if warning:
            print(f"warning: calibration: {warning}", file=sys.stderr)
    return calibration


#: Plausible calibration lines: a CT number rises with mineral density (K2HPO4 and HA lines
#: lie near 1-2 HU per mg/cm3, Goodsitt 1992) and the line meets zero mineral near water,
#: 0 HU; these wide bounds only catch impossible lines, e.g. a phantom definition that does
#: not match the rods in the scan, or a slope of 0.1 that reads the phantom's 100 mg/cm3
#: vertebra as 1250 (project bounds, not verified as clinical limits).
MIN_SLOPE_HU_PER_MG_CM3 = 0.3
MAX_SLOPE_HU_PER_MG_CM3 = 10.0
MAX_ABS_INTERCEPT_HU = 100.0


def _number(value) -> str:
    """A number for a message, whatever a file held (None, text)."""
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return repr(value)


def check_calibration_line(calibration) -> None:
    """Refuse a calibration line that cannot convert HU to density (InputError-like exit 2):
    a slope outside MIN_SLOPE_HU_PER_MG_CM3-MAX_SLOPE_HU_PER_MG_CM3 (or not finite), an
    intercept beyond +-MAX_ABS_INTERCEPT_HU, or per-slice values that are not finite."""
    slopes = [calibration.slope_hu_per_mg_cm3]
    intercepts = [calibration.intercept_hu]
    if calibration.per_slice:
        slopes += list(calibration.per_slice.get("slope_hu_per_mg_cm3") or [])
        intercepts += list(calibration.per_slice.get("intercept_hu") or [])
    try:
        slopes = np.asarray(slopes, float)
        intercepts = np.asarray(intercepts, float)
    except (TypeError, ValueError):
        raise BoneQCTError("The calibration's per-slice values are not numbers; recalibrate "
                           "with `boneqct calibrate`.") from None
    source = {"phantom": "The phantom fit", "internal": "The internal calibration",
              "manual": "The manual calibration"}.get(calibration.method, "The calibration")
    if not (np.all(np.isfinite(slopes)) and np.all(slopes >= MIN_SLOPE_HU_PER_MG_CM3)
            and np.all(slopes <= MAX_SLOPE_HU_PER_MG_CM3)):
        raise BoneQCTError(f"{source} has a slope of {_number(calibration.slope_hu_per_mg_cm3)} HU per "
                           f"mg/cm3; a calibration line rises with density by {MIN_SLOPE_HU_PER_MG_CM3:g} to "
                           f"{MAX_SLOPE_HU_PER_MG_CM3:g} HU per mg/cm3. Check the phantom definition (--phantom) "
                           "or the calibration values.")
    if not np.all(np.isfinite(intercepts)) or np.any(np.abs(intercepts) > MAX_ABS_INTERCEPT_HU):
        raise BoneQCTError(f"{source} has an intercept of {_number(calibration.intercept_hu)} HU; water-"
                           f"like tissue lies near 0 HU (|intercept| <= {MAX_ABS_INTERCEPT_HU:g}). "
                           + ("Is the phantom in the scan the one its certificate describes, "
                              "and are its rods those in the scan?"
                              if calibration.method == "phantom" else
                              "Check the calibration values."))


def load_input(args, ct: bool = True):
    """The input volume of the command; ``ct``: it must be a CT, not a label map."""
    from boneqct.io import load_ct

    source = args.input[0] if len(args.input) == 1 else list(args.input)
    volume = load_ct(source, series_uid=args.series)
    if getattr(args, "slice_thickness", None) is not None:
        volume = with_stated_slice_thickness(volume, args.slice_thickness)
    if ct:
        refuse_label_map(volume, Path(source[0] if isinstance(source, list) else source).name)
    if getattr(args, "anonymize", False):
        from boneqct.io.dicom import scrub_identity

        volume.warnings = [scrub_identity(w, volume.metadata) for w in volume.warnings]
    for warning in volume.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return volume


def read_result_json(path: Path, kind: str) -> dict:
    """A result document (``spine.json``, ``fe.json``...) written by ``boneqct <kind>``, read
    strictly (``boneqct.io.user_json``); its fields are checked by the command using them."""
    return read_user_json(path, f"give {kind}.json files written by `boneqct {kind}`.")

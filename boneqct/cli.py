"""The ``boneqct`` command line.

Each subcommand reads its input through ``boneqct.io``, calls the core, and writes its results
atomically. Problems with the input end with a one-paragraph message on stderr and exit code 2,
never a traceback; messages and logs carry no patient identity.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from boneqct import __version__
from boneqct.errors import BoneQCTError

EXIT_INPUT_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``boneqct`` console script."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except BoneQCTError as exc:
        print(f"boneqct {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="boneqct",
        description="Calibrated bone densitometry from clinical CT (spine QCT, calibration, "
                    "digital phantoms).",
    )
    parser.add_argument("--version", action="version", version=f"boneqct {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser("info", help="describe a CT input: series, geometry, exam metadata")
    _add_input(info)
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.add_argument("--anonymize", action="store_true", help="leave out patient identity")
    info.set_defaults(handler=_cmd_info)

    cal = sub.add_parser("calibrate", help="calibrate HU to mineral density with a phantom")
    _add_input(cal)
    cal.add_argument("--phantom", required=True,
                     help="bundled phantom name (mindways-model3, qrm-bdc-3, qrm-bdc-6, "
                          "b-mas-200) or a certificate JSON file")
    cal.add_argument("--slices", metavar="FIRST:LAST",
                     help="slice index range k to search (inclusive); default all slices")
    cal.add_argument("--per-slice", action="store_true",
                     help="also fit slope and intercept as a function of z (long scans)")
    cal.add_argument("--out", type=Path, help="write the calibration JSON here")
    cal.set_defaults(handler=_cmd_calibrate)

    spine = sub.add_parser("spine", help="per-level trabecular BMD of the lumbar spine")
    _add_input(spine)
    spine.add_argument("--out", type=Path, required=True, help="output folder")
    _add_calibration_options(spine)
    where = spine.add_mutually_exclusive_group(required=True)
    where.add_argument("--seeds", type=Path, help="Slicer markups file (.mrk.json) of seed "
                       "points labelled by level (L1, L2, ...)")
    where.add_argument("--seed", action="append", metavar="LEVEL=R,A,S",
                       help="a seed point inside a vertebral body, RAS mm (repeatable)")
    where.add_argument("--labels", type=Path, help="vertebra label map (NIfTI/NRRD)")
    spine.add_argument("--label-scheme", choices=["totalsegmentator", "verse"],
                       default="totalsegmentator", help="numbering of --labels")
    spine.add_argument("--levels", default="L1,L2",
                       help="levels averaged for the diagnostic value (default L1,L2)")
    spine.add_argument("--exclude", default="", help="levels to leave out (e.g. fractured)")
    spine.add_argument("--roi", choices=["elliptic-cylinder", "trabecular-3d"],
                       default="elliptic-cylinder", help="ROI shape")
    spine.add_argument("--roi-thickness-mm", type=float, default=9.0, help="ROI slab thickness")
    spine.add_argument("--margin-mm", type=float, default=2.0, help="margin from the cortex")
    spine.add_argument("--cement-threshold", type=float, default=50.0, metavar="MG_CM3",
                       help="BMD below which cement augmentation is suggested (default 50)")
    spine.add_argument("--reference", help="reference data (bundled name or JSON file) for "
                       "T/Z-scores")
    spine.add_argument("--age", type=float, help="patient age in years (else from DICOM)")
    spine.add_argument("--sex", choices=["F", "M"], help="patient sex (else from DICOM)")
    spine.add_argument("--anonymize", action="store_true",
                       help="leave patient identity out of the outputs")
    spine.set_defaults(handler=_cmd_spine)

    compare = sub.add_parser("compare", help="follow-up: change between two spine.json files")
    compare.add_argument("old", type=Path, help="spine.json of the earlier exam")
    compare.add_argument("new", type=Path, help="spine.json of the later exam")
    lsc = compare.add_mutually_exclusive_group()
    lsc.add_argument("--lsc", type=float, metavar="MG_CM3", help="least significant change")
    lsc.add_argument("--precision", type=float, metavar="MG_CM3",
                     help="precision error (RMS-SD); LSC = 2.77 x precision")
    compare.add_argument("--json", action="store_true", help="print JSON")
    compare.set_defaults(handler=_cmd_compare)

    ph = sub.add_parser("phantom", help="generate a digital phantom CT with its truth")
    ph.add_argument("kind", choices=["spine"], help="what the phantom holds")
    ph.add_argument("--out", type=Path, required=True, help="output folder")
    ph.add_argument("--format", default="dicom,nifti",
                    help="comma-separated: dicom, nifti (default both)")
    ph.add_argument("--seed", type=int, default=0, help="random seed (deterministic output)")
    ph.add_argument("--kvp", type=int, default=120, help="scanner preset: 80, 100, 120, 140")
    ph.add_argument("--noise-hu", type=float, default=None, help="noise SD (HU)")
    ph.add_argument("--psf-fwhm-mm", type=float, default=None, help="in-plane PSF FWHM (mm)")
    ph.add_argument("--tilt-deg", type=float, default=0.0, help="spine tilt (lordosis), degrees")
    ph.add_argument("--no-calibration-phantom", action="store_true",
                    help="leave the rod phantom out")
    ph.set_defaults(handler=_cmd_phantom)

    demo = sub.add_parser("demo", help="run the main job on the bundled digital phantom")
    demo.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder")
    demo.set_defaults(handler=_cmd_demo)
    return parser


def _add_input(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="+", type=Path,
                        help="DICOM folder, DICOM files of one series, or a NIfTI/NRRD/MHA file")
    parser.add_argument("--series", metavar="UID", help="SeriesInstanceUID to use in a folder")


def _add_calibration_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--phantom", help="calibrate with this phantom (name or certificate JSON)")
    group.add_argument("--calibration", type=Path, help="a calibration JSON from `boneqct calibrate`")
    group.add_argument("--slope", type=float, help="manual calibration slope, HU per mg/cm3 "
                       "(with --intercept)")
    parser.add_argument("--intercept", type=float, help="manual calibration intercept, HU")
    parser.add_argument("--material", default="K2HPO4", choices=["K2HPO4", "HA"],
                        help="material of a manual calibration")


def _calibration_from_args(args, volume):
    """The calibration chosen on the command line, or None (uncalibrated, HU only)."""
    from boneqct.calibration import Calibration, calibrate_with_phantom, manual_calibration

    if (args.slope is None) != (args.intercept is None):
        raise BoneQCTError("A manual calibration needs both --slope and --intercept.")
    if args.phantom:
        return calibrate_with_phantom(volume, args.phantom)
    if args.calibration:
        try:
            return Calibration.from_dict(json.loads(args.calibration.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            raise BoneQCTError(f"Cannot read the calibration file '{args.calibration.name}'; give "
                               "a JSON written by `boneqct calibrate --out`.") from None
    if args.slope is not None:
        return manual_calibration(args.slope, args.intercept, args.material)
    print("warning: no calibration given: measuring HU only (no BMD, no category).",
          file=sys.stderr)
    return None


def _levels(text: str) -> tuple[str, ...]:
    return tuple(v.strip().upper() for v in text.split(",") if v.strip())


def _load(args):
    from boneqct.io import load_ct

    source = args.input[0] if len(args.input) == 1 else list(args.input)
    volume = load_ct(source, series_uid=args.series)
    for warning in volume.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return volume


def _cmd_info(args) -> int:
    from boneqct.io import anonymized_metadata, find_series, is_volume_file

    first = args.input[0]
    series = []
    if len(args.input) > 1 or first.is_dir() or not is_volume_file(first):
        source = first if len(args.input) == 1 and first.is_dir() else list(args.input)
        series = [s.summary() for s in find_series(source)]
    volume = _load(args)
    metadata = anonymized_metadata(volume.metadata) if args.anonymize else volume.metadata
    info = {
        "series": series,
        "size": list(volume.size_ijk),
        "spacing_mm": [round(float(s), 6) for s in volume.spacing_mm],
        "ijk_to_ras": volume.ijk_to_ras.round(6).tolist(),
        "metadata": metadata,
        "warnings": volume.warnings,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for s in series:
        print(f"series {s['series_uid']}: {s['modality']} {s['orientation']}, "
              f"{s['n_slices']} slices, '{s['description']}'")
    print(f"size (i, j, k): {info['size']}")
    print(f"spacing (mm): {info['spacing_mm']}")
    print("IJK to RAS:")
    for row in info["ijk_to_ras"]:
        print("  " + "  ".join(f"{v:10.4f}" for v in row))
    for key, value in metadata.items():
        if value is not None:
            print(f"{key}: {value}")
    return 0


def _parse_slices(text: str | None):
    if not text:
        return None
    try:
        first, last = (int(v) for v in text.split(":"))
    except ValueError:
        raise BoneQCTError(f"--slices must be FIRST:LAST slice indices, got '{text}'.") from None
    return (first, last)


def _cmd_calibrate(args) -> int:
    from boneqct.calibration import calibrate_with_phantom
    from boneqct.io import write_json_atomic

    volume = _load(args)
    calibration = calibrate_with_phantom(volume, args.phantom, slice_range=_parse_slices(args.slices),
                                         per_slice=args.per_slice)
    print(_calibration_text(calibration))
    if args.out:
        write_json_atomic(args.out, calibration.to_dict())
        print(f"wrote {args.out}")
    return 0


def _calibration_text(calibration) -> str:
    """Human-readable calibration summary: fit, QC and per-rod table."""
    lines = [
        f"phantom: {calibration.phantom}   material: {calibration.material}",
        f"slope: {calibration.slope_hu_per_mg_cm3:.5f} HU per mg/cm3   "
        f"intercept: {calibration.intercept_hu:.2f} HU   R2: {calibration.r2:.5f}",
        f"slices used: {len(calibration.slices_used)}",
        f"{'rod':>6} {'density mg/cm3':>15} {'measured HU':>12} {'SD HU':>7} {'voxels':>7} "
        f"{'residual HU':>12}",
    ]
    for rod in calibration.rods:
        lines.append(f"{rod['name']:>6} {rod['density_mg_cm3']:>15.2f} {rod['measured_hu']:>12.2f} "
                     f"{rod['sd_hu']:>7.2f} {rod['n_voxels']:>7d} {rod['residual_hu']:>12.3f}")
    lines += [f"warning: {w}" for w in calibration.warnings]
    return "\n".join(lines)


def _cmd_spine(args) -> int:
    from boneqct.io import read_volume_file
    from boneqct.reference import load_reference
    from boneqct.spine.outputs import write_spine_outputs
    from boneqct.spine.pipeline import analyze_spine
    from boneqct.spine.seeds import parse_seed_args, read_markups_seeds

    volume = _load(args)
    calibration = _calibration_from_args(args, volume)
    seeds = labels = None
    if args.seeds:
        seeds = read_markups_seeds(args.seeds)
    elif args.seed:
        seeds = parse_seed_args(args.seed)
    else:
        labels = read_volume_file(args.labels)
    sex = args.sex or volume.metadata.get("patient_sex")
    age = args.age if args.age is not None else volume.metadata.get("patient_age_years")
    result = analyze_spine(
        volume, calibration, seeds=seeds, labels=labels, label_scheme=args.label_scheme,
        levels_used=_levels(args.levels), exclude=_levels(args.exclude), roi_kind=args.roi,
        thickness_mm=args.roi_thickness_mm, margin_mm=args.margin_mm,
        cement_threshold_mg_cm3=args.cement_threshold,
        reference=load_reference(args.reference) if args.reference else None,
        age_years=age, sex=sex if sex in ("F", "M") else None)
    paths = write_spine_outputs(args.out, result, volume, anonymize=args.anonymize)
    unit = "mg/cm3" if result.calibrated else "HU"
    for lv in result.levels:
        value = lv.bmd_mg_cm3 if result.calibrated else lv.mean_hu
        flag = "  CEMENT AUGMENTATION SUGGESTED" if lv.cement_augmentation else ""
        qc = "" if lv.qc["passed"] else "  (ROI QC failed)"
        print(f"{lv.level}: {value:.1f} {unit}{flag}{qc}")
    if result.mean_bmd_mg_cm3 is not None:
        print(f"mean {'/'.join(result.levels_used)}: {result.mean_bmd_mg_cm3:.1f} mg/cm3, "
              f"category: {result.category}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"report: {paths['report']}")
    return 0


def _cmd_compare(args) -> int:
    from boneqct.spine.followup import compare_exams

    documents = []
    for path in (args.old, args.new):
        try:
            documents.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            raise BoneQCTError(f"Cannot read '{path.name}'; give spine.json files written by "
                               "`boneqct spine`.") from None
    comparison = compare_exams(*documents, lsc_mg_cm3=args.lsc, precision_mg_cm3=args.precision)
    if args.json:
        print(json.dumps(comparison, indent=2))
        return 0
    for row in comparison["levels"] + ([comparison["mean"]] if "mean" in comparison else []):
        significant = ""
        if "significant" in row:
            significant = "  significant" if row["significant"] else "  within LSC"
        print(f"{row['level']}: {row['old_bmd_mg_cm3']:.1f} -> {row['new_bmd_mg_cm3']:.1f} mg/cm3, "
              f"{row['change_mg_cm3']:+.1f} mg/cm3 ({row['change_percent']:+.1f}%){significant}")
    if comparison["lsc_mg_cm3"] is not None:
        print(f"least significant change: {comparison['lsc_mg_cm3']:.2f} mg/cm3")
    else:
        print(comparison["note"])
    return 0


def _cmd_phantom(args) -> int:
    from boneqct.phantoms import (
        ScannerParams,
        SpinePhantomParams,
        make_spine_phantom,
        write_phantom,
    )

    scanner_kwargs = {"kvp": args.kvp}
    if args.noise_hu is not None:
        scanner_kwargs["noise_sd_hu"] = args.noise_hu
    if args.psf_fwhm_mm is not None:
        scanner_kwargs["psf_fwhm_mm"] = args.psf_fwhm_mm
    phantom = make_spine_phantom(
        SpinePhantomParams(spine_tilt_deg=args.tilt_deg,
                           phantom_present=not args.no_calibration_phantom),
        ScannerParams(**scanner_kwargs), seed=args.seed)
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    paths = write_phantom(phantom, args.out, formats=formats)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def _cmd_demo(args) -> int:
    from boneqct.demo import run_demo

    run_demo(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

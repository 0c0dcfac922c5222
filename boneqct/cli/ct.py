"""Foundation commands: info, calibrate, phantom, demo."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import fields
from pathlib import Path

from boneqct.calibration.options import CalibrationOptions
from boneqct.cli.common import (
    add_command,
    add_input,
    check_calibration_line,
    file_path,
    load_input,
    number_in,
)
from boneqct.errors import BoneQCTError
from boneqct.io.atomic import check_output_file, check_writable_parent
from boneqct.options import add_options, options_from_args
from boneqct.phantoms.scanner import KVP_CALIBRATION_PRESETS

#: What ``boneqct phantom`` renders.
PHANTOM_KINDS = ("spine", "femur")
PHANTOM_FORMATS = ("dicom", "nifti")


def register(sub) -> None:
    """Add this module's subcommands to the ``boneqct`` parser."""
    info = add_command(sub, "info", "describe a CT input: series, geometry, exam metadata",
                       "boneqct info ct_folder/ --anonymize")
    add_input(info, slice_thickness=True)
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.add_argument("--anonymize", action="store_true", help="leave out patient identity")
    info.set_defaults(handler=_cmd_info)

    cal = add_command(sub, "calibrate", "calibrate HU to mineral density with a phantom",
                      "boneqct calibrate ct_folder/ --phantom mindways-model3 --out cal.json")
    add_input(cal, slice_thickness=True)
    add_options(cal, CalibrationOptions, skip=("phantom", "per_slice"))
    cal.add_argument("--phantom", required=True, help=_help_of("phantom"))
    cal.add_argument("--per-slice", action="store_true", help=_help_of("per_slice"))
    cal.add_argument("--out", type=file_path("calibration.json"), help="write the calibration JSON here")
    cal.set_defaults(handler=_cmd_calibrate)

    ph = add_command(sub, "phantom", "generate a digital phantom CT (spine with rods, or "
                     "proximal femur) with its label map and truth",
                     "boneqct phantom femur --out femur-phantom --format nifti")
    ph.add_argument("kind", choices=PHANTOM_KINDS, help="what the phantom holds: lumbar spine "
                    "L1-L3 with a rod calibration phantom, or proximal femur (hip)")
    ph.add_argument("--out", type=Path, required=True, help="output folder")
    ph.add_argument("--format", type=_formats, default=PHANTOM_FORMATS,
                    help="comma-separated: dicom, nifti")
    ph.add_argument("--seed", type=number_in(0, 999_999_999, integer=True), default=0,
                    help="random seed (deterministic output; 0-999999999)")
    ph.add_argument("--kvp", type=int, choices=sorted(KVP_CALIBRATION_PRESETS), default=120,
                    help="scanner preset")
    ph.add_argument("--noise-hu", type=number_in(0.0, 500.0, " HU"), default=None,
                    help="noise SD (0-500 HU; default: the phantom's own)")
    ph.add_argument("--psf-fwhm-mm", type=number_in(0.0, 10.0, " mm"), default=None,
                    help="in-plane PSF FWHM (0-10 mm; default: the phantom's own)")
    ph.add_argument("--tilt-deg", type=number_in(-45.0, 45.0, " degrees"), default=0.0,
                    help="spine: tilt (lordosis), -45 to 45 degrees")
    ph.add_argument("--no-calibration-phantom", action="store_true",
                    help="spine: leave the rod phantom out")
    ph.add_argument("--side", choices=["left", "right", "both"], default="left",
                    help="femur: which hip")
    ph.set_defaults(handler=_cmd_phantom)

    demo = add_command(sub, "demo", "run the main job on the bundled digital phantom",
                       "boneqct demo --out demo-output")
    demo.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder")
    demo.set_defaults(handler=_cmd_demo)


def _formats(text: str) -> tuple[str, ...]:
    """The --format list ("dicom,nifti"), each a known format, at least one."""
    formats = tuple(f.strip().lower() for f in text.split(",") if f.strip())
    unknown = sorted(set(formats) - set(PHANTOM_FORMATS))
    if unknown or not formats:
        raise argparse.ArgumentTypeError(f"'{text}': give dicom, nifti or both, comma-separated")
    return formats


def _cmd_info(args) -> int:
    from boneqct.io import anonymized_metadata, find_series, is_volume_file
    from boneqct.io.dicom import hashed_uid

    first = args.input[0]
    series = []
    if len(args.input) > 1 or first.is_dir() or not is_volume_file(first):
        source = first if len(args.input) == 1 and first.is_dir() else list(args.input)
        series = [s.summary() for s in find_series(source)]
    volume = load_input(args, ct=False)
    metadata = anonymized_metadata(volume.metadata) if args.anonymize else volume.metadata
    if args.anonymize:  # the series listing carries UIDs and descriptions
        series = [{**s, "series_uid": hashed_uid(s["series_uid"]), "description": None}
                  for s in series]
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


def _help_of(name: str) -> str:
    """The help text of a CalibrationOptions field (for the flags add_options does not build:
    a required text and a switch)."""
    return next(f.metadata["help"] for f in fields(CalibrationOptions) if f.name == name)


def _cmd_calibrate(args) -> int:
    from boneqct.calibration.pipeline import calibrate
    from boneqct.io import write_json_atomic

    options = options_from_args(CalibrationOptions, args)
    if args.out:
        check_output_file(args.out, "--out", "calibration.json")
    volume = load_input(args)
    calibration = calibrate(volume, options)
    check_calibration_line(calibration)  # the rods matched to the wrong densities
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
        "measured on: " + _scan_text(calibration.scan),
        f"{'rod':>6} {'density mg/cm3':>15} {'measured HU':>12} {'SD HU':>7} {'voxels':>7} "
        f"{'residual HU':>12}",
    ]
    for rod in calibration.rods:
        lines.append(f"{rod['name']:>6} {rod['density_mg_cm3']:>15.2f} {rod['measured_hu']:>12.2f} "
                     f"{rod['sd_hu']:>7.2f} {rod['n_voxels']:>7d} {rod['residual_hu']:>12.3f}")
    lines += [f"warning: {w}" for w in calibration.warnings]
    return "\n".join(lines)


def _scan_text(scan: dict | None) -> str:
    """The scan a calibration was measured on, in one line (what is recorded of it)."""
    scan = scan or {}
    scanner = " ".join(str(scan[k]) for k in ("manufacturer", "model", "station_name")
                       if scan.get(k)) or "scanner not recorded"
    kvp = f"{scan['kvp']:g} kVp" if scan.get("kvp") is not None else "kVp not recorded"
    kernel = f"kernel {scan['convolution_kernel']}" if scan.get("convolution_kernel") else ""
    thickness = (f"{scan['slice_thickness_mm']:g} mm slices"
                 if scan.get("slice_thickness_mm") is not None else "")
    return ", ".join(p for p in (scanner, kvp, kernel, thickness,
                                 scan.get("study_date") or "date not recorded") if p)


def _cmd_phantom(args) -> int:
    from boneqct.phantoms import write_phantom

    check_writable_parent(args.out / "phantom_truth.json")
    phantom = _make_femur(args) if args.kind == "femur" else _make_spine(args)
    paths = write_phantom(phantom, args.out, formats=args.format)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    calibration = phantom.truth["calibration"]
    print(f"calibration line of the phantom's scanner: --slope "
          f"{calibration['slope_hu_per_mg_cm3']:.4f} --intercept "
          f"{calibration['intercept_hu']:.2f} --material {calibration['material']}")
    return 0


def _scanner_changes(args) -> dict:
    """The scanner settings given on the command line."""
    changes = {"kvp": args.kvp, "noise_sd_hu": args.noise_hu, "psf_fwhm_mm": args.psf_fwhm_mm}
    return {k: v for k, v in changes.items() if v is not None}


def _make_spine(args):
    from boneqct.phantoms import ScannerParams, SpinePhantomParams, make_spine_phantom

    if args.side != "left":
        raise BoneQCTError("--side chooses the hip of a femur phantom; the spine phantom has "
                           "none. Leave it out, or ask for `boneqct phantom femur`.")
    return make_spine_phantom(
        SpinePhantomParams(spine_tilt_deg=args.tilt_deg,
                           phantom_present=not args.no_calibration_phantom),
        ScannerParams(**_scanner_changes(args)), seed=args.seed)


def _make_femur(args):
    from boneqct.phantoms.femur import FEMUR_SCANNER, FemurPhantomParams, make_femur_phantom

    if args.tilt_deg or args.no_calibration_phantom:
        raise BoneQCTError("--tilt-deg and --no-calibration-phantom shape the spine phantom; "
                           "the femur phantom has no spine and no rods. Leave them out.")
    sides = ("left", "right") if args.side == "both" else (args.side,)
    return make_femur_phantom(FemurPhantomParams(sides=sides),
                              dataclasses.replace(FEMUR_SCANNER, **_scanner_changes(args)),
                              seed=args.seed)


def _cmd_demo(args) -> int:
    from boneqct.demo import run_demo

    run_demo(args.out)
    return 0

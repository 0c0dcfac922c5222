"""Foundation commands: info, calibrate, phantom, demo."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from boneqct.calibration.options import CalibrationOptions
from boneqct.cli.common import add_input, load_input, number_in
from boneqct.options import add_options, options_from_args
from boneqct.phantoms.scanner import KVP_CALIBRATION_PRESETS


def register(sub) -> None:
    """Add this module's subcommands to the ``boneqct`` parser."""
    info = sub.add_parser("info", help="describe a CT input: series, geometry, exam metadata")
    add_input(info)
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.add_argument("--anonymize", action="store_true", help="leave out patient identity")
    info.set_defaults(handler=_cmd_info)

    cal = sub.add_parser("calibrate", help="calibrate HU to mineral density with a phantom")
    add_input(cal)
    add_options(cal, CalibrationOptions, skip=("phantom", "per_slice"))
    cal.add_argument("--phantom", required=True, help=_help_of("phantom"))
    cal.add_argument("--per-slice", action="store_true", help=_help_of("per_slice"))
    cal.add_argument("--out", type=Path, help="write the calibration JSON here")
    cal.set_defaults(handler=_cmd_calibrate)
    ph = sub.add_parser("phantom", help="generate a digital phantom CT with its truth")
    ph.add_argument("kind", choices=["spine"], help="what the phantom holds")
    ph.add_argument("--out", type=Path, required=True, help="output folder")
    ph.add_argument("--format", default="dicom,nifti",
                    help="comma-separated: dicom, nifti (default both)")
    ph.add_argument("--seed", type=number_in(0, 999_999_999, integer=True), default=0,
                    help="random seed (deterministic output; 0-999999999)")
    ph.add_argument("--kvp", type=int, choices=sorted(KVP_CALIBRATION_PRESETS), default=120,
                    help="scanner preset: 80, 100, 120, 140")
    ph.add_argument("--noise-hu", type=number_in(0.0, 500.0, " HU"), default=None,
                    help="noise SD (0-500 HU)")
    ph.add_argument("--psf-fwhm-mm", type=number_in(0.0, 10.0, " mm"), default=None,
                    help="in-plane PSF FWHM (0-10 mm)")
    ph.add_argument("--tilt-deg", type=number_in(-45.0, 45.0, " degrees"), default=0.0,
                    help="spine tilt (lordosis), -45 to 45 degrees")
    ph.add_argument("--no-calibration-phantom", action="store_true",
                    help="leave the rod phantom out")
    ph.set_defaults(handler=_cmd_phantom)
    demo = sub.add_parser("demo", help="run the main job on the bundled digital phantom")
    demo.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder")
    demo.set_defaults(handler=_cmd_demo)


def _cmd_info(args) -> int:
    from boneqct.io import anonymized_metadata, find_series, is_volume_file
    from boneqct.io.dicom import hashed_uid

    first = args.input[0]
    series = []
    if len(args.input) > 1 or first.is_dir() or not is_volume_file(first):
        source = first if len(args.input) == 1 and first.is_dir() else list(args.input)
        series = [s.summary() for s in find_series(source)]
    volume = load_input(args)
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
    volume = load_input(args)
    calibration = calibrate(volume, options)
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

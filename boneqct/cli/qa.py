"""Quality assurance and precision commands: qa, qa-report, precision, repositioning."""

from __future__ import annotations

import json
from pathlib import Path

from boneqct.cli.common import (
    add_calibration_options,
    add_input,
    calibration_from_args,
    load_input,
)


def register(sub) -> None:
    """Add this module's subcommands to the ``boneqct`` parser."""
    prec = sub.add_parser("precision", help="RMS-SD, RMS-CV and LSC of a repeated-measures "
                          "table (columns subject, repeat, site, value)")
    prec.add_argument("table", type=Path, help="CSV with columns subject, repeat, site, value")
    prec.add_argument("--confidence", type=float, default=0.90,
                      help="two-sided confidence level of the upper limits (Glueer 1995: 0.90)")
    prec.add_argument("--unit", default="mg/cm3", help="unit of the values (for the output)")
    prec.add_argument("--out", type=Path, help="write precision.json and precision.csv here")
    prec.add_argument("--json", action="store_true", help="print JSON")
    prec.set_defaults(handler=_cmd_precision)

    rep = sub.add_parser("repositioning", help="software precision: re-run the spine ROI "
                         "placement from perturbed seeds on one scan")
    add_input(rep)
    add_calibration_options(rep)
    rep.add_argument("--seed", action="append", required=True, metavar="LEVEL=R,A,S",
                     help="a seed point inside a vertebral body, RAS mm (repeatable)")
    rep.add_argument("--runs", type=int, default=10, help="number of placements (default 10)")
    rep.add_argument("--perturbation-mm", type=float, default=3.0,
                     help="radius of the ball the seed offsets are drawn from (mm)")
    rep.add_argument("--random-seed", type=int, default=0, help="random seed of the offsets")
    rep.add_argument("--out", type=Path, help="write repositioning.json here")
    rep.set_defaults(handler=_cmd_repositioning)


def _print_sites(sites: list[dict], unit: str) -> None:
    for s in sites:
        print(f"{s['site']}: {s['n_subjects']} subjects, df {s['degrees_of_freedom']}, mean "
              f"{s['mean_value']:.2f} {unit}; RMS-SD {s['rms_sd']:.3f} {unit} (upper "
              f"{100 * s['confidence']:.0f}% limit {s['rms_sd_upper']:.3f}); RMS-CV "
              f"{s['rms_cv_percent']:.2f}% (upper {s['rms_cv_upper_percent']:.2f}%); "
              f"LSC 95% {s['lsc_95']:.2f} {unit} ({s['lsc_95_percent']:.2f}%)")


def _cmd_precision(args) -> int:
    from dataclasses import asdict

    from boneqct.precision import (
        precision_from_table,
        read_precision_table,
        write_precision_outputs,
    )

    results = precision_from_table(read_precision_table(args.table), args.confidence)
    sites = [asdict(r) for r in results]
    if args.out:
        write_precision_outputs(args.out, results, args.unit)
    if args.json:
        print(json.dumps({"unit": args.unit, "sites": sites}, indent=2))
        return 0
    _print_sites(sites, args.unit)
    print("Feed the LSC to a follow-up: boneqct compare OLD.json NEW.json --lsc VALUE")
    return 0


def _cmd_repositioning(args) -> int:
    from boneqct.io import write_json_atomic
    from boneqct.precision import repositioning_study
    from boneqct.spine.seeds import parse_seed_args

    volume = load_input(args)
    calibration = calibration_from_args(args, volume)
    study = repositioning_study(volume, calibration, parse_seed_args(args.seed),
                                n_runs=args.runs, perturbation_mm=args.perturbation_mm,
                                random_seed=args.random_seed)
    _print_sites(study["levels"], study["unit"])
    if args.out:
        print(f"written: {write_json_atomic(args.out, study)}")
    return 0

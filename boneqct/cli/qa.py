"""Quality assurance and precision commands: qa, qa-report, precision, repositioning."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from boneqct.cli import common
from boneqct.io.atomic import check_output_file, check_writable_parent
from boneqct.options import add_options, options_from_args
from boneqct.qa.options import QAOptions
from boneqct.resources import (
    check_repositioning,
    repositioning_estimate,
)


def register(sub) -> None:
    """Add this module's subcommands to the ``boneqct`` parser."""
    prec = common.add_command(sub, "precision", "RMS-SD, RMS-CV and LSC of a repeated-measures "
                       "table (columns subject, repeat, site, value)",
                       "boneqct precision repeats.csv --out precision-out")
    prec.add_argument("table", type=Path, help="CSV with columns subject, repeat, site, value")
    prec.add_argument("--confidence", type=common.number_in(0.5, 0.999), default=0.90,
                      help="two-sided confidence level of the upper limits (Glueer 1995: 0.90)")
    prec.add_argument("--unit", default="mg/cm3", help="unit of the values (for the output)")
    prec.add_argument("--out", type=Path, help="write precision.json and precision.csv here")
    prec.add_argument("--json", action="store_true", help="print JSON")
    prec.set_defaults(handler=_cmd_precision)

    rep = common.add_command(sub, "repositioning", "software precision: re-run the spine ROI "
                      "placement from perturbed seeds on one scan",
                      "boneqct repositioning ct_folder/ --phantom mindways-model3 "
                      "--seed L1=0,-25,29 --seed L2=0,-25,0 --runs 10 --out repositioning.json")
    common.add_input(rep)
    common.add_calibration_options(rep)
    rep.add_argument("--seed", action="append", required=True, metavar="LEVEL=R,A,S",
                     help="a seed point inside a vertebral body, RAS mm (repeatable; "
                          "negative numbers as typed: L1=-5,20,31)")
    rep.add_argument("--runs", type=common.number_in(2, 200, integer=True), default=10,
                     help="number of placements (2-200, default 10)")
    rep.add_argument("--perturbation-mm", type=common.number_in(0.0, 20.0, " mm"), default=3.0,
                     help="radius of the ball the seed offsets are drawn from (mm)")
    rep.add_argument("--random-seed", type=common.number_in(0, 2**32 - 1, integer=True), default=0, help="random seed of the offsets")
    rep.add_argument("--out", type=common.file_path("repositioning.json"), help="write repositioning.json here")
    common.add_max_memory_option(rep, _cmd_repositioning)

    qa = common.add_command(sub, "qa", "measure a QA spine phantom's inserts vs nominal and append "
                     "them to the scanner's QA log",
                     "boneqct qa esp_scan/ --phantom-type esp --hu --log-dir qa_logs")
    common.add_input(qa)
    common.add_calibration_options(qa)
    add_options(qa, QAOptions, skip=("baseline_sessions", "tolerance_percent"))
    qa.add_argument("--log-dir", type=Path, default=Path("qa_logs"),
                    help="folder of the per-scanner QA logs (default ./qa_logs)")
    qa.add_argument("--log", type=common.file_path("qa_log.csv"), help="append to this log file instead")
    common.add_max_memory_option(qa, _cmd_qa)

    report = common.add_command(sub, "qa-report", "control chart and drift check of a QA log (exit "
                         "status 1 when drift or an out-of-control session is flagged)",
                         "boneqct qa-report qa_logs/SCANNER.csv --out qa-report-out")
    report.add_argument("log", type=Path, help="QA log CSV written by `boneqct qa`")
    report.add_argument("--out", type=Path, help="output folder (default: beside the log)")
    add_options(report, QAOptions, skip=("phantom_type", "session"))
    report.add_argument("--json", action="store_true", help="print JSON")
    report.set_defaults(handler=_cmd_qa_report)


#: Estimated run time (s) of a repositioning study above which the estimate is printed first.
REPOSITIONING_NOTICE_S = 60.0


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

    if args.out:
        check_writable_parent(args.out / "precision.json")
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

    seeds = parse_seed_args(args.seed)
    if args.out:
        check_output_file(args.out, "--out", "repositioning.json")
    volume = common.load_input(args)
    estimate = repositioning_estimate(volume.array_kji.size, args.runs, len(seeds))
    check_repositioning(estimate)
    if estimate.time_s > REPOSITIONING_NOTICE_S:
        print(f"note: {args.runs} runs of {len(seeds)} level(s) take about "
              f"{estimate.time_s / 60:.1f} min on a 2-core reference machine", file=sys.stderr)
    calibration = common.calibration_from_args(args, volume)
    study = repositioning_study(volume, calibration, seeds,
                                n_runs=args.runs, perturbation_mm=args.perturbation_mm,
                                random_seed=args.random_seed)
    _print_sites(study["levels"], study["unit"])
    if args.out:
        print(f"written: {write_json_atomic(args.out, study)}")
    return 0


def _cmd_qa(args) -> int:
    from boneqct.qa import analyze_qa, log_path_for

    options = options_from_args(QAOptions, args)
    if args.log:
        check_output_file(args.log, "--log", "qa_log.csv")
    else:
        check_writable_parent(args.log_dir / "qa_log.csv", "--log-dir")
    volume = common.load_input(args)
    calibration = common.calibration_from_args(args, volume)
    result = analyze_qa(volume, calibration, options,
                        log_path=args.log or log_path_for(args.log_dir, volume.metadata))
    for row in result.rows:
        deviation = ("" if row["deviation_percent"] is None
                     else f" ({row['deviation_percent']:+.1f}% vs nominal {row['nominal_mg_cm3']:g})")
        print(f"{row['insert']}: {row['value']:.1f} {row['unit']}{deviation}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"session: {result.session} ({result.session_source})")
    print(f"QA log: {result.log_path}")
    return 0


def _cmd_qa_report(args) -> int:
    from dataclasses import asdict

    from boneqct.qa import control_chart, read_log, write_qa_report

    options = options_from_args(QAOptions, args)
    charts = control_chart(read_log(args.log), options.baseline_sessions,
                           options.tolerance_percent)
    paths = write_qa_report(args.out or args.log.parent, charts, args.log.name)
    if args.json:
        print(json.dumps([{**asdict(c), "drift": c.drift, "out_of_control": c.out_of_control,
                           "not_judged": c.not_judged}
                          for c in charts], indent=2))
    else:
        for c in charts:
            trend = ("" if c.trend_change_percent is None else
                     f", trend {c.trend_change_percent:+.2f}% (p = {c.trend_p_value:.2g})")
            print(f"{c.insert}: {'DRIFT' if c.drift else 'no drift'}{trend}; "
                  f"{len(c.shewhart_sessions)} session(s) beyond the control limits, "
                  f"{len(c.out_of_tolerance_sessions)} out of tolerance"
                  + (f" (not judged yet: {c.not_judged})" if c.not_judged else ""))
        print(f"chart: {paths['png']}\nreport: {paths['pdf']}")
    return 1 if any(c.drift or c.out_of_control for c in charts) else 0

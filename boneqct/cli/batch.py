"""Cohort command: batch (a manifest of cases on Dask distributed, or --scan to write one)."""

from __future__ import annotations

import importlib
import sys
from collections import Counter
from pathlib import Path

from boneqct.cli.common import add_command
from boneqct.errors import BoneQCTError
from boneqct.options import number_in
from boneqct.resources import DEFAULT_MAX_MEMORY_GB, MAX_MAX_MEMORY_GB, MIN_MAX_MEMORY_GB


def register(sub) -> None:
    """Add this module's subcommands to the ``boneqct`` parser."""
    from boneqct.batch.manifest import ANALYSES
    from boneqct.batch.run import DEFAULT_TIMEOUT_S
    from boneqct.batch.scan import DEFAULT_MIN_COVERAGE_MM

    batch = add_command(
        sub, "batch", "measure a cohort: the cases of a manifest CSV on Dask distributed (a "
        "local cluster of worker processes, or a running scheduler), each in its own output "
        "folder with a time and memory limit; or, with --scan FOLDER, write a manifest from a "
        "folder tree of CT studies (docs/batch.md)",
        "boneqct batch cohort.csv --out cohort_results --workers 4")
    batch.add_argument("manifest", nargs="?", type=Path,
                       help="manifest CSV: case_id, ct, analysis, then option columns")
    batch.add_argument("--out", type=Path, required=True,
                       help="batch output folder (new, empty, or an earlier batch with "
                            "--resume); with --scan, the manifest CSV to write")
    where = batch.add_mutually_exclusive_group()
    where.add_argument("--workers", type=number_in(1, 1024, integer=True),
                       help="worker processes of the local Dask cluster (default: the number "
                            "of CPUs)")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="address of a running Dask scheduler (tcp://host:8786)")
    batch.add_argument("--resume", action="store_true",
                       help="continue the batch in --out: skip cases finished with the same "
                            "settings and those that failed")
    batch.add_argument("--retry-failed", action="store_true",
                       help="with --resume, run the failed and timed-out cases again")
    batch.add_argument("--timeout-s", type=number_in(1, 7 * 24 * 3600, " s"),
                       default=DEFAULT_TIMEOUT_S,
                       help=f"time limit of one case, s (default {DEFAULT_TIMEOUT_S:g})")
    batch.add_argument("--memory-limit-gb", type=number_in(MIN_MAX_MEMORY_GB, MAX_MAX_MEMORY_GB,
                                                           " GB"),
                       default=DEFAULT_MAX_MEMORY_GB,
                       help=f"memory (address space) limit of one case, GB (default "
                            f"{DEFAULT_MAX_MEMORY_GB:g})")
    batch.add_argument("--threads-per-case", type=number_in(1, 1024, integer=True),
                       help="threads of each numerical library in a case (default: on the "
                            "local cluster the CPUs divided by the workers, else 1); hip "
                            "results change in their last digits with it")
    batch.add_argument("--scan", type=Path, metavar="FOLDER",
                       help="write a manifest (--out manifest.csv) from a folder tree of CT "
                            "studies instead of running one")
    batch.add_argument("--analysis", choices=ANALYSES, default="spine",
                       help="with --scan: the analysis of the cases written (default spine)")
    batch.add_argument("--min-coverage-mm", type=number_in(0, 2000, " mm"),
                       default=DEFAULT_MIN_COVERAGE_MM,
                       help="with --scan: the coverage a series needs, mm (default "
                            f"{DEFAULT_MIN_COVERAGE_MM:g})")
    batch.set_defaults(handler=_cmd_batch)


#: Packages a batch runs on: the ``batch`` extra of pyproject.toml, left out of a plain install.
BATCH_EXTRA_MODULES = ("dask", "distributed", "pyarrow")


def _check_batch_extra() -> None:
    """Refuse a batch run (not --scan) when the ``batch`` extra is not installed."""
    missing = []
    for name in BATCH_EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise BoneQCTError(f"boneqct batch needs {', '.join(missing)}, which a plain install "
                           "leaves out: pip install 'boneqct[batch]' (from a clone: pip install "
                           "-e '.[batch]').")


def _cmd_batch(args) -> int:
    if args.scan is not None:
        return _scan(args)
    if args.manifest is None:
        raise BoneQCTError("Give the manifest CSV to run (boneqct batch MANIFEST.csv --out DIR), "
                           "or --scan FOLDER to write one.")
    _check_batch_extra()
    from boneqct.batch import run

    batch = run(args.manifest, args.out, client=args.scheduler, workers=args.workers,
                resume=args.resume, retry_failed=args.retry_failed, timeout_s=args.timeout_s,
                memory_limit_gb=args.memory_limit_gb, threads_per_case=args.threads_per_case)
    counts = Counter(row["status"] for row in batch.rows)
    print(f"{len(batch.rows)} cases: {counts['ok']} ok, {counts['failed']} failed, "
          f"{counts['timeout']} timed out ({len(batch.ran)} run now, {len(batch.skipped)} "
          "from earlier runs)")
    for row in batch.rows:
        if row["status"] != "ok":
            print(f"{row['case_id']}: {row['status']}: {row['message']}", file=sys.stderr)
    print(f"summary: {batch.paths['csv']}")
    print(f"report: {batch.paths['report_pdf']}")
    return 0


def _scan(args) -> int:
    from boneqct.batch.scan import scan_to_manifest

    if args.manifest is not None:
        raise BoneQCTError("--scan writes a manifest; give no manifest to run with it.")
    written = scan_to_manifest(args.scan, args.out, args.analysis, args.min_coverage_mm)
    print(f"{written['cases']} of {written['studies']} studies have a series for a case")
    print(f"manifest: {written['manifest']}")
    print(f"candidates: {written['candidates']}")
    if written["cases"] < written["studies"]:
        print("warning: some studies have no eligible series; see the candidates' reasons.",
              file=sys.stderr)
    return 0

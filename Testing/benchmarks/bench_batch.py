"""Benchmark: throughput of ``boneqct batch`` - 8 spine phantom cases on a local Dask cluster of
2 worker processes against 1; goal: 2 workers at least 1.7 times as fast.

Two sizes of case (``--size``): ``clinical`` (default), a CT as a clinic writes it for spine
QCT (512 x 512 pixels of 0.7 mm, 112 slices of 1.25 mm, four levels L1-L4 measured); and
``small``, the test suite's cropped phantom (300 x 230 pixels of 1 mm, 56 slices of 1.6 mm,
L1-L3), whose cases take a few seconds, so the batch's fixed costs weigh more.

Each case is the full single-case command (CT read, phantom calibration, three levels, every
output) in a process of its own, forked by its worker's case server; the wall time of each
batch includes starting the cluster (and the case servers' imports) and writing the summary
and cohort report. The runs alternate (1, 2, 1, 2, ...) so that a change of the machine's load
touches both; each pair gives a ratio of the batch's wall times, and one of the cases phase
without the case servers' start (the speed-up of a long cohort, once the fixed costs no longer
count). For each run it reports the phases (cluster start,
cases, cluster close, summary), how the cases were spread over the workers (and how long one
worker sat idle at the end while the other finished), the case servers' start (their
imports), the median wall and CPU time of a case, and the machine's load: the 1-minute load average before and after, and
the cores the whole machine kept busy during the run (from /proc/stat; this benchmark's own
processes included - on a 2-core machine anything above about 1 with 1 worker, or 2 with 2
workers, is other work, which lowers the ratio).
Run: ``python Testing/benchmarks/bench_batch.py [--repeats 3] [--size clinical|small]``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import statistics
import tempfile
import time
from pathlib import Path

from boneqct.batch import read_run_log, run
from boneqct.phantoms import ScannerParams, SpinePhantomParams, make_spine_phantom, write_phantom

N_CASES = 8
GOAL_RATIO = 1.7
#: The phantom of each case size: its scanner and its vertebrae.
SIZES = {
    "clinical": (ScannerParams(pixel_mm=0.7, matrix=(512, 512), n_slices=112,
                               slice_spacing_mm=1.25, slice_thickness_mm=1.25, noise_sd_hu=15.0),
                 SpinePhantomParams(levels=("L1", "L2", "L3", "L4"),
                                    trabecular_bmd_mg_cm3=(80.0, 110.0, 140.0, 120.0),
                                    cortical_thickness_mm=(1.0, 1.5, 2.0, 1.5))),
    "small": (ScannerParams(pixel_mm=1.0, matrix=(300, 230), n_slices=56, slice_spacing_mm=1.6,
                            slice_thickness_mm=1.6, noise_sd_hu=10.0),
              SpinePhantomParams(trabecular_bmd_mg_cm3=(80.0, 110.0, 140.0))),
}


def write_cohort(folder: Path, size: str) -> Path:
    """A phantom CT of the ``size`` and a manifest of N_CASES spine cases on it."""
    scanner, anatomy = SIZES[size]
    phantom = make_spine_phantom(anatomy, scanner, seed=5)
    write_phantom(phantom, folder / "spine", formats=("nifti",))
    seeds = ";".join(f"{v['level']}={','.join(f'{x:g}' for x in v['body_center_ras_mm'])}"
                     for v in phantom.truth["vertebrae"])
    manifest = folder / "bench.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "ct", "phantom", "seed"])
        for i in range(N_CASES):
            writer.writerow([f"case{i:02d}", "spine/phantom_ct.nii.gz", "mindways-model3", seeds])
    return manifest


def busy_jiffies() -> tuple[int, int]:
    """Busy and total CPU time of the whole machine so far (/proc/stat, clock ticks)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


def timed_run(manifest: Path, out: Path, workers: int, threads: int | None) -> dict:
    """One batch of the manifest with ``workers`` workers (``threads`` per case, None: the
    batch's default), and what it took."""
    load_before, (busy_before, total_before) = os.getloadavg()[0], busy_jiffies()
    start = time.perf_counter()
    batch = run(manifest, out, workers=workers, timeout_s=600, progress=False,
                threads_per_case=threads)
    wall_s = time.perf_counter() - start
    busy_after, total_after = busy_jiffies()
    failed = [f"{r['case_id']}: {r['status']}: {r['message']}" for r in batch.rows
              if r["status"] != "ok"]
    if failed:
        raise SystemExit(f"cases did not finish: {failed}")
    records = read_run_log(out).values()
    servers = [r["server_start_s"] for r in records if r["server_start_s"]]
    last_end = {}
    for r in records:
        end = datetime.datetime.fromisoformat(r["end_utc"])
        last_end[r["worker"]] = max(end, last_end.get(r["worker"], end))
    return {"cases_per_worker": sorted(sum(r["worker"] == w for r in records) for w in last_end),
            "idle_tail_s": (max(last_end.values()) - min(last_end.values())).total_seconds(),
            "workers": workers, "wall_s": wall_s, **batch.phases_s,
            "threads": batch.threads_per_case,
            "server_start_s": max(servers),
            "case_wall_s": statistics.median(r["elapsed_s"] for r in records),
            "case_cpu_s": statistics.median(r["cpu_s"] for r in records),
            "load_before": load_before, "load_after": os.getloadavg()[0],
            "busy_cores": os.cpu_count() * (busy_after - busy_before) / (total_after - total_before)}


def describe(r: dict) -> str:
    return (f"{r['workers']} worker{'s' if r['workers'] > 1 else ' '} ({r['threads']} thread/case): "
            f"{r['wall_s']:5.1f} s = cluster start {r['cluster_start_s']:.1f} + cases "
            f"{r['cases_s']:.1f} + close {r['cluster_close_s']:.1f} + summary "
            f"{r['summary_s']:.1f}; cases per worker {r['cases_per_worker']}, a worker "
            f"idle at the end {r['idle_tail_s']:.1f} s; case server start (imports) {r['server_start_s']:.1f} s; "
            f"case median {r['case_wall_s']:.1f} s wall, {r['case_cpu_s']:.1f} s CPU; load "
            f"{r['load_before']:.1f} -> {r['load_after']:.1f}, machine busy "
            f"{r['busy_cores']:.2f} cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs (default 3)")
    parser.add_argument("--size", choices=SIZES, default="clinical",
                        help="the cases' CT (default clinical)")
    parser.add_argument("--threads-per-case", type=int,
                        help="threads per case in both runs (default: the batch's, the CPUs "
                             "divided by the workers: 2 with 1 worker, 1 with 2)")
    args = parser.parse_args()
    ratios, steady = [], []
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_cohort(Path(tmp), args.size)
        for i in range(args.repeats):
            one = timed_run(manifest, Path(tmp) / f"one{i}", 1, args.threads_per_case)
            print(describe(one), flush=True)
            two = timed_run(manifest, Path(tmp) / f"two{i}", 2, args.threads_per_case)
            print(describe(two), flush=True)
            ratios.append(one["wall_s"] / two["wall_s"])
            steady.append((one["cases_s"] - one["server_start_s"])
                          / (two["cases_s"] - two["server_start_s"]))
            print(f"  pair {i + 1}: ratio {ratios[-1]:.2f} (cases phase without the case "
                  f"servers' start: {steady[-1]:.2f})", flush=True)
    ratio = statistics.median(ratios)
    print(f"{N_CASES} {args.size} spine cases on {os.cpu_count()} CPUs: ratio 1 worker / 2 workers "
          f"{', '.join(f'{r:.2f}' for r in ratios)}; median {ratio:.2f} (goal >= {GOAL_RATIO}: "
          f"{'met' if ratio >= GOAL_RATIO else 'not met'}); the cases alone, without the fixed "
          f"costs (cluster, case servers' imports, summary): {', '.join(f'{r:.2f}' for r in steady)}")


if __name__ == "__main__":
    main()

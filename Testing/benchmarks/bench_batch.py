"""Benchmark: throughput of ``boneqct batch`` - 8 spine phantom cases on a local Dask cluster of
2 worker processes against 1; goal: 2 workers at least 1.7 times as fast.

Each case is the full single-case command (process start, CT read, phantom calibration, three
levels, every output); the wall time of each run includes starting the cluster. Reports both
times, the ratio and the machine's CPU count and load average (other work on the machine
lowers the ratio).
Run: ``python Testing/benchmarks/bench_batch.py``.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

from boneqct.batch import run
from boneqct.phantoms import ScannerParams, SpinePhantomParams, make_spine_phantom, write_phantom

N_CASES = 8
GOAL_RATIO = 1.7
SCANNER = ScannerParams(pixel_mm=1.0, matrix=(300, 230), n_slices=56, slice_spacing_mm=1.6,
                        slice_thickness_mm=1.6, noise_sd_hu=10.0)


def write_cohort(folder: Path) -> Path:
    """A phantom CT and a manifest of N_CASES spine cases on it."""
    phantom = make_spine_phantom(SpinePhantomParams(trabecular_bmd_mg_cm3=(80.0, 110.0, 140.0)),
                                 SCANNER, seed=5)
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


def timed_run(manifest: Path, out: Path, workers: int) -> float:
    start = time.perf_counter()
    batch = run(manifest, out, workers=workers, timeout_s=600, progress=False)
    elapsed = time.perf_counter() - start
    failed = [f"{r['case_id']}: {r['status']}: {r['message']}" for r in batch.rows
              if r["status"] != "ok"]
    if failed:
        raise SystemExit(f"cases did not finish: {failed}")
    return elapsed


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_cohort(Path(tmp))
        load_before = os.getloadavg()
        one = timed_run(manifest, Path(tmp) / "one", 1)
        two = timed_run(manifest, Path(tmp) / "two", 2)
        load_after = os.getloadavg()
    ratio = one / two
    print(f"{N_CASES} spine cases: 1 worker {one:.1f} s, 2 workers {two:.1f} s, "
          f"ratio {ratio:.2f} (goal >= {GOAL_RATIO}: {'met' if ratio >= GOAL_RATIO else 'not met'})")
    print(f"machine: {os.cpu_count()} CPUs, load average (1 min) {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after")


if __name__ == "__main__":
    main()

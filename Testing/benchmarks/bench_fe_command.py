"""Benchmark of the whole ``boneqct fe`` command on the digital phantom's vertebra at 1 mm.

The same CT file, seed, calibration and element size are run once per strength criterion
(linear 0.68% rule, Pistoia, nonlinear elastic-plastic to 2% apparent strain); the wall time of
each whole command (process start to outputs written) and the in-process linear solve time are
printed as JSON, with the ratio nonlinear / linear (goal: at most 3) and the linear solve time
(goal: under 1 s). The CLI default criterion in ``boneqct.fe.options`` was chosen from this
measurement. On a shared machine the wall times follow the load: the child processes' CPU time
(user + system) and the 1-minute load average at the start and end of each command are printed
beside them, and the ratio is given for both.

Run: ``python Testing/benchmarks/bench_fe_command.py [--level L2] [--element-mm 1]
[--repeats 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from boneqct.io import write_volume
from boneqct.phantoms import make_spine_phantom

CRITERIA = ("linear", "pistoia", "nonlinear")


def _command(path: Path, truth: dict, level: str, out: Path, element_mm: float,
             criterion: str) -> list[str]:
    v = next(v for v in truth["vertebrae"] if v["level"] == level)
    seed = ",".join(f"{x:.2f}" for x in v["body_center_ras_mm"])
    cal = truth["calibration"]
    return [sys.executable, "-m", "boneqct.cli", "fe", str(path), "--level", level,
            f"--seed={level}={seed}", "--out", str(out), "--slope",
            str(cal["slope_hu_per_mg_cm3"]), "--intercept", str(cal["intercept_hu"]),
            "--material", "K2HPO4", "--criterion", criterion, "--element-mm", str(element_mm),
            "--sex", "F"]


def _children_cpu_s() -> float:
    """User + system CPU time (s) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", default="L2")
    parser.add_argument("--element-mm", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--criteria", default=",".join(CRITERIA),
                        help="comma-separated criteria to time (linear and nonlinear needed "
                             "for the ratio)")
    args = parser.parse_args()
    phantom = make_spine_phantom()
    results: dict = {"level": args.level, "element_mm": args.element_mm}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ct.nii.gz"
        write_volume(phantom.volume, path)
        for criterion in args.criteria.split(","):
            walls, cpus, loads = [], [], []
            for repeat in range(args.repeats):
                out = Path(tmp) / f"{criterion}{repeat}"
                load_start = os.getloadavg()[0]
                cpu_start = _children_cpu_s()
                t0 = time.perf_counter()
                done = subprocess.run(_command(path, phantom.truth, args.level, out,
                                               args.element_mm, criterion),
                                      capture_output=True, text=True)
                walls.append(time.perf_counter() - t0)
                cpus.append(_children_cpu_s() - cpu_start)
                loads.append((load_start, os.getloadavg()[0]))
                if done.returncode != 0:
                    raise SystemExit(done.stderr)
            doc = json.loads((out / "fe.json").read_text())
            results[criterion] = {
                "command_s": min(walls), "command_cpu_s": min(cpus),
                "load_average_1min": loads[int(np.argmin(walls))],
                "strength_n": doc["strength_n"],
                "n_elements": doc["n_elements"], "solver": doc["solver"],
                "fragile": doc["fragile"]}
    results["ratio_nonlinear_to_linear"] = (results["nonlinear"]["command_s"]
                                            / results["linear"]["command_s"])
    results["cpu_ratio_nonlinear_to_linear"] = (results["nonlinear"]["command_cpu_s"]
                                                / results["linear"]["command_cpu_s"])
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

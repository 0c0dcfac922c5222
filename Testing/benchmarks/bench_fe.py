"""Benchmark of the vertebral finite-element solver.

1. A 1 mm vertebral body of the digital phantom (about 40k elements): model build (mesh,
   materials, assembly pattern) + linear solve, goal under 1 s; elastic-plastic to 2% apparent
   strain (boneqct.fe.plasticity), goal within 3x the linear time (issue 13; the whole command
   is timed by bench_fe_command.py).
2. A 60^3-element cube (681k DOF) with heterogeneous modulus and PMMA layers: our build +
   solve beside CalculiX (``ccx``, same mesh, materials and loads) and parosol-py (GPL: run
   only as an external process from its own venv under build/, created here when possible;
   never imported by boneqct), as time ratios in one run.

Ours: "gmg" (matrix-free geometric multigrid, the default), "jacobi" (matrix-free) and "amg"
(assembled matrix, pyamg); all at the same relative residual ``--rtol`` as parosol-py.

Run: ``python Testing/benchmarks/bench_fe.py [--skip-cube] [--ccx-solver SPOOLES]
[--preconditioners gmg,jacobi,amg]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from boneqct.calibration import convert_volume_to_bmd, manual_calibration
from boneqct.fe.analysis import build_model, nonlinear_curve, solve_displacement
from boneqct.fe.calculix import ccx_executable, run_ccx
from boneqct.fe.mesh import BONE, PMMA, VoxelMesh, mesh_vertebral_body
from boneqct.phantoms import SpinePhantomParams, make_spine_phantom
from boneqct.spine.body import delineate_body_from_seed

PAROSOL_VENV = Path("build/parosol-venv")
PAROSOL_PIN = "parosol-py==0.1.26"
#: Driver run inside the parosol venv: reads the modulus array, solves, prints JSON.
PAROSOL_DRIVER = """
import json, sys, time
import numpy as np
from parosol_py import solve
moduli = np.load(sys.argv[1])
t0 = time.perf_counter()
result = solve(material=moduli, spacing=(1.0, 1.0, 1.0), array_order="zyx", material_unit="MPa",
               poisson_ratio=0.3, strain=-0.01, tolerance=float(sys.argv[2]),
               mpi_processes=int(sys.argv[3]), work_dir=sys.argv[4])
print(json.dumps({"seconds": time.perf_counter() - t0,
                  "diagnostics": {k: v for k, v in result.diagnostics.items()
                                  if isinstance(v, (int, float, str))}}))
"""


def vertebra_benchmark(preconditioners=("gmg", "jacobi", "amg"),
                       nonlinear=("gmg", "jacobi"), repeats: int = 3) -> dict:
    """Time a ~40k-element vertebral body at 1 mm (L2 of a large phantom body, 100 mg/cm3): the
    linear build + solve ``repeats`` times (the fastest solve kept, with its CPU time and the
    1-minute load average: the machine may be shared), the nonlinear curve once."""
    params = SpinePhantomParams(body_width_mm=46.0, body_depth_mm=36.0, body_height_mm=27.0,
                                cortical_thickness_mm=1.5)
    phantom = make_spine_phantom(params)
    cal = phantom.truth["calibration"]
    bmd = convert_volume_to_bmd(phantom.volume, manual_calibration(cal["slope_hu_per_mg_cm3"],
                                                                   cal["intercept_hu"]))
    v = phantom.truth["vertebrae"][1]
    body = delineate_body_from_seed(phantom.volume, np.array(v["body_center_ras_mm"]), v["level"])
    out = {}
    for preconditioner in preconditioners:
        runs = []
        for _ in range(repeats):
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            mesh = mesh_vertebral_body(bmd, body.body_mask_kji, body.axis_ras, body.anterior_ras)
            model = build_model(mesh)
            t1, c1 = time.perf_counter(), time.process_time()
            solution = solve_displacement(model, model.modulus_mpa,
                                          0.0068 * mesh.bone_height_mm,
                                          preconditioner=preconditioner)
            t2, c2 = time.perf_counter(), time.process_time()
            runs.append({"build_s": t1 - t0, "solve_s": t2 - t1, "solve_cpu_s": c2 - c1,
                         "total_s": t2 - t0, "load_average_1min": load})
        report = solution.reports[0]
        best = min(runs, key=lambda run: run["solve_s"])
        out[f"linear_{preconditioner}"] = {
            "n_elements": mesh.n_elements, "n_dof": model.n_dof, **best,
            "min_solve_cpu_s": min(run["solve_cpu_s"] for run in runs),
            "iterations": report.iterations, "converged": report.converged,
            "strength_n": solution.reaction_n}
    for preconditioner in nonlinear:
        load = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        curve, _, converged = nonlinear_curve(model, preconditioner=preconditioner)
        out[f"nonlinear_{preconditioner}"] = {
            "total_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "load_average_1min": load, "converged": converged,
            "strength_n": curve[-1]["force_n"], "solves": sum(p["iterations"] for p in curve)}
    return out


def cube_model(n: int = 60, pmma_layers: int = 3, seed: int = 0):
    """A cube of n^3 elements: smooth random density 50-400 mg/cm3 (64 levels) between PMMA
    layers at the top and bottom."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal((n, n, n)), 3.0)
    field = (field - field.min()) / (field.max() - field.min())
    bmd = 50.0 + 350.0 * np.round(field * 63.0) / 63.0
    material = np.full((n, n, n), BONE, np.uint8)
    material[:pmma_layers] = material[-pmma_layers:] = PMMA
    bmd[material == PMMA] = np.nan
    mesh = VoxelMesh(1.0, material, bmd, "K2HPO4", np.eye(4), float(n - 2 * pmma_layers),
                     np.ones(material.shape))
    return mesh


def ensure_parosol() -> Path | None:
    """The parosol venv's python (created under build/ on first use), or None."""
    python = PAROSOL_VENV / "bin" / "python"
    if not python.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(PAROSOL_VENV)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", PAROSOL_PIN], check=True,
                           timeout=900)
        except (subprocess.SubprocessError, OSError) as exc:
            print(f"parosol-py could not be installed ({exc}); skipped")
            return None
    return python


def cube_benchmark(ccx_solver: str, rtol: float, mpi_processes: int,
                   preconditioners=("gmg", "jacobi", "amg")) -> dict:
    out = {}
    t0 = time.perf_counter()
    mesh = cube_model()
    model = build_model(mesh)
    t_build = time.perf_counter() - t0
    applied = 0.01 * mesh.material_kji.shape[0]
    for preconditioner in preconditioners:
        t1 = time.perf_counter()
        solution = solve_displacement(model, model.modulus_mpa, applied,
                                      preconditioner=preconditioner, rtol=rtol)
        out[f"ours_{preconditioner}"] = {
            "build_s": t_build, "solve_s": time.perf_counter() - t1,
            "total_s": t_build + time.perf_counter() - t1, "n_dof": model.n_dof,
            "iterations": solution.reports[0].iterations,
            "setup_s": solution.reports[0].setup_s, "reaction_n": solution.reaction_n}
    best = min(v["total_s"] for v in out.values())
    with tempfile.TemporaryDirectory() as tmp:
        if ccx_executable():
            t1 = time.perf_counter()
            reaction = run_ccx(model, Path(tmp) / "ccx", applied, solver=ccx_solver,
                               timeout_s=3600)
            out["calculix"] = {"solver": ccx_solver, "total_s": time.perf_counter() - t1,
                               "reaction_n": reaction}
        python = ensure_parosol()
        if python is not None:
            moduli = np.where(mesh.material_kji == PMMA, 2500.0, np.nan)
            moduli[mesh.material_kji == BONE] = model.modulus_mpa[model.is_bone]
            np.save(Path(tmp) / "moduli.npy", moduli)
            (Path(tmp) / "driver.py").write_text(PAROSOL_DRIVER)
            t1 = time.perf_counter()
            done = subprocess.run([str(python), str(Path(tmp) / "driver.py"),
                                   str(Path(tmp) / "moduli.npy"), str(rtol), str(mpi_processes),
                                   str(Path(tmp) / "parosol")], capture_output=True, text=True)
            wall = time.perf_counter() - t1
            if done.returncode == 0:
                out["parosol"] = {"total_s": wall, **json.loads(done.stdout.strip().splitlines()[-1])}
            else:
                out["parosol"] = {"error": done.stderr[-800:]}
    for name in ("calculix", "parosol"):
        if "total_s" in out.get(name, {}):
            out[f"ratio_ours_to_{name}"] = best / out[name]["total_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-cube", action="store_true")
    parser.add_argument("--ccx-solver", default="ITERATIVE CHOLESKY",
                        choices=["SPOOLES", "ITERATIVE CHOLESKY", "ITERATIVE SCALING"])
    parser.add_argument("--rtol", type=float, default=1e-6)
    parser.add_argument("--mpi", type=int, default=2, help="MPI ranks for parosol")
    parser.add_argument("--repeats", type=int, default=3, help="linear vertebra solves timed")
    parser.add_argument("--preconditioners", default="gmg,jacobi,amg",
                        help="comma-separated: our preconditioners to time (gmg, jacobi, amg)")
    args = parser.parse_args()
    chosen = tuple(args.preconditioners.split(","))
    results = {"vertebra": vertebra_benchmark(chosen, tuple(p for p in chosen if p != "amg"),
                                              args.repeats)}
    print(json.dumps(results, indent=2), flush=True)
    if not args.skip_cube:
        results["cube"] = cube_benchmark(args.ccx_solver, args.rtol, args.mpi, chosen)
        print(json.dumps(results["cube"], indent=2))


if __name__ == "__main__":
    main()

"""Benchmark of the femur sideways-fall finite elements on the digital femur phantom.

For each element size: the hip extraction, the mesh (with PMMA cap and pad), the linear solve
with each preconditioner asked for, the Pistoia strength, and the change of strength and
stiffness from the next coarser size (the element-size convergence figure of issue 13).

Run: ``python Testing/benchmarks/bench_fe_femur.py [--element-mm 2,1.5,1] [--preconditioners
amg,gmg]``. Set OMP_NUM_THREADS=1 on a shared machine: pyamg's setup was 3-6x slower with
its threads competing for two loaded cores.
"""

from __future__ import annotations

import argparse
import json
import time

from boneqct.calibration import manual_calibration
from boneqct.fe.analysis import pistoia_strength_n, solve_displacement
from boneqct.fe.femur import APPLIED_MM, fall_model, mesh_femur
from boneqct.fe.options import FEOptions
from boneqct.hip.pipeline import extract_femur
from boneqct.phantoms.femur import make_femur_phantom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--element-mm", default="2,1.5,1")
    parser.add_argument("--preconditioners", default="amg,gmg")
    parser.add_argument("--shaft-cut-below-head-mm", type=float, default=100.0)
    args = parser.parse_args()
    phantom = make_femur_phantom()
    line = phantom.truth["calibration"]
    calibration = manual_calibration(line["slope_hu_per_mg_cm3"], line["intercept_hu"])
    t0 = time.perf_counter()
    mask, frame, volume_bmd = extract_femur(phantom.volume, calibration, "left")
    print(f"hip extraction {time.perf_counter() - t0:.1f} s")
    law = FEOptions().law
    rows, previous = [], None
    for h in (float(v) for v in args.element_mm.split(",")):
        t0 = time.perf_counter()
        mesh = mesh_femur(volume_bmd, mask, frame, "left", density_material="K2HPO4",
                          element_mm=h, shaft_cut_below_head_mm=args.shaft_cut_below_head_mm,
                          pmma_mm=3.0)
        model, _ = fall_model(mesh, frame, law)
        row = {"element_mm": h, "n_elements": mesh.n_elements, "n_dof": model.n_dof,
               "lattice_cells": int(mesh.material_kji.size),
               "mesh_s": round(time.perf_counter() - t0, 2), "law": law}
        for name in args.preconditioners.split(","):
            t0 = time.perf_counter()
            solution = solve_displacement(model, model.modulus_mpa, APPLIED_MM,
                                          preconditioner=name)
            report = solution.reports[0]
            row[name] = {"solve_s": round(time.perf_counter() - t0, 2),
                         "iterations": report.iterations, "converged": report.converged,
                         "stiffness_n_mm": solution.reaction_n / APPLIED_MM}
        row["strength_n"] = pistoia_strength_n(model, solution)
        row["stiffness_n_mm"] = solution.reaction_n / APPLIED_MM
        if previous:
            for key in ("strength_n", "stiffness_n_mm"):
                row[f"change_{key}_percent_from_{previous['element_mm']:g}_mm"] = round(
                    100.0 * (row[key] / previous[key] - 1.0), 2)
        print(json.dumps(row), flush=True)
        rows.append(row)
        previous = row


if __name__ == "__main__":
    main()

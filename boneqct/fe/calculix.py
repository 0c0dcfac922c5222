"""Export a model to CalculiX (``ccx``) and read its reaction force back: an independent solver
on the identical mesh, materials and boundary conditions, for verification and benchmarks.

CalculiX's C3D8 is the same fully integrated trilinear hexahedron with the same node order as
VTK_HEXAHEDRON. Elements of equal modulus share one material.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from boneqct.errors import FEError
from boneqct.fe.analysis import Model
from boneqct.fe.materials import POISSON_RATIO


def ccx_executable() -> str | None:
    """Path of the CalculiX solver, or None when it is not installed."""
    return shutil.which("ccx")


def write_inp(model: Model, path: str | Path, applied_mm: float, solver: str = "SPOOLES") -> Path:
    """Write the model as a CalculiX input deck (axis-frame coordinates, mm, N, MPa) with the
    top platen displaced ``applied_mm`` down the axis; ``solver`` is CalculiX's *STATIC solver
    (SPOOLES direct, or ITERATIVE CHOLESKY); returns the path."""
    path = Path(path)
    h = model.mesh.element_mm
    node_xyz = model.assembler.node_kji()[:, ::-1] * h
    nodes = model.assembler.element_nodes + 1
    fixed = model.fixed.reshape(-1, 3)
    top = set((model.top_z_dofs // 3).tolist())
    lines = ["*HEADING", "BoneQCT voxel model", "*NODE"]
    lines += [f"{n + 1},{x:.6f},{y:.6f},{z:.6f}" for n, (x, y, z) in enumerate(node_xyz)]
    lines.append("*ELEMENT,TYPE=C3D8,ELSET=EALL")
    lines += [f"{e + 1}," + ",".join(map(str, row)) for e, row in enumerate(nodes)]
    moduli, material_of_element = np.unique(model.modulus_mpa, return_inverse=True)
    order = np.argsort(material_of_element, kind="stable")
    starts = np.searchsorted(material_of_element[order], np.arange(len(moduli) + 1))
    for m, modulus in enumerate(moduli):
        members = order[starts[m]:starts[m + 1]] + 1
        lines.append(f"*ELSET,ELSET=E{m + 1}")
        lines += [",".join(map(str, members[i:i + 16])) for i in range(0, len(members), 16)]
        lines += [f"*MATERIAL,NAME=M{m + 1}", "*ELASTIC", f"{modulus:.17g},{POISSON_RATIO}",
                  f"*SOLID SECTION,ELSET=E{m + 1},MATERIAL=M{m + 1}"]
    lines.append("*NSET,NSET=TOP")
    lines += [str(n + 1) for n in sorted(top)]
    lines += ["*STEP", f"*STATIC,SOLVER={solver}", "*BOUNDARY"]
    for n, dofs in enumerate(fixed):
        for d in np.flatnonzero(dofs):
            value = -applied_mm if (d == 2 and n in top) else 0.0
            lines.append(f"{n + 1},{d + 1},{d + 1},{value:.9g}")
    lines += ["*NODE PRINT,NSET=TOP,TOTALS=ONLY", "RF", "*END STEP"]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_ccx(model: Model, work_dir: str | Path, applied_mm: float, solver: str = "SPOOLES",
            timeout_s: float = 600.0) -> float:
    """Solve the model with CalculiX; returns the compressive reaction on the top platen (N)."""
    exe = ccx_executable()
    if exe is None:
        raise FEError("CalculiX (ccx) is not installed; install the Debian package calculix-ccx.")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    write_inp(model, work_dir / "model.inp", applied_mm, solver)
    done = subprocess.run([exe, "-i", "model"], cwd=work_dir, capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    dat = work_dir / "model.dat"
    if done.returncode != 0 or not dat.exists():
        raise FEError(f"CalculiX failed (exit {done.returncode}): {done.stdout[-500:]}")
    return -read_total_force(dat.read_text())[2]


def read_total_force(dat_text: str) -> np.ndarray:
    """The (fx, fy, fz) totals of the last ``*NODE PRINT ... TOTALS=ONLY`` block of a .dat file."""
    blocks = re.findall(r"total force \(fx,fy,fz\).*?\n\s*\n\s*(\S+)\s+(\S+)\s+(\S+)", dat_text)
    if not blocks:
        raise FEError("No reaction force in the CalculiX output.")
    return np.array([float(v) for v in blocks[-1]])

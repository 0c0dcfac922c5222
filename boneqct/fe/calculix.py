"""Run CalculiX (``ccx``) on a model and read its reaction force back: an independent solver
on the identical mesh, materials and boundary conditions, for verification and benchmarks.

The deck is the user-facing export (``boneqct.fe.export.write_inp``): CalculiX's C3D8 is the
same fully integrated trilinear hexahedron with the same node order as VTK_HEXAHEDRON.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from boneqct.errors import FEError
from boneqct.fe.analysis import Model
from boneqct.fe.export import write_inp


def ccx_executable() -> str | None:
    """Path of the CalculiX solver, or None when it is not installed."""
    return shutil.which("ccx")


def _require_ccx() -> str:
    """The CalculiX executable; FEError when it is not installed."""
    exe = ccx_executable()
    if exe is None:
        raise FEError("CalculiX (ccx) is not installed; install the Debian package calculix-ccx.")
    return exe


def run_ccx(model: Model, work_dir: str | Path, applied_mm: float, solver: str = "SPOOLES",
            timeout_s: float = 600.0, modulus_mpa: np.ndarray | None = None) -> float:
    """Solve the model with CalculiX (element moduli ``modulus_mpa``, default the model's);
    returns the compressive reaction on the loaded nodes (N)."""
    _require_ccx()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    write_inp(model, work_dir / "model.inp", applied_mm, solver, modulus_mpa)
    return run_ccx_deck(work_dir / "model.inp", timeout_s)


def run_ccx_deck(inp_path: str | Path, timeout_s: float = 600.0) -> float:
    """Run CalculiX on an exported deck (``write_inp``) in its folder; returns the compressive
    reaction on the ``LOAD`` node set (N)."""
    inp_path = Path(inp_path)
    done = subprocess.run([_require_ccx(), "-i", inp_path.stem], cwd=inp_path.parent, capture_output=True,
                          text=True, timeout=timeout_s, check=False)
    dat = inp_path.with_suffix(".dat")
    if done.returncode != 0 or not dat.exists():
        raise FEError(f"CalculiX failed (exit {done.returncode}): {done.stdout[-500:]}")
    return -read_total_force(dat.read_text())[2]


def read_total_force(dat_text: str) -> np.ndarray:
    """The (fx, fy, fz) totals of the last ``*NODE PRINT ... TOTALS=ONLY`` block of a .dat file."""
    blocks = re.findall(r"total force \(fx,fy,fz\).*?\n\s*\n\s*(\S+)\s+(\S+)\s+(\S+)", dat_text)
    if not blocks:
        raise FEError("No reaction force in the CalculiX output.")
    return np.array([float(v) for v in blocks[-1]])

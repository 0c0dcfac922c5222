"""Preconditioned conjugate gradients for the stiffness system.

The operator is either the matrix-free voxel-lattice operator (:mod:`boneqct.fe.operator`) or
an assembled sparse matrix. Preconditioners: "gmg", geometric multigrid on the voxel lattice
(the default: about 10-25 iterations whatever the model size); "jacobi", the inverse diagonal
(cheapest per iteration, iterations grow with model size); "amg", pyamg smoothed aggregation
with the six rigid-body modes as near-null space on the assembled matrix. No direct
factorisation of the global matrix is used: memory stays linear in the number of elements. The
iteration count, the true relative residual ``|b - A x| / |b|`` and whether it met the
tolerance are returned in a :class:`SolverReport`; a solve that did not converge is reported,
never silently accepted.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import pyamg

from boneqct.errors import FEError
from boneqct.fe.operator import limited_blas

#: Default relative residual tolerance |b - A x| / |b|. Measured against a 1e-11 reference
#: solve (multigrid), the reaction force error was at most 3e-5 at 1e-6 (1 mm vertebra: 3e-5;
#: 60^3 cube: 2e-10), 5e-6 at 1e-5 and 5e-4 at 1e-3; with the Chebyshev bounds of
#: boneqct.fe.operator, 7e-8 (46k-element vertebra of Testing/benchmarks/bench_fe.py) and 2e-8
#: (60^3 cube) at 1e-5, two CG iterations fewer than 1e-6 (14 -> 12): 1e-5 keeps the error far
#: below the 0.1% verification bound.
DEFAULT_RTOL = 1e-5
#: Preconditioners offered.
PRECONDITIONERS = ("gmg", "jacobi", "amg")


@dataclass
class SolverReport:
    """How a linear solve went.

    Attributes:
        preconditioner: "jacobi" or "amg".
        iterations: CG iterations.
        relative_residual: true |b - A x| / |b| at the end.
        tolerance: the relative residual asked for.
        converged: relative_residual <= tolerance.
        setup_s, solve_s: wall time of the preconditioner setup and of the iterations (s).
    """

    preconditioner: str
    iterations: int
    relative_residual: float
    tolerance: float
    converged: bool
    setup_s: float
    solve_s: float

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dictionary."""
        return asdict(self)


def rigid_body_modes(node_xyz_mm: np.ndarray) -> np.ndarray:
    """(3 n, 6) translations and rotations of nodes at ``node_xyz_mm`` (n, 3), DOFs interleaved
    (x, y, z per node), rotations about the nodes' centroid (scaled to O(1))."""
    p = np.asarray(node_xyz_mm, float)
    p = (p - p.mean(axis=0)) / max(np.abs(p - p.mean(axis=0)).max(), 1e-12)
    n = len(p)
    modes = np.zeros((n, 3, 6))
    modes[:, [0, 1, 2], [0, 1, 2]] = 1.0
    x, y, z = p.T
    modes[:, 1, 3], modes[:, 2, 3] = -z, y  # about x
    modes[:, 0, 4], modes[:, 2, 4] = z, -x  # about y
    modes[:, 0, 5], modes[:, 1, 5] = -y, x  # about z
    return modes.reshape(3 * n, 6)


def make_preconditioner(matrix, preconditioner: str, near_null_space: np.ndarray | None = None):
    """A callable r -> M^-1 r for ``matrix`` (symmetric positive definite, BSR or CSR)."""
    if preconditioner == "jacobi":
        inverse_diagonal = 1.0 / np.ravel(matrix.diagonal())
        return lambda r: inverse_diagonal * r
    if preconditioner == "gmg":
        from boneqct.fe.operator import GeometricMultigrid, VoxelOperator

        if not isinstance(matrix, VoxelOperator):
            raise FEError("The geometric multigrid preconditioner needs the voxel operator.")
        return GeometricMultigrid(matrix)
    if preconditioner == "amg":
        hierarchy = pyamg.smoothed_aggregation_solver(
            matrix, B=near_null_space, symmetry="symmetric", max_coarse=500, coarse_solver="cholesky",
            presmoother=("jacobi", {"omega": 2.0 / 3.0, "iterations": 1}),
            postsmoother=("jacobi", {"omega": 2.0 / 3.0, "iterations": 1}))
        return hierarchy.aspreconditioner(cycle="V")
    raise FEError(f"Unknown preconditioner '{preconditioner}'; choose one of "
                  f"{', '.join(PRECONDITIONERS)}.")


@limited_blas
def solve(matrix, rhs: np.ndarray, *, preconditioner: str = "jacobi",
          near_null_space: np.ndarray | None = None, x0: np.ndarray | None = None,
          rtol: float = DEFAULT_RTOL, max_iterations: int | None = None, apply_m=None):
    """Solve ``matrix @ x = rhs`` by preconditioned CG.

    Args:
        matrix: symmetric positive definite sparse matrix (N/mm), or an operator with
            ``matvec(x, out)`` and ``diagonal()`` (:class:`boneqct.fe.operator.VoxelOperator`).
        rhs: right-hand side (N).
        preconditioner: "jacobi" or "amg" (smoothed aggregation, ``near_null_space`` =
            rigid-body modes from :func:`rigid_body_modes`); the name reported when
            ``apply_m`` is given.
        x0: starting guess (mm), e.g. the previous load step's solution.
        rtol: relative residual tolerance.
        max_iterations: default 10 x sqrt(n) + 1000.
        apply_m: a ready preconditioner r -> M^-1 r (overrides ``preconditioner``'s setup).

    Returns:
        (x, SolverReport).
    """
    t0 = time.perf_counter()
    if apply_m is None:
        apply_m = make_preconditioner(matrix, preconditioner, near_null_space)
    t1 = time.perf_counter()
    if hasattr(matrix, "matvec") and hasattr(matrix, "vector_shape"):
        def apply_a(v, out):
            return matrix.matvec(v, out)
    else:
        def apply_a(v, out):
            out[...] = matrix @ v
            return out
    n = len(rhs)
    max_iterations = max_iterations or int(10 * np.sqrt(n)) + 1000
    x = np.zeros(n) if x0 is None else np.array(x0, dtype=float)
    b_norm = np.linalg.norm(rhs)
    if b_norm == 0.0:
        return np.zeros(n), SolverReport(preconditioner, 0, 0.0, rtol, True, t1 - t0, 0.0)
    q = np.empty(n)
    r = rhs.copy() if x0 is None else rhs - apply_a(x, q)
    z = apply_m(r)
    p = z.copy()
    rz = r @ z
    iterations = 0
    threshold = rtol * b_norm
    while np.linalg.norm(r) > threshold and iterations < max_iterations:
        apply_a(p, q)
        alpha = rz / (p @ q)
        x += alpha * p
        r -= alpha * q  # recurrence; the true residual is recomputed at the end
        z = apply_m(r)
        rz_new = r @ z
        p *= rz_new / rz
        p += z
        rz = rz_new
        iterations += 1
    residual = float(np.linalg.norm(rhs - apply_a(x, q)) / b_norm)
    report = SolverReport(preconditioner, iterations, residual, rtol,
                          bool(residual <= rtol * 1.01), t1 - t0, time.perf_counter() - t1)
    return x, report

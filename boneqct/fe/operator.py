"""Matrix-free stiffness operator on the voxel lattice and a geometric multigrid preconditioner.

Every element of a voxel mesh is the same cube, so ``K u = sum_e E_e h K_REF u_e``. On the
regular node lattice this is three array passes, with no index arrays: gather the 8 nodal
displacements of every cell by slicing the node grid, scaled by the cell modulus on the way
(``(24, cells)``; 0 for empty cells), one BLAS product with the 24x24 reference matrix, and
add the 8 corner blocks back by slicing. Vectors live on the full node grid, component-major
``(3, nk+1, nj+1, ni+1)`` so that every slice copy is contiguous along i;
nodes touched by no element and prescribed DOFs are decoupled (identity rows), as in the
assembled constrained system.

The multigrid preconditioner coarsens the cell grid by 2 in each direction (cell modulus = mean
of its 8 children, empty children counting 0; element edge doubled: the rediscretised operator,
as in ParOSol), transfers by trilinear interpolation on the lattice and its transpose,
smooths with Chebyshev polynomials in ``D^-1 K`` (same polynomial before and after, so the
V-cycle is a fixed symmetric positive definite operator and plain CG applies), and solves the
coarsest level (at most ``MAX_COARSE_DOF`` unknowns) by a dense Cholesky factorisation. It runs
in single precision: it only has to approximate ``K^-1``; CG, the operator and the residual
check stay in double precision.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

from boneqct.fe.hexahedron import NODE_OFFSETS_XYZ, reference_stiffness, reference_stiffness_parts

#: Local node offsets (k, j, i) of the hexahedron, VTK order.
NODE_OFFSETS_KJI = NODE_OFFSETS_XYZ[:, ::-1]
#: The coarsest multigrid level is solved directly once it has at most this many free DOFs.
MAX_COARSE_DOF = 1000
#: Chebyshev smoother: polynomial degree and the targeted part of the spectrum of D^-1 K,
#: [LOWER_FRACTION, UPPER_FACTOR] x the estimated largest eigenvalue (PETSc's default
#: Chebyshev bounds, 0.1 and 1.1). On the 1 mm vertebra of Testing/benchmarks/bench_fe.py
#: (46k elements) the lower bound 0.1 instead of 0.25 took the CG iterations to 1e-6 from 19
#: to 14; degree 2 or 4 cost as much per unit of residual reduction.
CHEBYSHEV_DEGREE = 3
CHEBYSHEV_LOWER_FRACTION, CHEBYSHEV_UPPER_FACTOR = 0.1, 1.1
#: BLAS threads of the finite-element products and solves. Their matrices are skinny (cells x
#: 24 by 24 x 24), so threads gain little and lose much when the cores are busy: on the 1 mm
#: vertebra of Testing/benchmarks/bench_fe.py (46k elements; 2 cores shared with other work,
#: load average 6-10; 2026-11-29) the elastic-plastic curve took 15 s CPU and 21-49 s wall with
#: 1 thread, 47-55 s CPU and 84-175 s wall with OpenBLAS's default of 2.
BLAS_THREADS = 1
#: Decorator running a function with ``BLAS_THREADS`` BLAS threads.
limited_blas = threadpool_limits.wrap(limits=BLAS_THREADS, user_api="blas")
#: Power iterations estimating the largest eigenvalue of D^-1 K on each level.
POWER_ITERATIONS = 12


def _node_slices(cell_shape):
    """For each local node a: the node-grid slice holding that corner of every cell."""
    return [tuple(slice(o, o + n) for o, n in zip(off, cell_shape, strict=True))
            for off in NODE_OFFSETS_KJI]


class VoxelOperator:
    """Constrained stiffness operator of a voxel mesh on its node lattice.

    Args:
        modulus_kji: (nk, nj, ni) cell moduli (MPa), 0 for empty cells.
        element_mm: element edge (mm).
        poisson_ratio: Poisson's ratio of every element.
        dirichlet: bool (3, nk+1, nj+1, ni+1), prescribed DOFs.
        dtype: float64 (the CG operator) or float32 (the preconditioner).
        shear_modulus_kji: None, or (nk, nj, ni) the modulus that scales each cell's shear
            (Lame mu) part while ``modulus_kji`` scales its lambda part: an isotropic cell whose
            shear modulus is reduced at constant lambda (the elastic-plastic iteration matrix;
            two products per application instead of one).
    """

    def __init__(self, modulus_kji, element_mm: float, poisson_ratio: float, dirichlet,
                 dtype=np.float64, shear_modulus_kji=None):
        self.dtype = np.dtype(dtype)
        self.element_mm = float(element_mm)
        self.poisson_ratio = float(poisson_ratio)
        self.modulus_kji = np.ascontiguousarray(modulus_kji, dtype=self.dtype)
        self.cell_shape = self.modulus_kji.shape
        self.node_shape = tuple(n + 1 for n in self.cell_shape)
        self.vector_shape = (3, *self.node_shape)
        self.size = int(np.prod(self.vector_shape))
        self._slices = _node_slices(self.cell_shape)
        self.k_ref = (reference_stiffness(poisson_ratio) * self.element_mm).astype(self.dtype)
        self.shear_modulus_kji = None
        # The gathered cell displacements are scaled by the cell moduli and multiplied by one
        # stacked reference matrix: K_REF (24 x 24), or [K_lambda; K_mu] (48 x 24) on the
        # displacements scaled by the modulus and by the shear modulus (one product, no pass
        # scaling the forces).
        self._cell_moduli = (self.modulus_kji,)
        self._k_stack = self.k_ref
        if shear_modulus_kji is not None:
            self.shear_modulus_kji = np.ascontiguousarray(shear_modulus_kji, dtype=self.dtype)
            k_lambda, k_mu = reference_stiffness_parts(poisson_ratio)
            self.k_parts = tuple((k * self.element_mm).astype(self.dtype)
                                 for k in (k_lambda, k_mu))
            self._cell_moduli = (self.modulus_kji, self.shear_modulus_kji)
            self._k_stack = np.concatenate(self.k_parts)
        has_cell = self.modulus_kji > 0
        self.exists = np.zeros(self.node_shape, bool)
        for sl in self._slices:
            self.exists[sl] |= has_cell
        self.dirichlet = np.asarray(dirichlet, bool) & self.exists
        self.free = self.exists & ~self.dirichlet
        self.fixed = ~self.free
        self._free_values = self.free.astype(self.dtype)
        n_cells = int(np.prod(self.cell_shape))
        self._cell_u = np.empty((len(self._cell_moduli), 8, 3, *self.cell_shape), self.dtype)
        self._cell_f = np.empty((24, n_cells), self.dtype)
        self._masked = np.empty(self.vector_shape, self.dtype)
        # node-grid faces no cell has as its local node 0 (they are zeroed, the rest assigned)
        self._far_faces = [tuple(slice(n, n + 1) if axis == a else slice(None)
                                 for a, n in enumerate(self.cell_shape)) for axis in range(3)]

    def apply_unconstrained(self, u, out=None):
        """``K u`` on node-grid vectors (flat or shaped); returns the shaped result."""
        u = np.asarray(u).reshape(self.vector_shape)
        out = np.empty(self.vector_shape, self.dtype) if out is None else out.reshape(
            self.vector_shape)
        cell_u = self._cell_u
        for s, modulus in enumerate(self._cell_moduli):
            for a, sl in enumerate(self._slices):
                for c in range(3):
                    np.multiply(u[c][sl], modulus, out=cell_u[s, a, c])
        # (cells, 24 or 48) x (24 or 48, 24) as transposed views (the matrices are symmetric)
        np.matmul(cell_u.reshape(len(self._k_stack), -1).T, self._k_stack, out=self._cell_f.T)
        cell_f = self._cell_f.reshape(8, 3, *self.cell_shape)
        for c in range(3):
            for face in self._far_faces:
                out[c][face] = 0.0
            out[c][self._slices[0]] = cell_f[0, c]
        for a, sl in enumerate(self._slices[1:], start=1):
            for c in range(3):
                out[c][sl] += cell_f[a, c]
        return out

    def matvec(self, u, out=None):
        """Constrained operator: ``F K F u + (I - F) u`` with F the free-DOF mask (flat in and
        out when ``u`` is flat)."""
        shaped = np.asarray(u).reshape(self.vector_shape)
        np.multiply(shaped, self._free_values, out=self._masked)
        result = self.apply_unconstrained(self._masked, out)
        result *= self._free_values
        np.copyto(result, shaped, where=self.fixed)
        return result.reshape(np.shape(u))

    def __matmul__(self, u):
        return self.matvec(u)

    @property
    def shape(self):
        return (self.size, self.size)

    def diagonal(self):
        """Diagonal of the constrained operator (shaped)."""
        diag = np.zeros(self.vector_shape, self.dtype)
        for k, modulus in self._parts():
            k_diag = np.diag(k).reshape(8, 3)
            for a, sl in enumerate(self._slices):
                for c in range(3):
                    diag[c][sl] += modulus * k_diag[a, c]
        diag[self.fixed] = 1.0
        return diag

    def _parts(self):
        """(24x24 matrix, cell modulus) pairs whose sum is the operator."""
        if self.shear_modulus_kji is None:
            return [(self.k_ref, self.modulus_kji)]
        return list(zip(self.k_parts, (self.modulus_kji, self.shear_modulus_kji), strict=True))

    def coarsened(self) -> VoxelOperator:
        """The rediscretised operator on the 2x coarser cell grid (see the module docstring)."""
        pad = [(0, n % 2) for n in self.cell_shape]
        e = np.pad(self.modulus_kji, pad)
        nk, nj, ni = (s // 2 for s in e.shape)
        coarse_e = e.reshape(nk, 2, nj, 2, ni, 2).mean(axis=(1, 3, 5))
        coarse_shear = None
        if self.shear_modulus_kji is not None:
            coarse_shear = np.pad(self.shear_modulus_kji, pad).reshape(
                nk, 2, nj, 2, ni, 2).mean(axis=(1, 3, 5))
        # A coarse DOF is prescribed when its coincident fine node is; when that fine node does
        # not exist, when no free fine DOF depends on it.
        coarse_shape = (nk + 1, nj + 1, ni + 1)
        coincident = np.zeros((3, *coarse_shape), bool)
        dirichlet = np.zeros((3, *coarse_shape), bool)
        view = tuple(slice(0, None, 2) for _ in range(3))
        fine_exists = self.exists[view]
        box = (slice(None), *(slice(0, s) for s in fine_exists.shape))
        coincident[box] = fine_exists
        dirichlet[box] = self.dirichlet[(slice(None), *view)]
        touched = restrict(self._free_values, coarse_shape) > 0
        dirichlet = np.where(coincident, dirichlet, ~touched)
        return VoxelOperator(coarse_e, 2.0 * self.element_mm, self.poisson_ratio, dirichlet,
                             self.dtype, coarse_shear)


def prolong(coarse, fine_node_shape):
    """Trilinear interpolation from a coarse node grid (3, ...) to the 2x finer one (3,
    ``fine_node_shape``); transpose of :func:`restrict`."""
    x = coarse
    for axis, m in enumerate(fine_node_shape, start=1):
        x = np.moveaxis(x, axis, 0)
        out = np.empty((m, *x.shape[1:]), x.dtype)
        even, odd = out[0::2], out[1::2]
        even[...] = x[:len(even)]
        np.add(x[:len(odd)], x[1:len(odd) + 1], out=odd)
        odd *= 0.5
        x = np.moveaxis(out, 0, axis)
    return x


def restrict(fine, coarse_node_shape):
    """Transpose of :func:`prolong`: full-weighting restriction to the coarse node grid."""
    x = fine
    for axis, mc in enumerate(coarse_node_shape, start=1):
        x = np.moveaxis(x, axis, 0)
        out = np.zeros((mc, *x.shape[1:]), x.dtype)
        even, half_odd = x[0::2], 0.5 * x[1::2]
        out[:len(even)] += even
        out[:len(half_odd)] += half_odd
        out[1:len(half_odd) + 1] += half_odd
        x = np.moveaxis(out, 0, axis)
    return x


class _Level:
    def __init__(self, op: VoxelOperator, rng):
        self.op = op
        self.inverse_diagonal = 1.0 / op.diagonal()
        # Largest eigenvalue of D^-1 K by power iteration (on free DOFs; fixed ones have 1).
        v = rng.standard_normal(op.vector_shape).astype(op.dtype) * op._free_values
        lam = 1.0
        for _ in range(POWER_ITERATIONS):
            v /= np.linalg.norm(v)
            w = op.matvec(v) * self.inverse_diagonal
            lam = float(np.vdot(v, w))
            v = w
        self.upper = CHEBYSHEV_UPPER_FACTOR * max(lam, 1.0)
        self.lower = CHEBYSHEV_LOWER_FRACTION * self.upper
        self._work = np.empty(op.vector_shape, op.dtype)

    def smooth(self, b, x=None):
        """Chebyshev iteration for K x = b preconditioned by the diagonal; x=None starts at 0."""
        op = self.op
        degree = CHEBYSHEV_DEGREE
        theta = 0.5 * (self.upper + self.lower)
        delta = 0.5 * (self.upper - self.lower)
        sigma = theta / delta
        rho = 1.0 / sigma
        if x is None:
            x = np.zeros_like(b)
            r = b.copy()
        else:
            r = b - op.matvec(x, self._work)
        d = r * self.inverse_diagonal
        d *= 1.0 / theta
        for k in range(degree):
            x += d
            if k == degree - 1:
                break
            r -= op.matvec(d, self._work)
            rho_new = 1.0 / (2.0 * sigma - rho)
            d *= rho_new * rho
            d += (2.0 * rho_new / delta) * (r * self.inverse_diagonal)
            rho = rho_new
        return x


class GeometricMultigrid:
    """V-cycle preconditioner ``r -> M^-1 r`` for a :class:`VoxelOperator` (flat vectors)."""

    @limited_blas
    def __init__(self, op: VoxelOperator, dtype=np.float32, max_coarse_dof: int | None = None):
        max_coarse_dof = MAX_COARSE_DOF if max_coarse_dof is None else max_coarse_dof
        rng = np.random.default_rng(0)
        level_op = VoxelOperator(op.modulus_kji, op.element_mm, op.poisson_ratio, op.dirichlet,
                                 dtype, op.shear_modulus_kji)
        self.levels = [_Level(level_op, rng)]
        while int(level_op.free.sum()) > max_coarse_dof and min(level_op.cell_shape) > 1:
            level_op = level_op.coarsened()
            self.levels.append(_Level(level_op, rng))
        self.levels.pop()
        self._coarse_op = level_op
        self._coarse_free = np.flatnonzero(level_op.free.ravel())
        self._coarse_factor = _factor_dense(_dense_matrix(level_op)[
            np.ix_(self._coarse_free, self._coarse_free)])
        self.dtype = np.dtype(dtype)

    @property
    def n_levels(self) -> int:
        return len(self.levels) + 1

    def __call__(self, r):
        shape = self.levels[0].op.vector_shape if self.levels else self._coarse_op.vector_shape
        x = self._cycle(0, np.asarray(r, self.dtype).reshape(shape))
        return x.reshape(np.shape(r)).astype(np.float64)

    def _cycle(self, index: int, b):
        if index == len(self.levels):
            x = np.zeros(self._coarse_op.vector_shape, self.dtype)
            flat = x.reshape(-1)
            flat[self._coarse_free] = _solve_dense(self._coarse_factor,
                                                    b.reshape(-1)[self._coarse_free])
            return x
        level = self.levels[index]
        op = level.op
        x = level.smooth(b)
        r = b - op.matvec(x, level._work)
        r *= op._free_values
        coarse_op = (self.levels[index + 1].op if index + 1 < len(self.levels)
                     else self._coarse_op)
        # Prescribed coarse DOFs take no residual and give no correction.
        coarse_b = restrict(r, coarse_op.node_shape)
        coarse_b *= coarse_op._free_values
        e = self._cycle(index + 1, coarse_b)
        e *= coarse_op._free_values
        correction = prolong(e, op.node_shape)
        correction *= op._free_values
        x += correction
        return level.smooth(b, x)


def _dense_matrix(op: VoxelOperator) -> np.ndarray:
    """Dense constrained matrix of a small operator, from its element matrices."""
    n = op.size
    dense = np.zeros((n, n))
    n_nodes = int(np.prod(op.node_shape))
    node_index = np.arange(n_nodes).reshape(op.node_shape)
    cells = np.argwhere(op.modulus_kji > 0)
    nodes = np.stack([node_index[tuple((cells + off).T)] for off in NODE_OFFSETS_KJI], axis=1)
    dofs = (nodes[:, :, None] + n_nodes * np.arange(3)).reshape(-1, 24)
    values = sum(modulus[tuple(cells.T)].astype(np.float64)[:, None, None]
                 * k.astype(np.float64) for k, modulus in op._parts())
    np.add.at(dense, (dofs[:, :, None], dofs[:, None, :]), values)
    fixed = np.flatnonzero(op.fixed.ravel())
    dense[fixed, :] = 0.0
    dense[:, fixed] = 0.0
    dense[fixed, fixed] = 1.0
    return dense


def _factor_dense(matrix: np.ndarray):
    """Cholesky factor of the coarsest matrix; a pseudo-inverse when it is singular (a coarse
    grid can lose a pin that holds a rigid motion of the fine problem)."""
    try:
        return ("cholesky", scipy.linalg.cho_factor(matrix))
    except np.linalg.LinAlgError:
        return ("pinv", np.linalg.pinv(matrix, hermitian=True))


def _solve_dense(factor, b):
    kind, value = factor
    b = b.astype(np.float64)
    return scipy.linalg.cho_solve(value, b) if kind == "cholesky" else value @ b

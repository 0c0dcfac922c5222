"""The voxel model on its node lattice: the matrix-free stiffness operator, its multigrid
preconditioner, and DOF vectors moved onto the lattice (shared by the linear solve of
:mod:`boneqct.fe.analysis` and the plastic increments of :mod:`boneqct.fe.plasticity`).

``model`` is a :class:`boneqct.fe.analysis.Model` (mesh, assembler, fixed DOFs).
"""

from __future__ import annotations

import numpy as np

from boneqct.fe.materials import POISSON_RATIO
from boneqct.fe.operator import GeometricMultigrid, VoxelOperator


def lattice_operator(model, modulus_mpa: np.ndarray, dtype=np.float64,
                     shear_modulus_mpa: np.ndarray | None = None):
    """The matrix-free constrained stiffness operator of the model for element moduli
    (``shear_modulus_mpa``: see ``boneqct.fe.operator.VoxelOperator``)."""
    grids = []
    for values in (modulus_mpa, shear_modulus_mpa):
        grid = None
        if values is not None:
            grid = np.zeros(model.mesh.material_kji.shape)
            grid[model.mesh.elements_kji] = values
        grids.append(grid)
    return VoxelOperator(grids[0], model.mesh.element_mm, POISSON_RATIO,
                         to_grid(model, model.fixed).astype(bool), dtype, grids[1])


def lattice_preconditioner(model, modulus_mpa: np.ndarray,
                           shear_modulus_mpa: np.ndarray | None = None):
    """A geometric multigrid preconditioner (callable r -> M^-1 r) for the lattice operator."""
    return GeometricMultigrid(lattice_operator(model, modulus_mpa,
                                               shear_modulus_mpa=shear_modulus_mpa))


def to_grid(model, dof_values: np.ndarray) -> np.ndarray:
    """Values per DOF (node numbering, x y z per node) on the node lattice, component-major
    ``(3, nk+1, nj+1, ni+1)``, 0 where no node."""
    dof_values = np.asarray(dof_values)
    shape = model.assembler.node_id_kji.shape
    grid = np.zeros((3, int(np.prod(shape))), dof_values.dtype)
    grid[:, model.assembler.node_flat] = dof_values.reshape(-1, 3).T
    return grid.reshape(3, *shape)

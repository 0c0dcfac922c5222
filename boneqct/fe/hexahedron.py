"""The 8-node trilinear hexahedron on a cube: one reference stiffness matrix for all elements.

Every element of a voxel mesh is the same cube, so its stiffness is ``E * h * K_REF`` with
``K_REF`` the stiffness of a unit cube of unit modulus (full 2x2x2 Gauss integration) and
``h`` the edge (mm): K scales as E h for a cube. Node order is VTK_HEXAHEDRON's; local
coordinates (x, y, z) = (i, j, k) of the element grid.
"""

from __future__ import annotations

import numpy as np

#: Local node offsets (x, y, z) in VTK_HEXAHEDRON order.
NODE_OFFSETS_XYZ = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                             [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]])


def elasticity_matrix(poisson_ratio: float) -> np.ndarray:
    """6x6 isotropic elasticity matrix for E = 1 (Voigt order xx, yy, zz, yz, xz, xy;
    engineering shear strains)."""
    nu = poisson_ratio
    c = 1.0 / ((1.0 + nu) * (1.0 - 2.0 * nu))
    d = np.zeros((6, 6))
    d[:3, :3] = c * nu
    d[np.arange(3), np.arange(3)] = c * (1.0 - nu)
    d[np.arange(3, 6), np.arange(3, 6)] = c * (1.0 - 2.0 * nu) / 2.0
    return d


def strain_matrix(point_xyz, edge_mm: float = 1.0) -> np.ndarray:
    """6x24 strain-displacement matrix B at a point of the cube (local coordinates in [0, 1])."""
    p = np.asarray(point_xyz, dtype=float)
    off = NODE_OFFSETS_XYZ
    # Trilinear shape function N_a = prod over axes of (off ? p : 1 - p); its gradients.
    factors = np.where(off == 1, p, 1.0 - p)  # (8, 3)
    signs = np.where(off == 1, 1.0, -1.0)
    grads = np.empty((8, 3))
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        grads[:, axis] = signs[:, axis] * factors[:, others[0]] * factors[:, others[1]]
    grads /= edge_mm
    b = np.zeros((6, 24))
    for a in range(8):
        gx, gy, gz = grads[a]
        c = 3 * a
        b[0, c], b[1, c + 1], b[2, c + 2] = gx, gy, gz
        b[3, c + 1], b[3, c + 2] = gz, gy
        b[4, c], b[4, c + 2] = gz, gx
        b[5, c], b[5, c + 1] = gy, gx
    return b


def _cube_stiffness(d: np.ndarray) -> np.ndarray:
    """24x24 stiffness of the unit cube for the 6x6 material matrix ``d`` (2x2x2 Gauss)."""
    g = 0.5 + np.array([-1.0, 1.0]) / (2.0 * np.sqrt(3.0))  # Gauss points on [0, 1], weight 1/8
    k = np.zeros((24, 24))
    for x in g:
        for y in g:
            for z in g:
                b = strain_matrix((x, y, z))
                k += b.T @ d @ b / 8.0
    return k


def reference_stiffness(poisson_ratio: float) -> np.ndarray:
    """24x24 stiffness of a unit cube (edge 1 mm) of unit modulus (1 MPa), N/mm."""
    return _cube_stiffness(elasticity_matrix(poisson_ratio))


def reference_stiffness_parts(poisson_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """The unit-modulus cube stiffness split into its Lame parts, ``(lambda K_lambda,
    mu K_mu)`` with lambda, mu of E = 1 and ``poisson_ratio``: their sum is
    :func:`reference_stiffness`; scaling the second alone changes the shear modulus and keeps
    the first Lame constant (the elastic-plastic iteration matrix)."""
    nu = poisson_ratio
    lam, mu = nu / ((1.0 + nu) * (1.0 - 2.0 * nu)), 1.0 / (2.0 * (1.0 + nu))
    d_lambda = np.zeros((6, 6))
    d_lambda[:3, :3] = lam
    return _cube_stiffness(d_lambda), _cube_stiffness(mu * np.diag([2.0, 2.0, 2.0, 1, 1, 1]))

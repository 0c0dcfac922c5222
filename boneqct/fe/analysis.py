"""Uniaxial compression of a voxel mesh along the body axis: stiffness, strength and fields.

Boundary conditions: the bottom platen face (k = 0) is fixed, the top face (k = nk) is
displaced by ``-apparent_strain x bone height`` along the body axis. ``platens="bonded"``
(default; BCT/Ogo practice) also holds the faces' in-plane displacement at zero;
``"frictionless"`` leaves them free (the minimum constraint against rigid in-plane motion is
applied), as for the analytic prism E A / L.

Strength criteria (sources and validity in :mod:`boneqct.fe.criteria`):
- ``linear``: F = 0.0068 x K x h (a convention, source not found).
- ``pistoia``: the load at which 2% of the bone volume exceeds 0.7% effective strain,
  sqrt(2 SED / E) (Pistoia et al. 2002 Bone 30:842), scaled from the linear solution.
- ``nonlinear``: the elastic-plastic model of :mod:`boneqct.fe.plasticity` loaded in
  increments to 2% apparent strain; the strength is the largest reaction force up to 2%.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from boneqct.errors import FEError
from boneqct.fe.assembly import Assembler
from boneqct.fe.criteria import (
    CRITERIA,  # noqa: F401 (re-exported: the strength criteria offered)
    NONLINEAR_STEPS,
    NONLINEAR_STRAIN,
    PISTOIA_STRAIN,
    PISTOIA_VOLUME_FRACTION,
)
from boneqct.fe.hexahedron import elasticity_matrix, strain_matrix
from boneqct.fe.lattice import lattice_operator, to_grid
from boneqct.fe.materials import MIN_MODULUS_MPA, PMMA_MODULUS_MPA, POISSON_RATIO, get_law
from boneqct.fe.mesh import BONE, VoxelMesh
from boneqct.fe.plasticity import RESIDUAL_RTOL, elastic_plastic_curve
from boneqct.fe.solver import DEFAULT_RTOL, SolverReport, rigid_body_modes, solve

#: Preconditioner of the linear solves (geometric multigrid on the voxel lattice).
DEFAULT_PRECONDITIONER = "gmg"

#: Default material law: E and yield from one study, fitted on the QCT (K2HPO4) density itself
#: (see boneqct/data/fe/material_laws.json).
DEFAULT_LAW = "kopperdahl2002"
PLATENS = ("bonded", "frictionless")


@dataclass
class Model:
    """A mesh ready to solve: assembler, element moduli and yield stresses, boundary DOFs.

    Attributes:
        mesh: the voxel mesh.
        law: name of the density-modulus law.
        modulus_mpa: (n_elements,) Young's modulus per element (MPa).
        yield_compression_mpa, yield_tension_mpa: (n_elements,) uniaxial yield stresses
            (MPa, positive); inf for PMMA (elastic).
        post_yield_fraction: (n_elements,) post-yield tangent in uniaxial compression as a
            fraction of the modulus (0: perfectly plastic).
        is_bone: (n_elements,) bool.
        assembler: node numbering and matrix pattern.
        fixed: (n_dof,) bool, DOFs with a prescribed displacement.
        top_z_dofs: DOF numbers of the top face along the axis (loaded).
    """

    mesh: VoxelMesh
    law: str
    modulus_mpa: np.ndarray
    yield_compression_mpa: np.ndarray
    yield_tension_mpa: np.ndarray
    post_yield_fraction: np.ndarray
    is_bone: np.ndarray
    assembler: Assembler
    fixed: np.ndarray
    top_z_dofs: np.ndarray
    platens: str

    @property
    def top_node_kji(self) -> tuple:
        """Node-lattice index of the top-face nodes (for arrays shaped like the lattice)."""
        if getattr(self, "_top_node_kji", None) is None:
            self._top_node_kji = tuple(self.assembler.node_kji()[self.top_z_dofs // 3].T)
        return self._top_node_kji

    @property
    def n_dof(self) -> int:
        return self.assembler.n_dof


@dataclass
class Solution:
    """One solved load case.

    Attributes:
        displacement_mm: (n_dof,) nodal displacements in the axis frame (x, y, z per node).
        applied_mm: top-platen displacement along the axis (positive = compression).
        reaction_n: compressive reaction force on the top platen (N).
        modulus_mpa: element (elastic) moduli.
        reports: solver reports (one per linear solve).
        stress_mpa: (n_elements, 6) element-mean stresses of the elastic-plastic state (None:
            linear, stress = modulus x elasticity x strain).
        yielded: (n_elements,) bool, elements that have yielded (None: linear).
    """

    displacement_mm: np.ndarray
    applied_mm: float
    reaction_n: float
    modulus_mpa: np.ndarray
    reports: list[SolverReport] = field(default_factory=list)
    stress_mpa: np.ndarray | None = None
    yielded: np.ndarray | None = None


def build_model(mesh: VoxelMesh, law: str = DEFAULT_LAW, *, platens: str = "bonded",
                min_modulus_mpa: float = MIN_MODULUS_MPA) -> Model:
    """Material mapping and boundary conditions of a mesh (see the module docstring)."""
    if platens not in PLATENS:
        raise FEError(f"Unknown platen condition '{platens}'; choose one of {', '.join(PLATENS)}.")
    material = mesh.element_values(mesh.material_kji)
    is_bone = material == BONE
    bmd = mesh.element_values(mesh.bmd_mg_cm3_kji)
    chosen = get_law(law)
    modulus = np.full(len(material), PMMA_MODULUS_MPA)
    modulus[is_bone] = chosen.modulus_mpa(bmd[is_bone], mesh.density_material, min_modulus_mpa)
    yields = {}
    for kind in ("compression", "tension"):
        yields[kind] = np.full(len(material), np.inf)
        yields[kind][is_bone] = chosen.yield_stress_mpa(bmd[is_bone], mesh.density_material, kind,
                                                        min_modulus_mpa)
    post_yield = np.where(is_bone, chosen.post_yield_tangent_fraction, 0.0)
    assembler = Assembler(mesh.elements_kji, mesh.element_mm, POISSON_RATIO)
    node_kji = assembler.node_kji()
    nk = mesh.material_kji.shape[0]
    bottom = np.flatnonzero(node_kji[:, 0] == 0)
    top = np.flatnonzero(node_kji[:, 0] == nk)
    fixed = np.zeros((assembler.n_nodes, 3), bool)
    fixed[bottom, 2] = fixed[top, 2] = True
    if platens == "bonded":
        fixed[bottom, :] = fixed[top, :] = True
    else:  # pin rigid in-plane motion: one bottom node in x and y, a second one in y
        xy = node_kji[bottom][:, [2, 1]].astype(float)
        first = bottom[np.argmin(np.linalg.norm(xy - xy.mean(axis=0), axis=1))]
        second = bottom[np.argmax(np.abs(xy[:, 0] - node_kji[first, 2]))]
        fixed[first, :2] = True
        fixed[second, 1] = True
    return Model(mesh, law, modulus, yields["compression"], yields["tension"], post_yield,
                 is_bone, assembler, fixed.ravel(), 3 * top + 2, platens)


def solve_displacement(model: Model, modulus_mpa: np.ndarray, applied_mm: float, *,
                       preconditioner: str = DEFAULT_PRECONDITIONER,
                       x0: np.ndarray | None = None, rtol: float = DEFAULT_RTOL,
                       apply_m=None) -> Solution:
    """Displacements and reaction for the top platen moved ``applied_mm`` down the axis.

    "gmg" (geometric multigrid) and "jacobi" solve matrix-free on the voxel lattice
    (:mod:`boneqct.fe.operator`); "amg" assembles the sparse matrix for pyamg. ``apply_m`` is
    a ready preconditioner for the lattice operator (e.g. a multigrid hierarchy built for
    nearby moduli, reused across the nonlinear iterations).
    """
    if preconditioner == "amg":
        return _solve_assembled(model, modulus_mpa, applied_mm, x0=x0, rtol=rtol)
    op = lattice_operator(model, modulus_mpa)
    prescribed = np.zeros(op.vector_shape)
    prescribed[2][model.top_node_kji] = -applied_mm
    rhs = -op.apply_unconstrained(prescribed)
    rhs *= op.free
    start = None
    if x0 is not None:
        start = to_grid(model, np.where(model.fixed, 0.0, x0)).ravel()
    free_part, report = solve(op, rhs.ravel(), preconditioner=preconditioner, x0=start,
                              rtol=rtol, apply_m=apply_m)
    u_grid = np.where(op.dirichlet, prescribed, free_part.reshape(op.vector_shape))
    reaction = -float(op.apply_unconstrained(u_grid)[2][model.top_node_kji].sum())
    u = u_grid.reshape(3, -1)[:, model.assembler.node_flat].T.ravel()
    return Solution(u, float(applied_mm), reaction, np.asarray(modulus_mpa), [report])


def _solve_assembled(model: Model, modulus_mpa: np.ndarray, applied_mm: float, *,
                     x0: np.ndarray | None, rtol: float) -> Solution:
    """The assembled-matrix path (pyamg smoothed aggregation with rigid-body modes)."""
    stiffness = model.assembler.matrix(modulus_mpa)
    prescribed = np.zeros(model.n_dof)
    prescribed[model.top_z_dofs] = -applied_mm
    system, rhs = _constrained_system(stiffness, model.fixed, prescribed)
    node_xyz = model.assembler.node_kji()[:, ::-1] * model.mesh.element_mm
    near_null = rigid_body_modes(node_xyz)
    start = None if x0 is None else np.where(model.fixed, 0.0, x0)
    free_part, report = solve(system, rhs, preconditioner="amg", near_null_space=near_null,
                              x0=start, rtol=rtol)
    u = np.where(model.fixed, prescribed, free_part)
    reaction = -float((stiffness @ u)[model.top_z_dofs].sum())
    return Solution(u, float(applied_mm), reaction, np.asarray(modulus_mpa), [report])


def _constrained_system(stiffness, fixed: np.ndarray, prescribed: np.ndarray):
    """The system on all DOFs with prescribed DOFs decoupled (identity rows and columns) and
    their values moved to the right-hand side."""
    free = (~fixed).astype(float)
    rhs = -(stiffness @ prescribed) * free
    system = stiffness.copy()
    row_node = np.repeat(np.arange(len(system.indptr) - 1), np.diff(system.indptr))
    free3 = free.reshape(-1, 3)
    system.data *= free3[row_node][:, :, None] * free3[system.indices][:, None, :]
    diagonal = np.flatnonzero(row_node == system.indices)
    system.data[diagonal] += np.eye(3) * (1.0 - free3[row_node[diagonal]])[:, None, :]
    return system, rhs


def element_strains(model: Model, displacement_mm: np.ndarray) -> np.ndarray:
    """(n_elements, 6) strains at element centres (xx, yy, zz, yz, xz, xy; engineering shear;
    axis frame, z along the body axis)."""
    b = strain_matrix((0.5, 0.5, 0.5), model.mesh.element_mm)
    u_nodes = displacement_mm.reshape(-1, 3)
    u_elements = u_nodes[model.assembler.element_nodes].reshape(-1, 24)
    return u_elements @ b.T


def element_fields(model: Model, solution: Solution) -> dict[str, np.ndarray]:
    """Per-element fields: strain (6), stress_mpa (6), von_mises_mpa, sed_mpa (strain energy
    density, MPa = mJ/mm3), effective_strain (sqrt(2 SED / E)), principal_strains (3,
    ascending), modulus_mpa, bmd_mg_cm3, material, yielded."""
    strain = element_strains(model, solution.displacement_mm)
    stress = (solution.stress_mpa if solution.stress_mpa is not None else
              solution.modulus_mpa[:, None] * (strain @ elasticity_matrix(POISSON_RATIO).T))
    sed = 0.5 * np.einsum("ij,ij->i", stress, strain)
    tensor = np.empty((len(strain), 3, 3))
    tensor[:, [0, 1, 2], [0, 1, 2]] = strain[:, :3]
    tensor[:, 1, 2] = tensor[:, 2, 1] = strain[:, 3] / 2.0
    tensor[:, 0, 2] = tensor[:, 2, 0] = strain[:, 4] / 2.0
    tensor[:, 0, 1] = tensor[:, 1, 0] = strain[:, 5] / 2.0
    return {
        "strain": strain, "stress_mpa": stress, "von_mises_mpa": _von_mises(stress),
        "sed_mpa": sed, "effective_strain": np.sqrt(2.0 * sed / solution.modulus_mpa),
        "principal_strains": np.linalg.eigvalsh(tensor),
        "modulus_mpa": solution.modulus_mpa,
        "bmd_mg_cm3": model.mesh.element_values(model.mesh.bmd_mg_cm3_kji),
        "material": model.mesh.element_values(model.mesh.material_kji).astype(np.int32),
        "yielded": (np.zeros(len(strain), bool) if solution.yielded is None
                    else solution.yielded),
    }


def _von_mises(stress: np.ndarray) -> np.ndarray:
    """Von Mises stress of (n, 6) Voigt stresses."""
    sx, sy, sz, tyz, txz, txy = stress.T
    return np.sqrt(0.5 * ((sx - sy) ** 2 + (sy - sz) ** 2 + (sz - sx) ** 2)
                   + 3.0 * (tyz**2 + txz**2 + txy**2))


def pistoia_strength_n(model: Model, solution: Solution) -> float:
    """Pistoia failure load (N) from a linear solution: the reaction scaled so that the 98th
    volume percentile of bone effective strain equals 0.7%."""
    effective = element_fields(model, solution)["effective_strain"][model.is_bone]
    critical = np.quantile(effective, 1.0 - PISTOIA_VOLUME_FRACTION)
    return float(solution.reaction_n * PISTOIA_STRAIN / critical)


def nonlinear_curve(model: Model, *, final_strain: float = NONLINEAR_STRAIN,
                    steps: int = NONLINEAR_STEPS, preconditioner: str = DEFAULT_PRECONDITIONER,
                    rtol: float = DEFAULT_RTOL, linear: Solution | None = None,
                    apply_m=None, residual_rtol: float = RESIDUAL_RTOL,
                    ) -> tuple[list[dict], Solution, bool]:
    """Load-displacement curve of the elastic-plastic model (:mod:`boneqct.fe.plasticity`).

    Args:
        linear: the model's linear solution when already solved (else solved here at
            ``rtol``); ``apply_m`` the preconditioner it was solved with, reused.
        residual_rtol: equilibrium tolerance of each increment.

    Returns:
        (curve, last solution, converged): curve points {"apparent_strain", "displacement_mm",
        "force_n", "yielded_fraction", "iterations"}; the solution at the final strain holds
        the element-mean stresses and the yielded elements; converged is False when an
        increment's equilibrium iterations or the linear solve did not converge.
    """
    if linear is None:
        linear = solve_displacement(model, model.modulus_mpa,
                                    final_strain * model.mesh.bone_height_mm / steps,
                                    preconditioner=preconditioner, rtol=rtol, apply_m=apply_m)
    curve, final, converged = elastic_plastic_curve(model, linear, final_strain=final_strain,
                                                    steps=steps, preconditioner=preconditioner,
                                                    apply_m=apply_m,
                                                    residual_rtol=residual_rtol)
    solution = Solution(final["displacement_mm"], curve[-1]["displacement_mm"],
                        curve[-1]["force_n"], model.modulus_mpa, list(final["reports"]),
                        final["stress_mpa"], final["yielded"])
    return curve, solution, bool(converged and linear.reports[0].converged)

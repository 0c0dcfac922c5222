"""Uniaxial compression of a voxel mesh along the body axis: stiffness, strength and fields.

Boundary conditions: the bottom platen face (k = 0) is fixed, the top face (k = nk) is
displaced by ``-apparent_strain x bone height`` along the body axis. ``platens="bonded"``
(default; BCT/Ogo practice) also holds the faces' in-plane displacement at zero;
``"frictionless"`` leaves them free (the minimum constraint against rigid in-plane motion is
applied), as for the analytic prism E A / L.

Strength criteria:
- ``linear``: F = 0.0068 x K x h, the stiffness times the bone height times 0.68% apparent
  strain (parosol-py's default, after Kopperdahl/Crawford).
- ``pistoia``: the load at which 2% of the bone volume exceeds 0.7% effective strain,
  sqrt(2 SED / E) (Pistoia et al. 2002 Bone 30:842), scaled from the linear solution.
- ``nonlinear``: elastic-perfectly-plastic bone (von Mises stress capped at the Kopperdahl
  2002 yield stress; PMMA stays elastic) loaded in steps to 2% apparent strain; the strength
  is the largest reaction force up to 2% (Kopperdahl et al. 2014 JBMR 29:570, BCT). Solved by
  the secant (Kacanov) iteration of deformation-theory plasticity, exact for proportional
  loading: each element's modulus is reduced to sigma_y / von Mises(unit-modulus stress).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from boneqct.errors import FEError
from boneqct.fe.assembly import Assembler
from boneqct.fe.hexahedron import elasticity_matrix, strain_matrix
from boneqct.fe.materials import (
    MIN_MODULUS_MPA,
    PMMA_MODULUS_MPA,
    POISSON_RATIO,
    get_law,
    yield_stress_mpa,
)
from boneqct.fe.mesh import BONE, VoxelMesh
from boneqct.fe.solver import DEFAULT_RTOL, SolverReport, rigid_body_modes, solve

#: Preconditioner of the linear solves (geometric multigrid on the voxel lattice).
DEFAULT_PRECONDITIONER = "gmg"

#: Apparent strain of the linear strength rule (parosol-py default after Kopperdahl/Crawford).
LINEAR_RULE_STRAIN = 0.0068
#: Pistoia et al. 2002: failure when 2% of the bone volume exceeds 0.7% effective strain.
PISTOIA_VOLUME_FRACTION, PISTOIA_STRAIN = 0.02, 0.007
#: Nonlinear analysis: final apparent strain (BCT: 2%) and load steps to it.
NONLINEAR_STRAIN, NONLINEAR_STEPS = 0.02, 10
#: Secant iterations per load step stop when the reaction changes by less than this fraction.
NONLINEAR_FORCE_RTOL = 1e-3
NONLINEAR_MAX_ITERATIONS = 30
#: Fragile bone strength, vertebra (Kopperdahl et al. 2014 JBMR 29:570; ISCD 2015).
FRAGILE_STRENGTH_N = {"F": 4500.0, "M": 6500.0}
CRITERIA = ("linear", "pistoia", "nonlinear")
PLATENS = ("bonded", "frictionless")


@dataclass
class Model:
    """A mesh ready to solve: assembler, element moduli and yield stresses, boundary DOFs.

    Attributes:
        mesh: the voxel mesh.
        law: name of the density-modulus law.
        modulus_mpa: (n_elements,) Young's modulus per element (MPa).
        yield_stress_mpa: (n_elements,) yield stress (MPa); inf for PMMA.
        is_bone: (n_elements,) bool.
        assembler: node numbering and matrix pattern.
        fixed: (n_dof,) bool, DOFs with a prescribed displacement.
        top_z_dofs: DOF numbers of the top face along the axis (loaded).
    """

    mesh: VoxelMesh
    law: str
    modulus_mpa: np.ndarray
    yield_stress_mpa: np.ndarray
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
        modulus_mpa: element moduli used (secant moduli in the nonlinear case).
        reports: solver reports (one per linear solve).
    """

    displacement_mm: np.ndarray
    applied_mm: float
    reaction_n: float
    modulus_mpa: np.ndarray
    reports: list[SolverReport] = field(default_factory=list)


def build_model(mesh: VoxelMesh, law: str = "morgan2003", *, platens: str = "bonded",
                min_modulus_mpa: float = MIN_MODULUS_MPA) -> Model:
    """Material mapping and boundary conditions of a mesh (see the module docstring)."""
    if platens not in PLATENS:
        raise FEError(f"Unknown platen condition '{platens}'; choose one of {', '.join(PLATENS)}.")
    material = mesh.element_values(mesh.material_kji)
    is_bone = material == BONE
    bmd = mesh.element_values(mesh.bmd_mg_cm3_kji)
    modulus = np.full(len(material), PMMA_MODULUS_MPA)
    modulus[is_bone] = get_law(law).modulus_mpa(bmd[is_bone], mesh.density_material,
                                                min_modulus_mpa)
    yield_stress = np.full(len(material), np.inf)
    yield_stress[is_bone] = yield_stress_mpa(bmd[is_bone], mesh.density_material)
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
    return Model(mesh, law, modulus, yield_stress, is_bone, assembler, fixed.ravel(),
                 3 * top + 2, platens)


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


def lattice_operator(model: Model, modulus_mpa: np.ndarray, dtype=np.float64):
    """The matrix-free constrained stiffness operator of the model for element moduli."""
    from boneqct.fe.operator import VoxelOperator

    modulus_kji = np.zeros(model.mesh.material_kji.shape)
    modulus_kji[model.mesh.elements_kji] = modulus_mpa
    return VoxelOperator(modulus_kji, model.mesh.element_mm, POISSON_RATIO,
                         to_grid(model, model.fixed).astype(bool), dtype)


def lattice_preconditioner(model: Model, modulus_mpa: np.ndarray):
    """A geometric multigrid preconditioner (callable r -> M^-1 r) for the lattice operator."""
    from boneqct.fe.operator import GeometricMultigrid

    return GeometricMultigrid(lattice_operator(model, modulus_mpa))


def to_grid(model: Model, dof_values: np.ndarray) -> np.ndarray:
    """Values per DOF (node numbering, x y z per node) on the node lattice, component-major
    ``(3, nk+1, nj+1, ni+1)``, 0 where no node."""
    dof_values = np.asarray(dof_values)
    shape = model.assembler.node_id_kji.shape
    grid = np.zeros((3, int(np.prod(shape))), dof_values.dtype)
    grid[:, model.assembler.node_flat] = dof_values.reshape(-1, 3).T
    return grid.reshape(3, *shape)


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
    ascending), modulus_mpa, bmd_mg_cm3, material."""
    strain = element_strains(model, solution.displacement_mm)
    stress = solution.modulus_mpa[:, None] * (strain @ elasticity_matrix(POISSON_RATIO).T)
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
                    rtol: float = DEFAULT_RTOL) -> tuple[list[dict], Solution, bool]:
    """Load-displacement curve of the elastic-perfectly-plastic model.

    Returns:
        (curve, last solution, converged): curve points {"apparent_strain", "displacement_mm",
        "force_n", "yielded_fraction", "iterations"}; converged is False when a step's secant
        iteration or a linear solve did not converge.
    """
    curve = [{"apparent_strain": 0.0, "displacement_mm": 0.0, "force_n": 0.0,
              "yielded_fraction": 0.0, "iterations": 0}]
    modulus = model.modulus_mpa
    solution = solve_displacement(model, modulus, final_strain * model.mesh.bone_height_mm / steps,
                                  preconditioner=preconditioner, rtol=rtol)
    converged = solution.reports[-1].converged
    # One multigrid hierarchy serves many secant solves (any SPD preconditioner keeps CG
    # exact; only the iteration count depends on it): rebuilt for the current secant moduli
    # when a solve needs markedly more iterations than the first one made with it.
    apply_m, base_iterations = None, 0
    for step in range(1, steps + 1):
        strain_app = final_strain * step / steps
        applied = strain_app * model.mesh.bone_height_mm
        scale = applied / solution.applied_mm
        # Start from the previous state scaled to this step; while nothing yields this is the
        # exact (linear) solution and no solve is needed.
        solution = Solution(solution.displacement_mm * scale, applied, solution.reaction_n * scale,
                            solution.modulus_mpa, solution.reports)
        iterations = 0
        while True:
            secant = _secant_modulus(model, solution.displacement_mm)
            if np.allclose(secant, solution.modulus_mpa, rtol=1e-9, atol=0.0):
                break
            if iterations == NONLINEAR_MAX_ITERATIONS:
                converged = False  # the secant iteration did not settle
                break
            force = solution.reaction_n
            rebuilt = False
            if preconditioner == "gmg" and (
                    apply_m is None
                    or solution.reports[-1].iterations > 1.5 * base_iterations + 3):
                apply_m, rebuilt = lattice_preconditioner(model, secant), True
            solution = solve_displacement(model, secant, applied, preconditioner=preconditioner,
                                          x0=solution.displacement_mm, rtol=rtol,
                                          apply_m=apply_m)
            if rebuilt:
                base_iterations = solution.reports[-1].iterations
            converged &= solution.reports[-1].converged
            iterations += 1
            if abs(solution.reaction_n - force) <= NONLINEAR_FORCE_RTOL * abs(solution.reaction_n):
                break
        yielded = (solution.modulus_mpa < model.modulus_mpa) & model.is_bone
        curve.append({"apparent_strain": strain_app, "displacement_mm": applied,
                      "force_n": solution.reaction_n,
                      "yielded_fraction": float(yielded.sum() / model.is_bone.sum()),
                      "iterations": iterations})
    return curve, solution, bool(converged)


def _secant_modulus(model: Model, displacement_mm: np.ndarray) -> np.ndarray:
    """Element moduli (MPa) capping the von Mises stress at the yield stress:
    min(E, sigma_y / von Mises of the unit-modulus stress), never below MIN_MODULUS_MPA."""
    unit_stress = element_strains(model, displacement_mm) @ elasticity_matrix(POISSON_RATIO).T
    unit_vm = _von_mises(unit_stress)
    with np.errstate(divide="ignore"):
        secant = np.where(unit_vm > 0, model.yield_stress_mpa / unit_vm, np.inf)
    return np.maximum(np.minimum(model.modulus_mpa, secant),
                      np.minimum(model.modulus_mpa, MIN_MODULUS_MPA))


def fragile(strength_n: float, sex: str | None) -> bool | None:
    """Fragile bone strength (vertebra <= 4500 N women, <= 6500 N men; Kopperdahl 2014);
    None when the sex is unknown."""
    if sex not in FRAGILE_STRENGTH_N:
        return None
    return bool(strength_n <= FRAGILE_STRENGTH_N[sex])

"""Elastic-plastic analysis of a voxel model: return mapping at the integration points,
incremental displacement loading, secant-stiffness iterations with the multigrid solver.

Yield surface (per bone integration point): a Drucker-Prager cone fitted to the law's uniaxial
compressive and tensile yield stresses sigma_c, sigma_t,

    f = q + beta p - k(gamma),   q = sqrt(3 J2),  p = tr(sigma) / 3 (tension positive),
    beta = 3 (sigma_c - sigma_t) / (sigma_c + sigma_t),  k0 = 2 sigma_c sigma_t / (sigma_c + sigma_t),

so that uniaxial compression yields at exactly sigma_c and uniaxial tension at sigma_t; with
sigma_c = sigma_t it is von Mises. Flow is deviatoric (non-associated, von Mises plastic
potential: no plastic volume change), which keeps the return mapping closed-form:
Delta gamma = f_trial / (3 G + H), the deviatoric stress scaled back radially, the pressure
kept. Hardening is linear in the equivalent plastic strain gamma, k = k0 + H gamma, with H set
so that the post-yield tangent in uniaxial compression is ``post_yield_fraction`` x E
(0: perfectly plastic). Trial states under hydrostatic tension beyond the cone's apex return to
the apex (deviatoric stress zero, pressure capped at k / beta). PMMA stays elastic.

Loading: the top platen moves in increments to the final apparent strain. Up to the first
yield (found exactly from the linear solution) the response is the scaled linear solution;
beyond it each increment starts from the elastic predictor and iterates
``K_sec du = -R(u)`` on the free DOFs, with R the internal force of the return-mapped stresses
(so the converged state is the exact elastic-plastic equilibrium, whatever the iteration
matrix) and K_sec the voxel stiffness with each element's shear modulus scaled by the mean
ratio of returned to trial deviatoric stress of its points and its first Lame constant kept
(the radial-return tangent without its n x n term: exact for deviatoric directions normal to
the flow, stiffer along it, never softer in bulk - scaling E alone would soften the bulk
modulus and overshoot). It is symmetric positive definite, so the matrix-free operator (two
products per cell instead of one) and its geometric multigrid hierarchy serve it; the
hierarchy is built once and rebuilt only when the CG iterations grow. A secant line search
along each correction makes up for its stiffness along the flow direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from boneqct.fe.hexahedron import strain_matrix
from boneqct.fe.lattice import lattice_operator, lattice_preconditioner, to_grid
from boneqct.fe.materials import POISSON_RATIO
from boneqct.fe.operator import limited_blas
from boneqct.fe.solver import solve

#: Gauss points of the 2x2x2 rule on the unit cube (weight 1/8 each), as in K_REF.
GAUSS_1D = 0.5 + np.array([-1.0, 1.0]) / (2.0 * np.sqrt(3.0))
GAUSS_POINTS = np.array([(x, y, z) for z in GAUSS_1D for y in GAUSS_1D for x in GAUSS_1D])
#: Equilibrium iterations of an increment stop when the free-DOF residual force is below this
#: fraction of the internal force on the prescribed DOFs (the reactions). Measured on the
#: phantom L2 at 2 mm: the strength moved by 0.03% from 1e-3 to 3e-3 and by 0.2% at 1e-2.
RESIDUAL_RTOL = 3e-3
#: Relative tolerance of the CG solve of each correction (inexact Newton: the residual check
#: above decides convergence, so the corrections need not be exact). On the phantom L2 at 2 mm,
#: 1e-1 instead of 1e-2 halved the CG iterations (70 -> 39) with the same equilibrium
#: iterations and strength within 0.03%.
CORRECTION_RTOL = 1e-1
MAX_ITERATIONS = 40
#: Largest factor the line search may extend a correction by.
MAX_STEP_SCALE = 4.0
#: Secant ratio floor: an element's iteration shear modulus is never below this fraction of
#: its elastic one.
MIN_SECANT_RATIO = 0.01
#: Multigrid hierarchy rebuilt when a correction takes more than this many CG iterations more
#: than the first one made with it.
REBUILD_AFTER_EXTRA_ITERATIONS = 8

_NORMAL = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
_SHEAR_WEIGHT = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])


@dataclass
class PlasticState:
    """Committed state of every integration point, component-major: plastic strain (6, 8,
    n_el) (engineering shear) and equivalent plastic strain gamma (8, n_el)."""

    plastic_strain: np.ndarray
    gamma: np.ndarray


@dataclass
class Surface:
    """Per-element yield surface parameters (see the module docstring): beta, k0 (MPa),
    hardening H (MPa), shear modulus G (MPa), bulk modulus (MPa), modulus E (MPa), plastic
    (bool: bone)."""

    beta: np.ndarray
    k0_mpa: np.ndarray
    hardening_mpa: np.ndarray
    shear_mpa: np.ndarray
    bulk_mpa: np.ndarray
    modulus_mpa: np.ndarray
    plastic: np.ndarray

    @classmethod
    def of_model(cls, model) -> Surface:
        sc, st = model.yield_compression_mpa, model.yield_tension_mpa
        plastic = model.is_bone & np.isfinite(sc) & np.isfinite(st)
        sc = np.where(plastic, sc, 1.0)
        st = np.where(plastic, st, 1.0)
        beta = 3.0 * (sc - st) / (sc + st)
        k0 = np.where(plastic, 2.0 * sc * st / (sc + st), np.inf)
        eta = np.clip(model.post_yield_fraction, 0.0, 0.99)
        e = model.modulus_mpa
        hardening = (1.0 - beta / 3.0) * eta * e / (1.0 - eta)
        return cls(beta, k0, hardening, e / (2.0 * (1.0 + POISSON_RATIO)),
                   e / (3.0 * (1.0 - 2.0 * POISSON_RATIO)), e, plastic)


@dataclass
class Increment:
    """Result of the return mapping at a displacement: stresses (6, 8, n_el), updated plastic
    state, per-element secant ratio and whether any point of the element is plastic."""

    stress_mpa: np.ndarray
    state: PlasticState
    secant_ratio: np.ndarray
    yielding: np.ndarray


class ElementKinematics:
    """Strains at the integration points and internal forces of a voxel model; point arrays
    are component-major, (6, 8, n_el), so that per-element parameters broadcast along the last
    axis and each component is one contiguous vector."""

    def __init__(self, model):
        h = model.mesh.element_mm
        b = np.stack([strain_matrix(p, h) for p in GAUSS_POINTS])  # (8 points, 6, 24)
        self.b_all = b.transpose(1, 0, 2).reshape(6 * len(GAUSS_POINTS), 24)  # rows (c, point)
        self.volume_weight = h ** 3 / len(GAUSS_POINTS)
        nodes = model.assembler.element_nodes
        self.n_el = len(nodes)
        self.dofs = np.ascontiguousarray(
            (3 * nodes[:, :, None] + np.arange(3)).reshape(self.n_el, 24).T)  # (24, n_el)
        self.n_dof = model.n_dof

    def strains(self, displacement_mm: np.ndarray) -> np.ndarray:
        """(6, 8, n_el) strains (engineering shear) at the Gauss points."""
        return (self.b_all @ displacement_mm[self.dofs]).reshape(6, len(GAUSS_POINTS), -1)

    def internal_force(self, stress_mpa: np.ndarray) -> np.ndarray:
        """(n_dof,) nodal forces (N) of the integration-point stresses (6, 8, n_el)."""
        f_el = self.b_all.T @ stress_mpa.reshape(len(self.b_all), -1)
        f_el *= self.volume_weight
        return np.bincount(self.dofs.ravel(), weights=f_el.ravel(), minlength=self.n_dof)


def _q_and_p(stress: np.ndarray):
    p = stress[..., :3].mean(axis=-1)
    dev = stress - p[..., None] * _NORMAL
    q = np.sqrt(1.5 * np.einsum("...i,...i->...", dev * _SHEAR_WEIGHT, dev))
    return q, p, dev


def yield_function(surface: Surface, stress_mpa: np.ndarray,
                   gamma: np.ndarray | float = 0.0) -> np.ndarray:
    """f = q + beta p - k(gamma) (MPa) of stresses (n_el, ..., 6); > 0 outside the surface."""
    q, p, _ = _q_and_p(stress_mpa)
    shape = (-1,) + (1,) * (q.ndim - 1)
    k = surface.k0_mpa.reshape(shape) + surface.hardening_mpa.reshape(shape) * gamma
    return q + surface.beta.reshape(shape) * p - k


def _elastic_trial(surface: Surface, elastic_strain: np.ndarray):
    """Deviatoric strain (in place of ``elastic_strain``, (6, 8, n_el)), pressure p = K tr(e)
    and q = sqrt(3 J2) of the elastic stress (MPa) of an elastic strain: isotropic, so
    s = 2 G dev(e) (shear: G gamma) and q = G sqrt(6 |dev(e)_normal|^2 + 3 |gamma|^2)."""
    dev = elastic_strain
    volumetric = dev[0] + dev[1] + dev[2]
    p = surface.bulk_mpa * volumetric
    dev[:3] -= volumetric / 3.0
    squares = dev * dev
    q = surface.shear_mpa * np.sqrt(6.0 * (squares[0] + squares[1] + squares[2])
                                    + 3.0 * (squares[3] + squares[4] + squares[5]))
    return dev, p, q


def _stress(surface: Surface, dev: np.ndarray, p: np.ndarray, scale=None) -> np.ndarray:
    """(6, 8, n_el) stresses (MPa) of deviatoric strains ``dev`` scaled by ``scale`` (radial
    return) and pressure ``p``."""
    g = surface.shear_mpa if scale is None else surface.shear_mpa * scale
    stress = dev * g
    stress[:3] *= 2.0
    stress[:3] += p
    return stress


def return_map(surface: Surface, strain: np.ndarray, committed: PlasticState) -> Increment:
    """Stresses of total strains ``strain`` (6, 8, n_el) from the committed plastic state."""
    dev, p, q = _elastic_trial(surface, strain - committed.plastic_strain)
    hardening = surface.hardening_mpa
    k = surface.k0_mpa + hardening * committed.gamma
    f = q + surface.beta * p - k
    yielding = f > 1e-12 * np.maximum(k, 1.0)
    if not yielding.any():
        n_el = strain.shape[-1]
        return Increment(_stress(surface, dev, p), committed, np.ones(n_el),
                         np.zeros(n_el, bool))
    g = surface.shear_mpa
    delta = np.where(yielding, f / (3.0 * g + hardening), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(yielding, 1.0 - 3.0 * g * delta / q, 1.0)
    apex = yielding & (scale < 0.0)
    p_new = p
    if apex.any():
        scale = np.where(apex, 0.0, scale)
        delta = np.where(apex, q / (3.0 * g), delta)
        beta = np.broadcast_to(surface.beta, p.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            p_apex = np.where(beta > 0, (k + hardening * delta) / beta, p)
        p_new = np.where(apex, np.minimum(p, p_apex), p)
    stress = _stress(surface, dev, p_new, scale)
    # plastic strain: the part of the elastic trial strain the return removed (deviatoric
    # (1 - scale) dev, volumetric only at the apex); exactly the committed one elsewhere
    plastic_strain = dev * (1.0 - scale)
    plastic_strain += committed.plastic_strain
    if p_new is not p:
        plastic_strain[:3] += (p - p_new) / (3.0 * surface.bulk_mpa)
    state = PlasticState(plastic_strain, committed.gamma + delta)
    ratio = np.maximum(scale.mean(axis=0), MIN_SECANT_RATIO)
    return Increment(stress, state, ratio, yielding.any(axis=0))


def first_yield_factor(kin: ElementKinematics, surface: Surface,
                       unit_displacement_mm: np.ndarray) -> float:
    """Smallest factor of an elastic displacement field at which a bone point reaches f = 0
    (inf when none does)."""
    _, p, q = _elastic_trial(surface, kin.strains(unit_displacement_mm))
    drive = q + surface.beta * p
    with np.errstate(divide="ignore"):
        factor = np.where((drive > 0) & surface.plastic, surface.k0_mpa / drive, np.inf)
    return float(factor.min())


class SecantSolver:
    """Solves ``K_sec du = rhs`` on the lattice (elastic lambda part, shear part scaled per
    element), reusing one multigrid hierarchy while the CG iterations stay close to those of
    its first solve."""

    def __init__(self, model, preconditioner: str, apply_m=None):
        self.model = model
        self.preconditioner = preconditioner
        self.apply_m = apply_m
        self.base_iterations = None
        self.reports = []

    def correction(self, shear_modulus_mpa: np.ndarray, residual: np.ndarray) -> np.ndarray:
        """The correction for a residual force (n_dof), with each element's shear part scaled
        to ``shear_modulus_mpa`` (its lambda part keeps the elastic modulus)."""
        model = self.model
        modulus_mpa = model.modulus_mpa
        op = lattice_operator(model, modulus_mpa, shear_modulus_mpa=shear_modulus_mpa)
        rhs = to_grid(model, np.where(model.fixed, 0.0, -residual)).ravel()
        if self.preconditioner == "gmg" and (
                self.apply_m is None or (self.reports and self.reports[-1].iterations
                                         > self.base_iterations
                                         + REBUILD_AFTER_EXTRA_ITERATIONS)):
            self.apply_m = lattice_preconditioner(model, modulus_mpa, shear_modulus_mpa)
            self.base_iterations = None
        grid, report = solve(op, rhs, preconditioner=self.preconditioner,
                             rtol=CORRECTION_RTOL, apply_m=self.apply_m)
        if self.base_iterations is None:
            self.base_iterations = report.iterations
        self.reports.append(report)
        return grid.reshape(3, -1)[:, model.assembler.node_flat].T.ravel()


@limited_blas
def elastic_plastic_curve(model, linear, *, final_strain: float, steps: int,
                          preconditioner: str = "gmg", apply_m=None,
                          residual_rtol: float = RESIDUAL_RTOL):
    """Load-displacement curve of the elastic-plastic model to ``final_strain`` apparent strain.

    Args:
        model: ``boneqct.fe.analysis.Model`` (moduli, yield stresses, post-yield fractions).
        linear: the linear ``Solution`` of the same model (any applied displacement).
        final_strain: final apparent strain (e.g. 0.02).
        steps: equal displacement increments to it.
        preconditioner: of the correction solves; ``apply_m`` a ready one for the elastic
            moduli (e.g. the linear solve's multigrid hierarchy), reused while it serves.
        residual_rtol: equilibrium tolerance of each increment (see ``RESIDUAL_RTOL``).

    Returns:
        (curve, state, converged): curve points {"apparent_strain", "displacement_mm",
        "force_n", "yielded_fraction", "iterations"}; ``state`` a dict with the final
        displacement_mm, element-mean stress_mpa, yielded (bool per element), the solver
        reports and first_yield_mm; converged is False when an increment's equilibrium
        iterations did not reach ``residual_rtol`` (the correction solves are loose on
        purpose: only equilibrium decides).
    """
    kin = ElementKinematics(model)
    surface = Surface.of_model(model)
    height = model.mesh.bone_height_mm
    unit = linear.displacement_mm / linear.applied_mm
    unit_force = linear.reaction_n / linear.applied_mm
    first_yield_mm = first_yield_factor(kin, surface, unit)
    n_bone = max(int(model.is_bone.sum()), 1)
    targets = [final_strain * height * i / steps for i in range(1, steps + 1)]
    if first_yield_mm < targets[-1]:
        targets = sorted({*targets, first_yield_mm})
    state = PlasticState(np.zeros((6, len(GAUSS_POINTS), kin.n_el)),
                         np.zeros((len(GAUSS_POINTS), kin.n_el)))
    top = model.top_z_dofs
    solver = SecantSolver(model, preconditioner, apply_m)
    curve = [_point(0.0, height, 0.0, 0.0, 0)]
    u, previous = np.zeros_like(unit), 0.0
    converged = True
    yielded_ever = np.zeros(len(model.modulus_mpa), bool)
    last_increment = None  # displacement increment per mm of platen travel, last increment
    for target in targets:
        # Predictor: the last plastic increment's direction once plasticity started (a better
        # guess of the next one), else the elastic solution (exact below first yield).
        direction = unit if last_increment is None else last_increment
        u_start = u
        u = u + direction * (target - previous)
        iterations = 0
        if target <= first_yield_mm:
            force = unit_force * target
            step = return_map(surface, kin.strains(u), state)
        else:
            step, internal = _evaluate(kin, surface, state, u)
            while True:
                residual = np.where(model.fixed, 0.0, internal)
                scale = np.linalg.norm(internal[model.fixed])
                if np.linalg.norm(residual) <= residual_rtol * max(scale, 1e-30):
                    break
                if iterations == MAX_ITERATIONS:
                    converged = False
                    break
                delta = solver.correction(model.modulus_mpa * step.secant_ratio, residual)
                u, step, internal = _line_search(kin, surface, state, model.fixed, u, delta,
                                                 residual)
                iterations += 1
            force = -float(internal[top].sum())
            last_increment = (u - u_start) / (target - previous)
        previous = target
        state = step.state
        yielded_ever |= (state.gamma > 0).any(axis=0)
        curve.append(_point(target, height, force,
                            float((yielded_ever & model.is_bone).sum() / n_bone), iterations))
    final = {"displacement_mm": u, "stress_mpa": step.stress_mpa.mean(axis=1).T,
             "yielded": yielded_ever & model.is_bone, "reports": solver.reports,
             "first_yield_mm": first_yield_mm}
    return curve, final, bool(converged)


def _evaluate(kin, surface, state, u):
    """The return-mapped increment at displacement ``u`` and its internal force (n_dof)."""
    step = return_map(surface, kin.strains(u), state)
    return step, kin.internal_force(step.stress_mpa)


def _line_search(kin, surface, state, fixed, u, delta, residual):
    """The displacement ``u`` corrected by ``delta`` scaled to where the residual's component
    along it vanishes (secant step on g(a) = delta . R(u + a delta), a in [1, MAX_STEP_SCALE]:
    the secant matrix is stiffer than the tangent of yielding points, so plain corrections fall
    short), with its increment and internal force.

    Returns:
        (u, step, internal): the full step's evaluation is reused when the step is not
        extended.
    """
    g0 = float(delta @ residual)
    full = u + delta
    step, internal = _evaluate(kin, surface, state, full)
    g1 = float(delta @ np.where(fixed, 0.0, internal))
    # the root lies within the full step (or the secant extrapolates backwards): take it
    factor = 1.0 if g0 * g1 <= 0 or g0 == g1 else float(np.clip(g0 / (g0 - g1), 1.0,
                                                                 MAX_STEP_SCALE))
    if factor == 1.0:
        return full, step, internal
    u = u + delta * factor
    return (u, *_evaluate(kin, surface, state, u))


def _point(displacement_mm: float, height_mm: float, force_n: float, yielded: float,
           iterations: int) -> dict:
    return {"apparent_strain": displacement_mm / height_mm, "displacement_mm": displacement_mm,
            "force_n": force_n, "yielded_fraction": yielded, "iterations": iterations}

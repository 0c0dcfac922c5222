"""Proximal femur strength in a sideways fall by voxel finite elements (``boneqct fe-hip``).

Femur: the hip module's extraction (``boneqct.hip.pipeline.extract_femur``: the filled femur
cut from the pelvis at the joint space, its head sphere, neck and shaft axes), cut
``shaft_cut_below_head_mm`` below the head centre along the shaft.

Configuration (the sideways fall of Courtney et al. 1995 J Bone Joint Surg Am 77:387, used by
VirtuOst, Keaveny et al. 2010 JBMR 25:1886, Kopperdahl et al. 2014 JBMR 29:570: the shaft
10 degrees from the ground, the femur 15 degrees internally rotated, the load on the head, the
greater trochanter on the ground; taken from those papers' methods summaries, not checked
against their full text here). In the femur's own frame (shaft s superior, medial m
perpendicular to the shaft in the plane of the neck, anterior a) the load on the head points

    d = cos 10 (-cos 15 m - sin 15 a) + sin 10 s

(lateral, turned posteriorly by the internal rotation, tilted along the shaft by the
adduction): the trochanter hits the ground on its posterolateral aspect. The model is meshed
in a frame whose third axis is -d (``boneqct.fe.mesh``'s resampling and partial-volume rule)
with PMMA cast onto the head (a cap) and the greater trochanter (a pad), as VirtuOst embeds
them, each ending in a flat face across d (``mesh_vertebral_body``'s PMMA layers, the head and
the trochanter being the femur's extremes along d). Boundary conditions (our choices; the
papers' fixtures are not reproduced): the cap's face is displaced along d, free across it (a
frictionless platen); the pad's face is held along d, free across it (frictionless ground);
the nodes of the most distal element layer of the cut shaft are held across d and free along
it, which removes the remaining rigid motions.

Stiffness: the reaction over the head displacement (N/mm). Strength: the Pistoia criterion
(``boneqct.fe.analysis.pistoia_strength_n``: 2% of the bone volume beyond 0.7% effective
strain; Pistoia et al. 2002 Bone 30:842, derived at the distal radius). The hip fragile-
strength thresholds (3000 N women, 3500 N men; Kopperdahl et al. 2014 JBMR 29:570, ISCD 2015)
belong to VirtuOst's nonlinear femoral strength; they are not applied to this linear estimate
and the result says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from boneqct.calibration.fit import MATERIAL_UNSTATED, Calibration
from boneqct.errors import FEError
from boneqct.fe.analysis import (
    PISTOIA_STRAIN,
    PISTOIA_VOLUME_FRACTION,
    Model,
    Solution,
    build_model,
    element_fields,
    pistoia_strength_n,
    solve_displacement,
)
from boneqct.fe.materials import LAWS, POISSON_RATIO
from boneqct.fe.mesh import DEFAULT_PMMA_MM, PMMA_REACH_MM, VoxelMesh, mesh_vertebral_body
from boneqct.fe.options import FEOptions
from boneqct.fe.solver import DEFAULT_RTOL, PRECONDITIONERS
from boneqct.hip.frame import FemurFrame
from boneqct.hip.options import (
    DEFAULT_BONE_THRESHOLD_MG_CM3,
    DISTAL_BORDER_BELOW_HEAD_MM,
    FEMUR_LABELS,
)
from boneqct.options import check_options, option, options_to_dict
from boneqct.resources import check_fe_model, fe_model_estimate
from boneqct.volume import Volume

#: Sideways fall: shaft angle to the ground (adduction) and internal rotation (degrees);
#: Courtney et al. 1995, VirtuOst (Keaveny 2010, Kopperdahl 2014).
FALL_ADDUCTION_DEG, FALL_INTERNAL_ROTATION_DEG = 10.0, 15.0
#: Default shaft length kept below the head centre (mm; our choice, within the hip scan).
SHAFT_CUT_BELOW_HEAD_MM = 100.0
#: Head displacement of the linear solve (mm); the model is linear, so the stiffness and the
#: Pistoia load do not depend on it.
APPLIED_MM = 1.0
#: Preconditioner: the femur fills a small part of its lattice in the tilted fall frame, where
#: the geometric multigrid needed about twice the iterations of pyamg and, matrix-free over the
#: whole lattice, twice its time (1.5 mm phantom femur, 157k DOF, one thread: 77 vs 40
#: iterations, 56 vs 27 s; Testing/benchmarks/bench_fe_femur.py).
PRECONDITIONER = "amg"
#: Hip fragile bone strength (N), VirtuOst femoral strength in this fall configuration with its
#: nonlinear analysis (Kopperdahl et al. 2014 JBMR 29:570; ISCD 2015 official positions).
HIP_FRAGILE_STRENGTH_N = {"F": 3000.0, "M": 3500.0}
#: Why the thresholds are not applied to this analysis.
FRAGILE_ABSENT_REASON = (
    "The hip fragile-strength thresholds (3000 N women, 3500 N men; Kopperdahl et al. 2014) "
    "were derived with VirtuOst's nonlinear femoral strength; this analysis gives a linear "
    "(Pistoia criterion) strength with its own boundary conditions, so the thresholds do not "
    "apply to it.")
CRITERION = "pistoia"
CRITERION_CITATION = ("Pistoia et al. 2002 Bone 30:842: failure when "
                      f"{PISTOIA_VOLUME_FRACTION:.0%} of the bone volume exceeds "
                      f"{PISTOIA_STRAIN:.1%} effective strain (derived at the distal radius)")


@dataclass(frozen=True)
class FemurFEOptions:
    """How the femur is extracted, modelled and solved (see each field's help)."""

    element_mm: float = option(1.5, "element edge (keep it fixed when comparing exams)",
                               unit="mm", low=0.5, high=5.0)
    law: str = option(FEOptions().law, "density-modulus law", choices=tuple(sorted(LAWS)))
    shaft_cut_below_head_mm: float = option(
        SHAFT_CUT_BELOW_HEAD_MM, "shaft kept below the head centre (the distal constraint sits "
        "at this cut)", unit="mm", low=60.0, high=200.0)
    pmma_mm: float = option(DEFAULT_PMMA_MM, "PMMA cap (head) and pad (trochanter) beyond "
                            "the bone's extreme", unit="mm", low=1.0, high=20.0)
    preconditioner: str = option(PRECONDITIONER, "CG preconditioner (amg: smoothed "
                                 "aggregation; gmg: geometric multigrid; jacobi)",
                                 choices=PRECONDITIONERS)
    label_scheme: str = option("totalsegmentator", "numbering of a --labels file",
                               choices=tuple(FEMUR_LABELS))
    bone_threshold_mg_cm3: float = option(
        DEFAULT_BONE_THRESHOLD_MG_CM3, "BMD threshold of the femur extraction (as hip)",
        unit="mg/cm3", low=50.0, high=1000.0, metavar="MG_CM3")

    def __post_init__(self):
        check_options(self)


@dataclass
class FemurFallResult:
    """Sideways-fall stiffness and strength of one femur (units in the names; ``to_dict`` is
    fe_hip.json). ``model`` and ``solution`` (the state at the strength load) are not
    serialised: a result read back with ``from_dict`` writes the JSON and the report."""

    side: str
    law: str
    density_material: str
    element_mm: float
    n_elements: int
    n_dof: int
    stiffness_n_mm: float
    strength_n: float
    load_direction_ras: list[float]
    boundary_nodes: dict
    frame: dict
    sex: str | None
    solver: dict
    warnings: list[str] = field(default_factory=list)
    options: dict | None = None
    #: effective strain on the mesh plane through the head centre holding the load axis and
    #: the shaft: {"element_mm", "values": rows along the load axis (trochanter first) of
    #: columns across it, None outside the femur}
    strain_image: dict | None = None
    model: Model | None = field(default=None, repr=False)
    solution: Solution | None = field(default=None, repr=False)

    @property
    def criterion(self) -> str:
        """The strength criterion (as ``FEResult.criterion``): always Pistoia here."""
        return CRITERION

    def to_dict(self) -> dict:
        """The JSON document written as fe_hip.json."""
        return {
            "side": self.side, "configuration": configuration(),
            "law": self.law, "law_citation": LAWS[self.law].citation,
            "density_material": self.density_material, "criterion": CRITERION,
            "criterion_citation": CRITERION_CITATION, "element_mm": self.element_mm,
            "n_elements": self.n_elements, "n_dof": self.n_dof,
            "stiffness_n_mm": self.stiffness_n_mm, "strength_n": self.strength_n,
            "sex": self.sex, "fragile": None, "fragile_threshold_n": None,
            "fragile_absent_reason": FRAGILE_ABSENT_REASON,
            "load_direction_ras": self.load_direction_ras, "boundary_nodes": self.boundary_nodes,
            "frame": self.frame, "poisson_ratio": POISSON_RATIO, "solver": self.solver,
            "warnings": self.warnings, "options": self.options,
            "strain_image": self.strain_image,
        }

    @classmethod
    def from_dict(cls, document: Mapping) -> FemurFallResult:
        """The result of an fe_hip.json document (``to_dict``), without the solved model."""
        return cls(
            side=document["side"], law=document["law"],
            density_material=document["density_material"], element_mm=document["element_mm"],
            n_elements=document["n_elements"], n_dof=document["n_dof"],
            stiffness_n_mm=document["stiffness_n_mm"], strength_n=document["strength_n"],
            load_direction_ras=list(document["load_direction_ras"]),
            boundary_nodes=dict(document["boundary_nodes"]), frame=dict(document["frame"]),
            sex=document["sex"], solver=dict(document["solver"]),
            warnings=list(document["warnings"]), options=document.get("options"),
            strain_image=document.get("strain_image"))


def configuration() -> dict:
    """The loading configuration in words and numbers (fe_hip.json's ``configuration``)."""
    return {
        "name": "sideways fall",
        "adduction_deg": FALL_ADDUCTION_DEG, "internal_rotation_deg": FALL_INTERNAL_ROTATION_DEG,
        "source": "Courtney et al. 1995 J Bone Joint Surg Am 77:387; VirtuOst: Keaveny et al. "
                  "2010 JBMR 25:1886, Kopperdahl et al. 2014 JBMR 29:570 (angles from the "
                  "methods summaries, not checked against the full text)",
        "load": "flat face of the PMMA cap on the head (cast on the bone within "
                f"{PMMA_REACH_MM:g} mm of its extreme) displaced along the fall direction, "
                "free across it",
        "constraints": "flat face of the PMMA pad on the greater trochanter held along the fall "
                       "direction, free across it; nodes of the most distal element layer of "
                       "the cut shaft held across it, free along it",
        "not_modelled": "contact and friction at the cap and the pad, the test fixtures' "
                        "distal constraint",
    }


def fall_direction(frame: FemurFrame, side: str) -> np.ndarray:
    """Unit vector (RAS) of the load on the head in the sideways fall (module docstring)."""
    s = np.asarray(frame.shaft_axis_ras, float)
    to_head = -np.asarray(frame.neck_axis_ras, float)
    m = to_head - (to_head @ s) * s
    m /= np.linalg.norm(m)
    a = np.cross(m, s) if side == "right" else np.cross(s, m)  # anterior
    add, rot = np.radians(FALL_ADDUCTION_DEG), np.radians(FALL_INTERNAL_ROTATION_DEG)
    lateral_turned = -np.cos(rot) * m - np.sin(rot) * a
    return np.cos(add) * lateral_turned + np.sin(add) * s


def fall_axes(frame: FemurFrame, side: str) -> tuple[np.ndarray, np.ndarray]:
    """The mesh frame's third axis (against the load, RAS) and second axis (the femur's
    anterior direction made orthogonal to it)."""
    up = -fall_direction(frame, side)
    s = np.asarray(frame.shaft_axis_ras, float)
    anterior = np.cross(up, s) if side == "right" else np.cross(s, up)
    return up, anterior / np.linalg.norm(anterior)


def depth_below_head_mm(points_ras: np.ndarray, frame: FemurFrame) -> np.ndarray:
    """Distance (mm) of RAS points below the head centre along the shaft axis."""
    return (np.asarray(frame.head_center_ras_mm) - points_ras) @ np.asarray(frame.shaft_axis_ras)


def mesh_femur(bmd: Volume, mask_kji: np.ndarray, frame: FemurFrame, side: str, *,
               density_material: str, element_mm: float, shaft_cut_below_head_mm: float,
               pmma_mm: float) -> VoxelMesh:
    """Voxel mesh of the femur down to the shaft cut in the fall frame (third axis against the
    load, second the femur's anterior direction), with a PMMA cap on the head and a PMMA pad on
    the greater trochanter: ``boneqct.fe.mesh.mesh_vertebral_body``'s resampling,
    partial-volume rule and PMMA casting (columns whose bone reaches within
    ``PMMA_REACH_MM`` of the extreme plane, filled to a flat face ``pmma_mm`` beyond it)."""
    ijk = np.argwhere(mask_kji)[:, ::-1]
    depth = depth_below_head_mm(bmd.ijk_to_ras_points(ijk), frame)
    if depth.max() < shaft_cut_below_head_mm:
        raise FEError(f"The femur in the scan reaches {depth.max():.0f} mm below the head centre; "
                      f"the fall model cuts the shaft at {shaft_cut_below_head_mm:g} mm. Use a "
                      "scan reaching further down, or a shorter --shaft-cut-below-head-mm.")
    mask = np.zeros(mask_kji.shape, bool)
    kept = ijk[depth <= shaft_cut_below_head_mm]
    mask[kept[:, 2], kept[:, 1], kept[:, 0]] = True
    up, anterior = fall_axes(frame, side)
    return mesh_vertebral_body(bmd, mask, up, anterior, density_material=density_material,
                               element_mm=element_mm, pmma_mm=pmma_mm)


def fall_model(mesh: VoxelMesh, frame: FemurFrame, law: str) -> tuple[Model, dict]:
    """The mesh's materials (``build_model``) with the fall's boundary conditions (module
    docstring); also the number of nodes in each boundary set.

    Raises:
        FEError: the head cap or the trochanter pad holds bone far from the head or the
            proximal femur (the femur's frame or extraction is wrong).
    """
    model = build_model(mesh, law)
    node_kji = model.assembler.node_kji()
    node_ras = mesh.node_ras(node_kji)
    nk = mesh.material_kji.shape[0]
    head = np.flatnonzero(node_kji[:, 0] == nk)
    pad = np.flatnonzero(node_kji[:, 0] == 0)
    bone_nodes = np.unique(model.assembler.element_nodes[model.is_bone])
    depth = depth_below_head_mm(node_ras, frame)
    distal = bone_nodes[depth[bone_nodes] >= depth[bone_nodes].max() - mesh.element_mm]
    if np.linalg.norm(node_ras[head] - frame.head_center_ras_mm, axis=1).max() \
            > 2.0 * frame.head_radius_mm:
        raise FEError("The femoral head is not the femur's extreme against the fall direction; "
                      "the femur's frame looks wrong. Check the extraction (seed, label map).")
    if depth[pad].max() > 0.75 * depth.max():
        raise FEError("The greater trochanter is not the femur's extreme in the fall direction; "
                      "the femur's frame looks wrong. Check the extraction (seed, label map).")
    fixed = np.zeros((model.assembler.n_nodes, 3), bool)
    fixed[head, 2] = fixed[pad, 2] = True
    fixed[distal, :2] = True
    sets = {"head": int(len(head)), "trochanter": int(len(pad)), "distal": int(len(distal))}
    return replace(model, fixed=fixed.ravel(), top_z_dofs=3 * head + 2), sets


def strain_plane(model: Model, solution: Solution, frame: FemurFrame) -> dict:
    """Effective strain on the mesh plane (constant j) through the head centre: the plane
    holding the load axis and the femur's medial-lateral direction."""
    mesh = model.mesh
    values = np.full(mesh.material_kji.shape, np.nan)
    values[mesh.elements_kji] = element_fields(model, solution)["effective_strain"]
    ras_to_node = np.linalg.inv(mesh.node_ijk_to_ras)
    j = int(np.clip((ras_to_node[:3, :3] @ frame.head_center_ras_mm + ras_to_node[:3, 3])[1],
                    0, values.shape[1] - 1))
    plane = values[:, j, :]
    return {"element_mm": float(mesh.element_mm),
            "values": [[None if np.isnan(v) else float(f"{v:.4g}") for v in row]
                       for row in plane]}


def analyze_femur_fall(volume_hu: Volume, calibration: Calibration | None,
                       options: FemurFEOptions | None = None, *, side: str, seed_ras_mm=None,
                       labels: Volume | None = None, sex: str | None = None,
                       rtol: float = DEFAULT_RTOL) -> FemurFallResult:
    """Sideways-fall stiffness (N/mm) and strength (N) of one proximal femur of a CT.

    Args:
        volume_hu: CT in HU covering the femur from above the head to
            ``options.shaft_cut_below_head_mm`` below its centre.
        calibration: HU -> density line with its material stated.
        options: ``FemurFEOptions`` (None: the defaults).
        side: "left" or "right".
        seed_ras_mm: optional point in the femoral head or neck (RAS mm); or
        labels: optional label map with the femurs (``options.label_scheme`` numbering).
        sex: "F" or "M", recorded (the hip thresholds do not apply; module docstring).

    Raises:
        FEError: no calibration or its material unstated, scan too short, head not found;
        ResourceError: the model would exceed the memory limit; the hip extraction's errors
        (femur not found, implant, truncated or fused femur).
    """
    from boneqct.hip.pipeline import _frame_warnings, extract_femur

    options = options or FemurFEOptions()
    if calibration is None or calibration.material == MATERIAL_UNSTATED:
        raise FEError("The femur finite-element model needs calibrated density with its "
                      "material: give --phantom, --calibration or --slope/--intercept with "
                      "--material K2HPO4|HA.")
    if side not in ("left", "right"):
        raise FEError(f"Unknown side '{side}'; give left or right.")
    mask, frame, volume_bmd = extract_femur(
        volume_hu, calibration, side, seed_ras_mm, labels, options.label_scheme,
        options.bone_threshold_mg_cm3, DISTAL_BORDER_BELOW_HEAD_MM)
    up, anterior = fall_axes(frame, side)
    check_fe_model(fe_model_estimate(mask, volume_bmd.ijk_to_ras, up, anterior,
                                     options.element_mm, options.pmma_mm), options.element_mm)
    mesh = mesh_femur(volume_bmd, mask, frame, side, density_material=calibration.material,
                      element_mm=options.element_mm,
                      shaft_cut_below_head_mm=options.shaft_cut_below_head_mm,
                      pmma_mm=options.pmma_mm)
    model, boundary = fall_model(mesh, frame, options.law)
    linear = solve_displacement(model, model.modulus_mpa, APPLIED_MM,
                                preconditioner=options.preconditioner, rtol=rtol)
    strength = pistoia_strength_n(model, linear)
    scale = strength / linear.reaction_n
    at_strength = Solution(linear.displacement_mm * scale, linear.applied_mm * scale, strength,
                           linear.modulus_mpa, linear.reports)
    report = linear.reports[0]
    warnings = _frame_warnings(frame)  # the hip extraction's: short shaft fit, head not round
    if not report.converged:
        warnings.append("The finite-element solution did not converge to the requested "
                        "tolerance; the stiffness and strength are unreliable.")
    return FemurFallResult(
        side=side, law=options.law, density_material=calibration.material,
        element_mm=float(options.element_mm), n_elements=mesh.n_elements, n_dof=model.n_dof,
        stiffness_n_mm=float(linear.reaction_n / linear.applied_mm), strength_n=float(strength),
        load_direction_ras=[float(-v) for v in up], boundary_nodes=boundary,
        frame=frame.to_dict(), sex=sex,
        solver={"preconditioner": options.preconditioner, "tolerance": rtol,
                "converged": bool(report.converged), "iterations": int(report.iterations),
                "relative_residual": float(report.relative_residual)},
        warnings=warnings, options=options_to_dict(options),
        strain_image=strain_plane(model, at_strength, frame), model=model,
        solution=at_strength)

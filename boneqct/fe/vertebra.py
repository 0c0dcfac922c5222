"""Vertebral strength of one level: mesh, solve, criterion, fragile flag; outputs; follow-up.

``analyze_vertebra`` runs the whole chain on a calibrated density volume and a delineated
``VertebralBody`` (``boneqct.fe.pipeline.analyze_fe`` is the entry point from a CT);
``write_fe_outputs`` writes fe.json, fe.vtu and fe_report.pdf atomically; ``compare_fe``
compares two exams' fe.json (same element size, law and criterion enforced).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from boneqct.errors import FEError
from boneqct.fe.analysis import (
    DEFAULT_PRECONDITIONER,
    Model,
    Solution,
    build_model,
    element_fields,
    nonlinear_curve,
    pistoia_strength_n,
    solve_displacement,
)
from boneqct.fe.criteria import CRITERIA, LINEAR_RULE_STRAIN, fragile_assessment
from boneqct.fe.export import write_fe_files
from boneqct.fe.lattice import lattice_preconditioner
from boneqct.fe.materials import (
    LAWS,
    MIN_MODULUS_MPA,
    PMMA_MODULUS_MPA,
    POISSON_RATIO,
    material_record,
)
from boneqct.fe.mesh import MIN_MASK_FRACTION, SUBSAMPLES, mesh_vertebral_body
from boneqct.fe.options import FEOptions
from boneqct.fe.plasticity import CORRECTION_RTOL, RESIDUAL_RTOL
from boneqct.fe.report import write_fe_report
from boneqct.fe.solver import DEFAULT_RTOL
from boneqct.options import options_to_dict
from boneqct.volume import Volume

#: Significant digits kept of the mid-sagittal strain image in fe.json (the report prints it
#: in percent on a colour scale).
STRAIN_IMAGE_DIGITS = 4


@dataclass
class FEResult:
    """Result of one vertebral FE analysis (units in the names; see ``to_dict``).

    ``model`` and ``solution`` hold the solved state (the fields at the failure load for the
    linear criteria, at 2% apparent strain for the nonlinear one); they are not serialised, so
    a result read back with ``from_dict`` writes fe.json and the report but not fe.vtu.
    ``curve`` is the load-displacement curve: the elastic-plastic increments (nonlinear), or
    the straight line to the criterion's point (linear, pistoia; the point has
    ``"strength_point": true``).
    """

    level: str
    law: str
    criterion: str
    element_mm: float
    n_elements: int
    n_bone_elements: int
    n_dof: int
    bone_height_mm: float
    stiffness_n_mm: float
    strength_n: float
    linear_strength_n: float
    sex: str | None
    fragile: bool | None
    solver: dict
    curve: list[dict] = field(default_factory=list)
    #: why the fragile flag is given or absent, and its threshold (N) when given
    fragile_reason: str = ""
    fragile_threshold_n: float | None = None
    #: the material model used (``boneqct.fe.materials.material_record``): law, citation,
    #: density chain from the calibration material in words and numbers, unverified values
    material: dict | None = None
    warnings: list[str] = field(default_factory=list)
    #: the options analysed with (``boneqct.options.options_to_dict`` of ``FEOptions``)
    options: dict | None = None
    #: effective strain on the mesh's mid-sagittal plane at the solved state:
    #: {"element_mm": pixel edge (mm), "values": rows along the axis (caudal first) of columns
    #: along the anterior direction, None outside the mesh}
    mid_sagittal_strain: dict | None = None
    model: Model | None = None
    solution: Solution | None = None

    def to_dict(self) -> dict:
        """The JSON document written as fe.json."""
        return {
            "level": self.level, "law": self.law, "law_citation": LAWS[self.law].citation,
            "material": self.material,
            "criterion": self.criterion, "criterion_basis": CRITERIA[self.criterion],
            "element_mm": self.element_mm,
            "n_elements": self.n_elements, "n_bone_elements": self.n_bone_elements,
            "n_dof": self.n_dof, "bone_height_mm": self.bone_height_mm,
            "stiffness_n_mm": self.stiffness_n_mm, "strength_n": self.strength_n,
            "linear_strength_n": self.linear_strength_n, "sex": self.sex, "fragile": self.fragile,
            "fragile_threshold_n": self.fragile_threshold_n,
            "fragile_reason": self.fragile_reason,
            "solver": self.solver, "load_displacement": self.curve, "warnings": self.warnings,
            "model": {
                "poisson_ratio": POISSON_RATIO, "min_modulus_mpa": MIN_MODULUS_MPA,
                "pmma_modulus_mpa": PMMA_MODULUS_MPA, "platens": "bonded",
                "partial_volume_rule": f"element kept when >= {MIN_MASK_FRACTION:.0%} of its "
                f"{SUBSAMPLES ** 3} sub-samples lie in the body mask; density = mean over the "
                "sub-samples inside the mask",
                "load_axis": "vertebral body axis (endplate normal)",
            },
            "options": self.options,
            "mid_sagittal_strain": self.mid_sagittal_strain,
        }

    @classmethod
    def from_dict(cls, document: Mapping) -> FEResult:
        """The result of an fe.json document (``to_dict``), without the solved model; the
        law's citation and the model constants are the code's own; documents written before
        the fragile reason and the material record existed read with those empty."""
        return cls(
            level=document["level"], law=document["law"], criterion=document["criterion"],
            element_mm=document["element_mm"], n_elements=document["n_elements"],
            n_bone_elements=document["n_bone_elements"], n_dof=document["n_dof"],
            bone_height_mm=document["bone_height_mm"],
            stiffness_n_mm=document["stiffness_n_mm"], strength_n=document["strength_n"],
            linear_strength_n=document["linear_strength_n"], sex=document["sex"],
            fragile=document["fragile"], solver=dict(document["solver"]),
            curve=[dict(point) for point in document["load_displacement"]],
            warnings=list(document["warnings"]), options=document.get("options"),
            mid_sagittal_strain=document.get("mid_sagittal_strain"),
            fragile_reason=document.get("fragile_reason", ""),
            fragile_threshold_n=document.get("fragile_threshold_n"),
            material=document.get("material"))


def analyze_vertebra(bmd: Volume, body, options: FEOptions | None = None, *,
                     density_material: str = "K2HPO4", sex: str | None = None,
                     rtol: float = DEFAULT_RTOL, **changes) -> FEResult:
    """Stiffness and strength of a vertebral body in axial compression.

    Args:
        bmd: calibrated density volume (mg/cm3 of ``density_material``).
        body: ``boneqct.spine.types.VertebralBody`` on ``bmd``'s grid (mask, axis, anterior).
        options: element size, law, criterion, PMMA layers, preconditioner
            (``boneqct.fe.options.FEOptions``; None: the defaults).
        density_material: the calibration's material, "K2HPO4" or "HA".
        sex: "F" or "M" for the fragile flag (None: flag not given).
        rtol: relative residual tolerance of each linear solve.
        changes: ``FEOptions`` fields replacing those of ``options`` (e.g. ``element_mm=2.0``).

    Raises:
        OptionsError: an option outside its range or choices.
        FEError: empty mask, ...
    """
    options = replace(options or FEOptions(), **changes)
    mesh = mesh_vertebral_body(bmd, body.body_mask_kji, body.axis_ras, body.anterior_ras,
                               density_material=density_material,
                               element_mm=options.element_mm, pmma_mm=options.pmma_mm)
    model = build_model(mesh, options.law)
    preconditioner = options.preconditioner
    apply_m = (lattice_preconditioner(model, model.modulus_mpa)
               if preconditioner == DEFAULT_PRECONDITIONER else None)
    linear = solve_displacement(model, model.modulus_mpa, LINEAR_RULE_STRAIN * mesh.bone_height_mm,
                                preconditioner=preconditioner, rtol=rtol, apply_m=apply_m)
    reports = list(linear.reports)
    stiffness = linear.reaction_n / linear.applied_mm
    linear_strength = LINEAR_RULE_STRAIN * stiffness * mesh.bone_height_mm
    converged = linear.reports[0].converged
    if options.criterion == "linear":
        strength, solution = linear_strength, linear
    elif options.criterion == "pistoia":
        strength = pistoia_strength_n(model, linear)
        solution = _scaled(linear, strength / linear.reaction_n)
    else:
        curve, solution, nonlinear_converged = nonlinear_curve(
            model, preconditioner=preconditioner, rtol=rtol, linear=linear, apply_m=apply_m)
        reports += solution.reports
        converged &= nonlinear_converged
        strength = max(point["force_n"] for point in curve)
    if options.criterion != "nonlinear":
        curve = _linear_curve(solution, mesh.bone_height_mm)
    warnings = list(body.warnings)
    if not converged:
        warnings.append("The finite-element solution did not converge to the requested "
                        "tolerance; the stiffness and strength are unreliable.")
    flag = fragile_assessment(strength, sex, criterion=options.criterion, law=options.law,
                              element_mm=options.element_mm, platens=model.platens,
                              pmma_mm=options.pmma_mm)
    solver = {
        "preconditioner": preconditioner, "tolerance": rtol, "converged": bool(converged),
        "iterations": int(sum(r.iterations for r in reports)), "solves": len(reports),
        "max_relative_residual": float(max(r.relative_residual for r in reports)),
        "linear_iterations": int(linear.reports[0].iterations),
        "linear_relative_residual": float(linear.reports[0].relative_residual),
    }
    if options.criterion == "nonlinear":
        # the corrections are solved loosely on purpose; equilibrium is checked on the forces
        solver["correction_tolerance"] = CORRECTION_RTOL
        solver["equilibrium_rtol"] = RESIDUAL_RTOL
    return FEResult(
        level=body.level, law=options.law, criterion=options.criterion,
        element_mm=float(options.element_mm), n_elements=mesh.n_elements,
        n_bone_elements=int(model.is_bone.sum()), n_dof=model.n_dof,
        bone_height_mm=mesh.bone_height_mm, stiffness_n_mm=float(stiffness),
        strength_n=float(strength), linear_strength_n=float(linear_strength), sex=sex,
        fragile=flag["fragile"], solver=solver, curve=curve, warnings=warnings,
        fragile_reason=flag["reason"], fragile_threshold_n=flag["threshold_n"],
        material=material_record(options.law, density_material),
        options=options_to_dict(options),
        mid_sagittal_strain=mid_sagittal_strain(model, solution), model=model,
        solution=solution)


def _linear_curve(solution: Solution, bone_height_mm: float) -> list[dict]:
    """The straight load-displacement line of a linear criterion, to its strength point."""
    return [{"apparent_strain": 0.0, "displacement_mm": 0.0, "force_n": 0.0,
             "strength_point": False},
            {"apparent_strain": solution.applied_mm / bone_height_mm,
             "displacement_mm": solution.applied_mm, "force_n": solution.reaction_n,
             "strength_point": True}]


def _scaled(solution: Solution, factor: float) -> Solution:
    """A linear solution scaled by ``factor`` (displacement, applied and reaction)."""
    return Solution(solution.displacement_mm * factor, solution.applied_mm * factor,
                    solution.reaction_n * factor, solution.modulus_mpa, solution.reports)


def mid_sagittal_strain(model: Model, solution: Solution) -> dict:
    """Effective strain on the mid-sagittal plane of the mesh (see
    ``FEResult.mid_sagittal_strain``), to ``STRAIN_IMAGE_DIGITS`` significant digits."""
    mesh = model.mesh
    values = np.full(mesh.material_kji.shape, np.nan)
    values[mesh.elements_kji] = element_fields(model, solution)["effective_strain"]
    columns = np.flatnonzero(mesh.elements_kji.any(axis=(0, 1)))
    plane = values[:, :, (columns[0] + columns[-1]) // 2]
    return {"element_mm": float(mesh.element_mm),
            "values": [[None if np.isnan(v) else float(f"{v:.{STRAIN_IMAGE_DIGITS}g}")
                        for v in row] for row in plane]}


def compare_fe(old: dict, new: dict) -> dict:
    """Change in strength and stiffness between two exams' fe.json documents.

    Raises:
        FEError: the two analyses differ in element size, law or criterion (their strengths
            are then not comparable: element size alone changes strength by about 5% between
            1.0 and 1.5 mm).
    """
    for key, what in (("element_mm", "element size"), ("law", "density-modulus law"),
                      ("criterion", "strength criterion")):
        if old.get(key) != new.get(key):
            raise FEError(f"The two exams were analysed with a different {what} ({old.get(key)} "
                          f"vs {new.get(key)}); re-run both with the same settings to compare.")
    out = {"level": new.get("level"), "element_mm": new["element_mm"], "law": new["law"],
           "criterion": new["criterion"]}
    for key in ("strength_n", "stiffness_n_mm"):
        change = new[key] - old[key]
        out[f"old_{key}"], out[f"new_{key}"] = old[key], new[key]
        out[f"change_{key}"] = change
        out[f"change_{key.rsplit('_', 2)[0]}_percent"] = 100.0 * change / old[key]
    return out


def write_fe_outputs(out_dir: str | Path, result: FEResult, metadata: dict | None = None,
                     anonymize: bool = False, export_formats=()) -> dict[str, Path]:
    """Write fe.json, fe_report.pdf and, when ``result`` holds its solved model (not one read
    back with ``FEResult.from_dict``), fe.vtu and the model in ``export_formats`` ("inp",
    "feb": fe_model.inp/.feb) into ``out_dir``, each atomically; return their paths by key
    ("json", "report", "vtu", "inp", "feb")."""
    return write_fe_files(out_dir, result, "fe", write_fe_report, metadata, anonymize,
                          export_formats)

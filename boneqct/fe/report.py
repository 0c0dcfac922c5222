"""The finite-element report page: results table, load-displacement curve, mid-sagittal
strain image; written from a live ``FEResult`` or one read back from fe.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, Spacer

from boneqct.fe.criteria import CRITERIA
from boneqct.fe.materials import LAWS
from boneqct.report import pdf


def write_fe_report(path: str | Path, result, metadata: dict, anonymize: bool = False) -> Path:
    """Write the report PDF (atomically) for a ``boneqct.fe.vertebra.FEResult`` (live or read
    back with ``FEResult.from_dict``)."""
    solver = result.solver
    rows = [["Quantity", "Value"],
            ["Stiffness (N/mm)", f"{result.stiffness_n_mm:.0f}"],
            ["Linear 0.68% strength (N)", f"{result.linear_strength_n:.0f}"],
            ["Element size (mm)", f"{result.element_mm:g}"],
            ["Elements / DOF", f"{result.n_elements} / {result.n_dof}"],
            ["Bone height (mm)", f"{result.bone_height_mm:.1f}"],
            ["Solver", f"PCG-{solver['preconditioner']}, {solver['iterations']} iterations, "
                       f"linear residual {solver['linear_relative_residual']:.1e}"
                       f"{_equilibrium(solver)}"
                       f"{'' if solver['converged'] else ' NOT CONVERGED'}"]]
    story = [pdf.exam_table(metadata, anonymize), *pdf.warnings_box(result.warnings), *_headline(result),
             pdf.table(rows, [60, 110])]
    story.append(Paragraph(_material_text(result), pdf.STYLES["Normal"]))
    basis = CRITERIA[result.criterion]
    story.append(Paragraph(f"Criterion {result.criterion}: {basis['rule']}. Source: "
                           f"{basis['source']}. Validity: {basis['validity']}.",
                           pdf.STYLES["Normal"]))
    story += [Spacer(1, 2 * mm), pdf.figure_flowable(_figure(result), 170)]
    return pdf.write_report(path, f"Vertebral strength by finite elements ({result.level})", story)


def _headline(result) -> list:
    """The strength by its criterion and the fragile-bone-strength flag (or why it is absent),
    first and largest."""
    value = (f"{result.level}: strength {result.strength_n:.0f} N "
             f"<font size='10'>({result.criterion})</font>")
    reason = result.fragile_reason or ""
    if result.fragile is None:
        return pdf.headline(f"{value} - no fragility flag", reason[:1].upper() + reason[1:])
    note = f"Threshold {result.fragile_threshold_n:.0f} N; {reason}"
    if result.fragile:
        return pdf.headline(f"{value} - FRAGILE BONE STRENGTH", note, "alert")
    return pdf.headline(f"{value} - not fragile", note, "normal")


def _equilibrium(solver: dict) -> str:
    """The elastic-plastic equilibrium iterations, when there were any."""
    if "equilibrium_rtol" not in solver or solver["solves"] <= 1:
        return ""
    return (f"; {solver['solves'] - 1} equilibrium corrections, residual force below "
            f"{solver['equilibrium_rtol']:.1%} of the reactions")


def _material_text(result) -> str:
    """The material model in one paragraph: law, density chain, unverified values."""
    record = result.material
    if not record:  # a document written before the material record existed
        return f"Material: {LAWS[result.law].citation}; PMMA endplate layers 2500 MPa."
    text = (f"Material: {record['law']} - {record['citation']}. Modulus {record['modulus']}; "
            f"yield {record['yield_compression']['equation']} (compression), "
            f"{record['yield_tension']['equation']} (tension); post-yield "
            f"{record['post_yield']}. Density chain: {record['chain']}. PMMA endplate layers "
            "2500 MPa (elastic); load along the body axis.")
    if record["unverified"]:
        text += (" Not verified against the primary source here: "
                 f"{', '.join(record['unverified'])}.")
    return text


def _figure(result):
    """Load-displacement curve (nonlinear increments, or the linear line with its strength
    point), and the mid-sagittal strain."""
    fig, (ax_curve, ax_strain) = pdf.subplots(1, 2, figsize=(8.0, 3.2))
    curve = result.curve or [{"displacement_mm": 0.0, "force_n": 0.0},
                             {"displacement_mm": result.strength_n / result.stiffness_n_mm,
                              "force_n": result.strength_n, "strength_point": True}]
    ax_curve.plot([p["displacement_mm"] for p in curve], [p["force_n"] for p in curve],
                  "o-" if result.criterion == "nonlinear" else "-", ms=3)
    for point in curve:
        if point.get("strength_point"):
            ax_curve.plot(point["displacement_mm"], point["force_n"], "s", color="C3")
            ax_curve.annotate(f"{result.criterion} strength",
                              (point["displacement_mm"], point["force_n"]),
                              textcoords="offset points", xytext=(-75, -12), fontsize=7)
    ax_curve.axhline(result.strength_n, color="grey", lw=0.8, ls="--")
    ax_curve.set_xlabel("displacement (mm)")
    ax_curve.set_ylabel("force (N)")
    ax_curve.set_title("Load-displacement")
    image = np.array(result.mid_sagittal_strain["values"], dtype=float)  # None -> NaN
    h = result.mid_sagittal_strain["element_mm"]
    shown = ax_strain.imshow(image * 100.0, origin="lower", cmap="inferno",
                             extent=(0, image.shape[1] * h, 0, image.shape[0] * h))
    ax_strain.set_xlabel("anterior (mm)")
    ax_strain.set_ylabel("axis (mm)")
    ax_strain.set_title("Mid-sagittal effective strain (%)")
    fig.colorbar(shown, ax=ax_strain, shrink=0.8)
    fig.tight_layout()
    return fig

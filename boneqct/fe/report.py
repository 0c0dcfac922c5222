"""The finite-element report page: results table, load-displacement curve, mid-sagittal
strain image; written from a live ``FEResult`` or one read back from fe.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, Spacer

from boneqct.fe.analysis import FRAGILE_STRENGTH_N
from boneqct.fe.materials import LAWS
from boneqct.report.pdf import (
    ALERT_COLOR,
    STYLES,
    exam_table,
    figure_flowable,
    subplots,
    table,
    warnings_box,
    write_report,
)


def write_fe_report(path: str | Path, result, metadata: dict, anonymize: bool = False) -> Path:
    """Write the report PDF (atomically) for a ``boneqct.fe.vertebra.FEResult`` (live or read
    back with ``FEResult.from_dict``)."""
    solver = result.solver
    rows = [["Quantity", "Value"],
            ["Level", result.level],
            ["Strength (N)", f"{result.strength_n:.0f}"],
            ["Criterion", result.criterion],
            ["Stiffness (N/mm)", f"{result.stiffness_n_mm:.0f}"],
            ["Linear 0.68% strength (N)", f"{result.linear_strength_n:.0f}"],
            ["Element size (mm)", f"{result.element_mm:g}"],
            ["Elements / DOF", f"{result.n_elements} / {result.n_dof}"],
            ["Bone height (mm)", f"{result.bone_height_mm:.1f}"],
            ["Solver", f"PCG-{solver['preconditioner']}, {solver['iterations']} iterations, "
                       f"residual {solver['max_relative_residual']:.1e}"
                       f"{'' if solver['converged'] else ' NOT CONVERGED'}"]]
    story = [exam_table(metadata, anonymize), *warnings_box(result.warnings), Spacer(1, 2 * mm),
             table(rows, [60, 110])]
    story.append(Paragraph(f"Material: {LAWS[result.law].citation}; PMMA endplate layers "
                           "2500 MPa; load along the body axis.", STYLES["Normal"]))
    if result.fragile is not None:
        verdict = "FRAGILE BONE STRENGTH" if result.fragile else "not fragile"
        color = ALERT_COLOR.hexval() if result.fragile else "#000000"
        story.append(Paragraph(f"<font color='{color}'><b>{verdict}</b></font> (threshold "
                               f"{FRAGILE_STRENGTH_N[result.sex]:.0f} N, Kopperdahl 2014).",
                               STYLES["Normal"]))
    story += [Spacer(1, 2 * mm), figure_flowable(_figure(result), 170)]
    return write_report(path, f"Vertebral strength by finite elements ({result.level})", story)


def _figure(result):
    """Load-displacement curve (nonlinear) or linear line, and the mid-sagittal strain."""
    fig, (ax_curve, ax_strain) = subplots(1, 2, figsize=(8.0, 3.2))
    if result.curve:
        ax_curve.plot([p["displacement_mm"] for p in result.curve],
                      [p["force_n"] for p in result.curve], "o-", ms=3)
    else:
        d = result.strength_n / result.stiffness_n_mm
        ax_curve.plot([0.0, d], [0.0, result.strength_n], "-")
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

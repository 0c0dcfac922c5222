"""Outputs of the femur sideways-fall analysis: fe_hip.json, fe_hip_report.pdf, fe_hip.vtu (when
the solved model is at hand) and, on request, the model exported for other solvers; the report
is written from a live ``FemurFallResult`` or one read back from fe_hip.json."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, Spacer

from boneqct.fe.export import write_fe_files
from boneqct.fe.femur import (
    CRITERION_CITATION,
    FRAGILE_ABSENT_REASON,
    FemurFallResult,
    configuration,
)
from boneqct.fe.materials import LAWS
from boneqct.report import pdf


def write_femur_report(path: str | Path, result: FemurFallResult, metadata: dict,
                       anonymize: bool = False) -> Path:
    """Write fe_hip_report.pdf (atomically)."""
    solver = result.solver
    rows = [["Quantity", "Value"],
            ["Side", result.side],
            ["Strength (N)", f"{result.strength_n:.0f}"],
            ["Stiffness (N/mm)", f"{result.stiffness_n_mm:.0f}"],
            ["Criterion", "Pistoia (linear)"],
            ["Element size (mm)", f"{result.element_mm:g}"],
            ["Elements / DOF", f"{result.n_elements} / {result.n_dof}"],
            ["Boundary nodes (cap / pad / distal)",
             " / ".join(str(result.boundary_nodes[k]) for k in ("head", "trochanter", "distal"))],
            ["Solver", f"PCG-{solver['preconditioner']}, {solver['iterations']} iterations, "
                       f"residual {solver['relative_residual']:.1e}"
                       f"{'' if solver['converged'] else ' NOT CONVERGED'}"]]
    config = configuration()
    story = [pdf.exam_table(metadata, anonymize), *pdf.warnings_box(result.warnings), Spacer(1, 2 * mm),
             pdf.table(rows, [70, 100]), Spacer(1, 2 * mm)]
    for text in (
            f"Sideways fall: shaft {config['adduction_deg']:g} deg adduction, "
            f"{config['internal_rotation_deg']:g} deg internal rotation ({config['source']}). "
            f"Load: {config['load']}. Constraints: {config['constraints']}. Not modelled: "
            f"{config['not_modelled']}.",
            f"Material: {LAWS[result.law].citation} ({result.density_material} calibration). "
            f"Strength: {CRITERION_CITATION}.",
            f"Fragile-strength flag not given: {FRAGILE_ABSENT_REASON}"):
        story.append(Paragraph(escape(text), pdf.STYLES["Normal"]))
    story += [Spacer(1, 2 * mm), pdf.figure_flowable(_strain_figure(result), 120)]
    return pdf.write_report(path, f"Femoral strength in a sideways fall ({result.side})", story)


def _strain_figure(result: FemurFallResult):
    """Effective strain at the strength load on the plane through the head centre."""
    fig, ax = pdf.subplots(1, 1, figsize=(5.0, 4.0))
    image = np.array(result.strain_image["values"], dtype=float)  # None -> NaN
    h = result.strain_image["element_mm"]
    shown = ax.imshow(image * 100.0, origin="lower", cmap="inferno",
                      extent=(0, image.shape[1] * h, 0, image.shape[0] * h))
    ax.annotate("", xy=(0.5, 0.06), xytext=(0.5, 0.22), xycoords="axes fraction",
                arrowprops={"arrowstyle": "-|>", "color": "tab:blue"})
    ax.set_xlabel("across the load (mm)")
    ax.set_ylabel("against the load, trochanter at 0 (mm)")
    ax.set_title("Effective strain (%) at the strength load\n(arrow: load direction)",
                 fontsize=9)
    fig.colorbar(shown, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def write_femur_outputs(out_dir: str | Path, result: FemurFallResult, metadata: dict | None = None,
                        anonymize: bool = False, export_formats=()) -> dict[str, Path]:
    """Write fe_hip.json, fe_hip_report.pdf and, when ``result`` holds its solved model,
    fe_hip.vtu and the model in ``export_formats`` ("inp", "feb": fe_hip_model.inp/.feb, the
    head displaced by the strength load's displacement) into ``out_dir``; return the paths by
    key ("json", "report", "vtu", "inp", "feb")."""
    return write_fe_files(out_dir, result, "fe_hip", write_femur_report, metadata, anonymize,
                          export_formats)

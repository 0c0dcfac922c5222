"""Report section for a calibration: fit plot, per-rod table, QC."""

from __future__ import annotations

import numpy as np
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, Spacer

from boneqct.report.pdf import ALERT_COLOR, STYLES, figure_flowable, subplots, table


def calibration_figure(calibration):
    """The regression as fitted (rods and line) and the per-rod residuals (HU).

    For K2HPO4 phantoms the regression is of HU minus the rod's water-equivalent density
    against K2HPO4 density (two-step model); for HA phantoms it is HU against density.
    """
    density = np.array([r["density_mg_cm3"] for r in calibration.rods])
    water = np.array([r.get("water_mg_cm3") or 0.0 for r in calibration.rods])
    residual = np.array([r["residual_hu"] for r in calibration.rods])
    y_hu = np.array([r["measured_hu"] for r in calibration.rods]) - water
    line = np.polynomial.Polynomial.fit(density, y_hu - residual, 1)
    fig, (ax_fit, ax_res) = subplots(1, 2, figsize=(7.0, 2.4),
                                         gridspec_kw={"width_ratios": [2, 1]})
    ax_fit.plot(density, y_hu, "o", color="#1f4e79", label="rods (measured)")
    span = np.linspace(density.min(), density.max(), 50)
    ax_fit.plot(span, line(span), "-", color="#c55a11", label="fit")
    for r, x, y in zip(calibration.rods, density, y_hu, strict=True):
        ax_fit.annotate(r["name"], (x, y), fontsize=7, xytext=(3, -8), textcoords="offset points")
    ax_fit.set_xlabel(f"rod density (mg/cm3 {calibration.material})")
    ax_fit.set_ylabel("HU minus water-equiv. density" if water.any() else "CT number (HU)")
    ax_fit.grid(alpha=0.3)
    ax_fit.legend(fontsize=7)
    ax_res.bar([r["name"] for r in calibration.rods], residual, color="#7f7f7f")
    ax_res.axhline(0, color="k", lw=0.6)
    ax_res.set_ylabel("residual (HU)")
    ax_res.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def calibration_section(calibration) -> list:
    """Flowables describing a calibration and its quality checks."""
    heading = Paragraph("Calibration", STYLES["Heading2"])
    summary = (
        f"{calibration.method} calibration"
        + (f" with phantom <b>{calibration.phantom}</b>" if calibration.phantom else "")
        + f", material {calibration.material}: BMD = (HU {-calibration.intercept_hu:+.2f}) / "
        f"{calibration.slope_hu_per_mg_cm3:.5f}"
        + (f"; R<super>2</super> = {calibration.r2:.5f} over {len(calibration.slices_used)} "
           "slices" if calibration.r2 is not None else "")
    )
    story = [heading, Paragraph(summary, STYLES["Normal"])]
    if calibration.rods:
        story += [Spacer(1, 2 * mm), figure_flowable(calibration_figure(calibration), 170)]
        rows = [["Rod", "Density (mg/cm3)", "Measured (HU)", "SD (HU)", "Voxels",
                 "Residual (HU)", "Residual (mg/cm3)"]]
        rows += [[r["name"], f"{r['density_mg_cm3']:.2f}", f"{r['measured_hu']:.1f}",
                  f"{r['sd_hu']:.1f}", str(r["n_voxels"]), f"{r['residual_hu']:.2f}",
                  f"{r['residual_mg_cm3']:.2f}"] for r in calibration.rods]
        story += [Spacer(1, 2 * mm), table(rows)]
    for warning in calibration.warnings:
        story.append(Paragraph(f"<font color='{ALERT_COLOR.hexval()}'>QC warning: {warning}"
                               "</font>", STYLES["Normal"]))
    return story

"""Report section for a calibration: verdict, the rods found in the image, fit plot, per-rod
table, QC."""

from __future__ import annotations

import numpy as np
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, Spacer

from boneqct.report import pdf

#: Window of the rod image (HU).
ROD_WINDOW_HU = (-200.0, 400.0)


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
    fig, (ax_fit, ax_res) = pdf.subplots(1, 2, figsize=(7.0, 2.4),
                                         gridspec_kw={"width_ratios": [2, 1]})
    ax_fit.plot(density, y_hu, "o", color="#1f4e79", label="rods (measured)")
    span = np.linspace(density.min(), density.max(), 50)
    ax_fit.plot(span, line(span), "-", color="#c55a11", label="fit")
    # labels alternate above and below the points, so rods of close density stay readable
    order = np.argsort(density)
    for rank, index in enumerate(order):
        ax_fit.annotate(calibration.rods[index]["name"], (density[index], y_hu[index]), fontsize=7,
                        xytext=(4, 6 if rank % 2 else -10), textcoords="offset points")
    ax_fit.set_xlabel(f"rod density (mg/cm\u00b3 {calibration.material})")
    ax_fit.set_ylabel("HU \u2212 water equivalent (mg/cm\u00b3)" if water.any() else "CT number (HU)",
                      fontsize=8)
    ax_fit.grid(alpha=0.3)
    ax_fit.legend(fontsize=7)
    ax_res.bar([r["name"] for r in calibration.rods], residual, color="#7f7f7f")
    ax_res.axhline(0, color="k", lw=0.6)
    ax_res.set_ylabel("residual (HU)")
    ax_res.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def rod_image_figure(calibration, volume_hu):
    """The middle calibration slice of ``volume_hu`` as Slicer shows an axial slice (patient's
    right on the left, anterior on top: ``pdf.radiological_axial``) with each rod's centre
    circled and named, so a reader sees which inserts were measured.

    Raises:
        ValueError: the slices are not axial.
    """
    display, (row_mm, column_mm) = pdf.radiological_axial(volume_hu)
    centers = np.array([r["center_ras_mm"] for r in calibration.rods], float)
    slices = calibration.slices_used or [volume_hu.array_kji.shape[0] // 2]
    k = int(slices[len(slices) // 2])
    image = display(volume_hu.array_kji[k].astype(float))
    # where each voxel lands in the display: the rods' centres follow their voxels
    n_j, n_i = volume_hu.array_kji.shape[1:]
    shown_index = display(np.arange(n_j * n_i, dtype=float).reshape(n_j, n_i))
    fig, ax = pdf.subplots(figsize=(3.2, 3.2))
    ax.imshow(image, cmap="gray", vmin=ROD_WINDOW_HU[0], vmax=ROD_WINDOW_HU[1],
              extent=(0, image.shape[1] * column_mm, image.shape[0] * row_mm, 0))
    for rod, (i, j, _) in zip(calibration.rods, volume_hu.ras_to_ijk_points(centers), strict=True):
        voxel = int(round(j)) * n_i + int(round(i))
        (row, column), = np.argwhere(shown_index == voxel)
        x, y = (column + 0.5) * column_mm, (row + 0.5) * row_mm  # the voxel's centre
        ax.plot(x, y, "o", ms=9, mfc="none", mec="#ffd60a", mew=1.0)
        ax.text(x, y - 9, rod["name"], color="#ffd60a", fontsize=7, ha="center", va="bottom")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"rods found (slice {k})", fontsize=7)
    pdf.scale_bar(ax, 50.0)
    fig.tight_layout()
    return fig


def calibration_verdict(calibration) -> list:
    """PASS or CHECK, first and largest: the fit's quality in one line."""
    worst = max((abs(r["residual_mg_cm3"]) for r in calibration.rods), default=None)
    fit = [f"R\u00b2 {calibration.r2:.5f}" if calibration.r2 is not None else None,
           f"largest rod residual {worst:.1f} mg/cm3" if worst is not None else None]
    fit = ", ".join(f for f in fit if f)
    if calibration.warnings:
        return pdf.headline(f"CHECK: {len(calibration.warnings)} quality warning"
                        f"{'s' * (len(calibration.warnings) > 1)}", fit + " - see below.", "low")
    return pdf.headline(f"PASS: the line fits the {len(calibration.rods) or 'tissue'} rods" if
                    calibration.rods else "PASS", fit, "normal")


def calibration_section(calibration, volume_hu=None) -> list:
    """Flowables describing a calibration and its quality checks (with the rods found in
    ``volume_hu`` when given)."""
    heading = Paragraph("Calibration", pdf.STYLES["Heading2"])
    summary = (
        f"{calibration.method} calibration"
        + (f" with phantom <b>{calibration.phantom}</b>" if calibration.phantom else "")
        + f", material {calibration.material}: BMD = (HU {-calibration.intercept_hu:+.2f}) / "
        f"{calibration.slope_hu_per_mg_cm3:.5f}"
        + (f"; R<super>2</super> = {calibration.r2:.5f} over {len(calibration.slices_used)} "
           "slices" if calibration.r2 is not None else "")
    )
    story = [heading, *calibration_verdict(calibration), Paragraph(pdf.units(summary), pdf.STYLES["Normal"])]
    if calibration.rods:
        if volume_hu is not None and all("center_ras_mm" in r for r in calibration.rods):
            try:
                story += [Spacer(1, 2 * mm),
                          pdf.oriented_figure(rod_image_figure(calibration, volume_hu), 70)]
            except ValueError as exc:  # not axial slices: no view rather than a wrong one
                story.append(Paragraph(f"No image of the rods: {exc}", pdf.NOTE_STYLE))
        story += [Spacer(1, 2 * mm), pdf.figure_flowable(calibration_figure(calibration), 170)]
        if any(r.get("water_mg_cm3") for r in calibration.rods):
            story.append(Paragraph(pdf.units(
                "Two-step model (Mindways, QCT PRO): each rod's CT number less its water "
                "equivalent density is plotted against its mineral density; the line gives BMD "
                "= (HU - intercept) / slope. Residual: measured minus fitted."), pdf.NOTE_STYLE))
        rows = [[pdf.units(c) for c in ("Rod", "Density (mg/cm3)", "Measured (HU)", "SD (HU)",
                                    "Voxels", "Residual (HU)", "Residual (mg/cm3)")]]
        rows += [[r["name"], f"{r['density_mg_cm3']:.2f}", f"{r['measured_hu']:.1f}",
                  f"{r['sd_hu']:.1f}", str(r["n_voxels"]), f"{r['residual_hu']:.2f}",
                  f"{r['residual_mg_cm3']:.2f}"] for r in calibration.rods]
        story += [Spacer(1, 2 * mm), pdf.table(rows)]
    for warning in calibration.warnings:
        story.append(Paragraph(f"<font color='{pdf.ALERT_COLOR.hexval()}'>QC warning: {warning}"
                               "</font>", pdf.STYLES["Normal"]))
    return story

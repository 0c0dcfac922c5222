"""The one-page hip CTXA report: exam, calibration, projection with regions, the per-region
table, T-scores and WHO category, and the anatomical frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, Spacer

from boneqct.hip.rois import REGION_CONVENTIONS, ROI_NAMES
from boneqct.report import pdf

#: Outline colours of the regions (neck, trochanter, intertrochanter labels).
ROI_COLORS = {1: "#ffd60a", 2: "#30d158", 3: "#0a84ff"}


def projection_figure(result, title: str | None = None):
    """The areal density image with the regions outlined on the bone, like a DXA printout;
    drawn from ``result.projection_image`` and ``result.roi_labels`` (hip_projection.nii.gz and
    hip_regions.nii.gz)."""
    if result.projection_image is None or result.roi_labels is None:
        raise ValueError("The hip projection image and region labels are needed to draw the "
                         "projection (hip_projection.nii.gz and hip_regions.nii.gz).")
    image = result.projection_image.array_kji[0]
    pixel_mm = result.projection_grid["pixel_mm"]
    rows, cols = image.shape
    extent = (0, cols * pixel_mm, rows * pixel_mm, 0)
    fig, ax = pdf.subplots(figsize=(4.0, 4.0 * rows / cols))
    ax.imshow(image, cmap="gray", vmin=0, vmax=max(float(image.max()), 1e-6), extent=extent)
    x_mm = (np.arange(cols) + 0.5) * pixel_mm
    y_mm = (np.arange(rows) + 0.5) * pixel_mm
    for label, color in ROI_COLORS.items():
        region = (result.roi_labels == label) & (image > 0)
        ax.contour(x_mm, y_mm, region.astype(float), levels=[0.5],
                   colors=color, linewidths=0.8)
    ax.set_title(title or f"{result.side} hip, areal BMD (g/cm2)", fontsize=8)
    ax.set_xlabel("mm", fontsize=7)
    ax.tick_params(labelsize=6)
    return fig


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def write_hip_report(path: str | Path, result, metadata: dict, anonymize: bool = False) -> Path:
    """Write the hip report PDF (atomically) for a ``HipResult`` (measured, or read back with
    ``HipResult.from_dict`` together with its projection image and region labels)."""
    cal = result.calibration
    story = [pdf.exam_table(metadata, anonymize), *pdf.warnings_box(result.warnings), *_headline(result),
             Paragraph(pdf.units(f"Calibration: {result.interpretation['basis']}, {cal.material}, slope "
                             f"{cal.slope_hu_per_mg_cm3:.4f} HU per mg/cm3, intercept "
                             f"{cal.intercept_hu:.1f} HU."), pdf.STYLES["Normal"]),
             Paragraph(f"Side: {result.side}. DXA-equivalent areal BMD by CTXA (Cann et al. 2014).",
                       pdf.STYLES["Normal"]), Spacer(1, 2 * mm),
             pdf.figure_flowable(projection_figure(result), 62)]
    rows = [["Region", "aBMD (g/cm2)", "vBMD (mg/cm3)", "BMC (g)", "Area (cm2)", "Volume (cm3)",
             "T-score"]]
    for name in ROI_NAMES:
        roi = result.rois[name]
        rows.append([name, _fmt(roi["abmd_g_cm2"], ".3f"), _fmt(roi["vbmd_mg_cm3"], ".1f"),
                     _fmt(roi["bmc_g"], ".2f"), _fmt(roi["area_cm2"], ".2f"),
                     _fmt(roi["volume_cm3"], ".1f"), _fmt(roi.get("t_score"), ".2f")])
    rows[0] = [pdf.units(cell) for cell in rows[0]]
    story += [Paragraph("Results", pdf.STYLES["Heading2"]), pdf.table(rows, [28, 24, 26, 20, 20, 24, 18])]
    story += _head_neck_lines(result.head_neck)
    interp = result.interpretation
    for region, info in interp.get("regions", {}).items():
        ref = info.get("reference")
        if ref:
            unverified = f" Not verified: {ref['not_verified']}" if ref["not_verified"] else ""
            story.append(Paragraph(f"{region}: reference for {ref['applies_to']}. "
                                   f"{ref['source']}{unverified}", pdf.NOTE_STYLE))
        for why in info.get("why_absent", []):
            story.append(Paragraph(f"{region}: {why}", pdf.NOTE_STYLE))
    if interp.get("why"):
        story.append(Paragraph(interp["why"], pdf.NOTE_STYLE))
    story.append(Paragraph("Regions: " + "; ".join(REGION_CONVENTIONS["sources"])
                           + ". Not verified: " + "; ".join(REGION_CONVENTIONS["not_verified"])
                           + ".", pdf.NOTE_STYLE))
    f = result.frame
    story.append(Paragraph(f"Frame: head radius {f.head_radius_mm:.1f} mm (fit RMS "
                           f"{f.head_fit_rms_mm:.2f} mm), neck-shaft angle "
                           f"{f.neck_shaft_angle_deg:.1f} deg, anteversion relative to the scanner "
                           f"{f.anteversion_deg:.1f} deg.", pdf.STYLES["Normal"]))
    return pdf.write_report(path, "Hip CTXA: DXA-equivalent areal BMD", story)


#: Headline frame colour of each WHO category.
WHO_VERDICTS = {"normal": "normal", "osteopenia": "low", "osteoporosis": "alert"}


def _headline(result) -> list:
    """Femoral neck and total hip aBMD with the lowest T-score and the WHO category (or why
    there is none), first and largest."""
    neck, total = result.rois["neck"], result.rois["total"]
    value = (f"Neck {_fmt(neck['abmd_g_cm2'], '.3f')} g/cm2, total hip "
             f"{_fmt(total['abmd_g_cm2'], '.3f')} g/cm2")
    interp = result.interpretation
    if interp.get("category"):
        return pdf.headline(f"{value} - {interp['category'].upper()} <font size='10'>(WHO)</font>",
                        f"Lowest T-score of neck and total hip {interp['t_score_min']:.2f} "
                        f"(reference {interp['population']}); {result.side} hip, CTXA.",
                        WHO_VERDICTS.get(interp["category"], "none"))
    why = interp.get("why") or "; ".join(interp.get("warnings") or []) or "see the warnings"
    return pdf.headline(f"{value} - no WHO category", f"{result.side} hip, CTXA: {why}.")


def _head_neck_lines(head_neck: dict | None) -> list:
    """The femoral head, subcapital and neck vBMD table (``boneqct.hip.head_neck``)."""
    if not head_neck:
        return []
    rows = [["Region", "vBMD (mg/cm3)", "SD (mg/cm3)", "Volume (cm3)", "Along the neck axis (mm)"]]
    for name, region in head_neck["regions"].items():
        rows.append([name, _fmt(region["vbmd_mg_cm3"], ".1f"), _fmt(region["sd_mg_cm3"], ".1f"),
                     _fmt(region["volume_cm3"], ".2f"),
                     f"{region['from_mm']:.0f} to {region['to_mm']:.0f}"])
    return [Spacer(1, 2 * mm), Paragraph("Femoral head and neck (volumetric BMD, for fixation "
                                         "planning)", pdf.STYLES["Heading2"]),
            pdf.table(rows, [24, 26, 24, 24, 44]),
            Paragraph("Regions: " + "; ".join(f"{name}: {text}" for name, text in
                                              head_neck["definitions"].items())
                      + " (docs/domain.md section 5).", pdf.NOTE_STYLE)]


__all__ = ["ROI_COLORS", "projection_figure", "write_hip_report"]

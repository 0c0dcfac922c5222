"""The one-page spine QCT report: exam, calibration QC, per-level table, category, cement
flags, reference chart, and an axial and a sagittal view of each level with its ROI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from reportlab.lib.units import mm
from reportlab.platypus import KeepInFrame, Paragraph, Spacer
from scipy import ndimage

from boneqct.report import pdf
from boneqct.spine.fracture import MIN_WALL_LEAN_ALONE_DEG, height_cells
from boneqct.spine.interpret import (
    ACR_NORMAL_ABOVE_MG_CM3,
    ACR_OSTEOPOROSIS_BELOW_MG_CM3,
    CEMENT_NOTE,
)
from boneqct.spine.pipeline import MIN_DIAGNOSTIC_LEVELS
from boneqct.volume import Volume

#: Half-width (mm) and pixel size (mm) of the level views.
VIEW_HALF_WIDTH_MM = 30.0
VIEW_PIXEL_MM = 0.4
#: Printed width (mm) of one level's column of views.
VIEW_COLUMN_WIDTH_MM = 38.0
#: Bone window for the views (HU).
WINDOW_HU = (-250.0, 750.0)
#: Colours of the height lines by Genant grade (None: not graded).
GRADE_COLORS = {0: "#34c759", 1: "#ffd60a", 2: "#ff9500", 3: "#ff3b30", None: "#8e8e93"}
FRACTURE_LEGEND = (
    "heights between the endplates' cortical mid-surfaces, in the body's mid-sagittal plane on "
    "lines along its walls (its axis unless they lean together or one leans alone "
    f"{MIN_WALL_LEAN_ALONE_DEG:g} deg or more); ratios anterior/posterior (wedge), "
    "middle/posterior (biconcave), "
    "posterior/adjacent levels' posterior (crush); Genant 1993 grade 1 mild 20-25 %, 2 "
    "moderate 25-40 %, 3 severe > 40 % height reduction (G0-G3); grade 2 or more leaves the "
    "mean; heights in parentheses failed their checks (not reliable, not graded). Sagittal "
    "views: anterior on the left, as Slicer shows them.")


def draw_heights(ax, fracture: dict | None, to_view) -> None:
    """The six endplate points and the three height lines of a level on a view;
    ``to_view`` maps (N, 3) RAS mm to (N, 2) view coordinates."""
    if not fracture or not fracture.get("points_ras_mm"):
        return
    color = GRADE_COLORS.get(fracture["genant_grade"], GRADE_COLORS[None])
    for pair in fracture["points_ras_mm"].values():
        xy = to_view(np.array([pair["superior"], pair["inferior"]], float))
        ax.plot(xy[:, 0], xy[:, 1], "-", color=color, lw=0.8)
        ax.plot(xy[:, 0], xy[:, 1], "o", color=color, ms=1.8)


def grade_label(fracture: dict | None) -> str:
    """A level's grade for a view's title: "G0", "G2 wedge", "not graded"."""
    if not fracture or fracture.get("genant_grade") is None:
        return "not graded"
    grade = fracture["genant_grade"]
    return f"G{grade}" + (f" {fracture['type']}" if fracture["type"] else "")


def write_spine_report(path: str | Path, result, volume_hu: Volume, roi_labels: Volume,
                       metadata: dict, anonymize: bool = False) -> Path:
    """Write the spine report PDF (atomically) for a ``SpineResult`` (live or read back with
    ``SpineResult.from_dict``), with ``roi_labels`` the ROI label map on the CT grid (label
    n + 1 for the n-th measured level, ``boneqct.spine.pipeline.roi_label_map``)."""
    story = [pdf.exam_table(metadata, anonymize), *pdf.warnings_box(result.warnings)]
    story += _headline(result)
    story += _cement_flags(result)
    story += [Spacer(1, 1 * mm), *_calibration_line(result)]
    story += [Paragraph("Levels", pdf.STYLES["Heading3"]), _level_table(result)]
    if any(lv.fracture for lv in result.levels):
        story.append(Paragraph("Heights anterior/middle/posterior and Genant grade: "
                               + FRACTURE_LEGEND, pdf.NOTE_STYLE))
    figures = []
    if (result.calibrated and result.interpretation["diagnostic"]
            and result.mean_bmd_mg_cm3 is not None):  # no usable level: no mean to chart
        age = (result.reference or {}).get("age_years") or metadata.get("patient_age_years")
        figures += [Spacer(1, 1.5 * mm), pdf.figure_flowable(_reference_chart(result, age), 115)]
    views_width_mm = min(180.0, VIEW_COLUMN_WIDTH_MM * max(len(result.measured_levels), 1))
    figures += [Spacer(1, 1.5 * mm),
                pdf.figure_flowable(_level_views_figure(result, volume_hu, roi_labels),
                                    views_width_mm),
                Paragraph(f"Views: window {WINDOW_HU[0]:g} to {WINDOW_HU[1]:g} HU; red: the ROI; "
                          "axial views with the patient's right on the left, sagittal views with "
                          "anterior on the left, as Slicer shows them.", pdf.NOTE_STYLE)]
    # the chart and the views shrink together into what the text leaves of the page (warnings
    # can take several lines): a one-page report stays one page
    story.append(KeepInFrame(0, 0, figures, mode="shrink"))
    return pdf.write_report(path, "Spine QCT: trabecular bone mineral density", story)


def _calibration_line(result) -> list:
    cal = result.calibration
    if cal is None:
        return [Paragraph("<b>Uncalibrated</b>: values are CT numbers (HU) only; no BMD, "
                          "category or cement flag.", pdf.STYLES["Normal"])]
    fit = f", R<super>2</super> {cal.r2:.4f}" if cal.r2 is not None else ""
    worst = max((abs(r["residual_mg_cm3"]) for r in cal.rods), default=None)
    residual = f", largest rod residual {worst:.1f} mg/cm3" if worst is not None else ""
    text = (f"Calibration: {result.interpretation['basis']}"
            f"{' (' + cal.phantom + ')' if cal.phantom else ''}, {cal.material}, slope "
            f"{cal.slope_hu_per_mg_cm3:.4f} HU per mg/cm3, intercept {cal.intercept_hu:.1f} HU"
            f"{fit}{residual}.")
    story = [Paragraph(pdf.units(text), pdf.STYLES["Normal"])]
    story += [Paragraph(f"<font color='{pdf.ALERT_COLOR.hexval()}'>Calibration QC: {w}</font>",
                        pdf.STYLES["Normal"]) for w in cal.warnings]
    return story


def _level_table(result) -> object:
    unit = f"mg/cm3 {result.calibration.material}" if result.calibrated else "HU"
    rows = [["Level", f"BMD ({unit})" if result.calibrated else "Mean (HU)", "SD",
             "ROI volume (mm3)", "Cement", "ROI QC", "Used", "Ha/Hm/Hp (mm)", "Genant"]]
    for lv in result.levels:
        if not lv.measured:
            rows.append([lv.level, "not measured", "-", "-", "-", "-",
                         "excluded" if lv.excluded else "", "-", "-"])
            continue
        value, sd = (lv.bmd_mg_cm3, lv.sd_mg_cm3) if result.calibrated else (lv.mean_hu, lv.sd_hu)
        cement = "-" if lv.cement_augmentation is None else ("YES" if lv.cement_augmentation else "no")
        rows.append([lv.level, f"{value:.1f}", f"{sd:.1f}", f"{lv.roi_volume_mm3:.0f}", cement,
                     "pass" if lv.qc["passed"] else "FAIL",
                     "yes" if lv.level in result.levels_used else ("excluded" if lv.excluded else ""),
                     _heights_cell(lv.fracture), grade_label(lv.fracture) if lv.fracture else "-"])
    rows[0] = [pdf.units(cell) for cell in rows[0]]
    return pdf.table(rows, [13, 30, 13, 26, 16, 16, 18, 26, 22])


def _heights_cell(fracture: dict | None) -> str:
    """Anterior/middle/posterior heights (mm) of a level's fracture assessment
    (``height_cells``), or "-"."""
    cells = height_cells(fracture)
    if cells is None:
        return "-"
    text = "/".join(cells[0])
    return text if cells[1] else f"({text})"


#: Headline frame colour of each ACR category.
CATEGORY_VERDICTS = {"normal": "normal", "low bone mass": "low", "osteoporosis": "alert"}


def _headline(result) -> list:
    """The diagnostic mean and its ACR category (or why there is none), first and largest."""
    levels = ", ".join(result.levels_used)
    if not result.calibrated and result.mean_hu is not None:
        return pdf.headline(f"{result.mean_hu:.1f} HU <font size='10'>(mean of {levels})</font>"
                            " - no BMD, no category",
                            "Uncalibrated: CT numbers only. Calibrate (a phantom, the patient's "
                            "own tissues, or a known line) for BMD and the ACR category.")
    if not result.calibrated or result.mean_bmd_mg_cm3 is None:
        return pdf.headline("No BMD - no level of the mean was measured with a passing ROI",
                            "See the warnings and the level table.")
    interpretation = result.interpretation
    value = (f"{result.mean_bmd_mg_cm3:.1f} mg/cm3 {result.calibration.material} "
             f"<font size='10'>(mean of {levels})</font>")
    if not interpretation["diagnostic"] or result.category is None:
        why = interpretation.get("why_not") or [
            f"fewer than {MIN_DIAGNOSTIC_LEVELS} levels of the mean were measured with passing "
            "ROIs (see the warnings)"]
        return pdf.headline(f"{value} - no category",
                        f"{interpretation['basis']}: " + "; ".join(why) + ".")
    scores = [f"T-score {result.t_score:.2f}" for _ in [0] if result.t_score is not None]
    scores += [f"Z-score {result.z_score:.2f}" for _ in [0] if result.z_score is not None]
    why = (result.reference or {}).get("why_absent") or []
    note = ("; ".join(scores) + ". " if scores else
            ("T/Z-scores: " + "; ".join(why) + ". " if why else ""))
    note += (f"ACR: > {ACR_NORMAL_ABOVE_MG_CM3:g} normal, {ACR_OSTEOPOROSIS_BELOW_MG_CM3:g}-"
             f"{ACR_NORMAL_ABOVE_MG_CM3:g} low bone mass, < {ACR_OSTEOPOROSIS_BELOW_MG_CM3:g} "
             "osteoporosis (mg/cm3). QCT T-scores are not DXA T-scores; the WHO -2.5 rule does "
             "not apply.")
    return pdf.headline(f"{value} - {result.category.upper()} <font size='10'>(ACR)</font>", note,
                    CATEGORY_VERDICTS.get(result.category, "none"))


def _cement_flags(result) -> list:
    flagged = [lv for lv in result.levels if lv.cement_augmentation]
    if not result.calibrated or not result.interpretation["diagnostic"]:
        return []
    note = Paragraph(pdf.units(CEMENT_NOTE), pdf.NOTE_STYLE)
    if not flagged:
        return [Paragraph(pdf.units(f"Screw fixation: no level below {result.cement_threshold_mg_cm3:g} "
                                "mg/cm3; cement augmentation not indicated by BMD."),
                          pdf.STYLES["Normal"]), note]
    lines = ", ".join(f"{lv.level} ({lv.bmd_mg_cm3:.1f} mg/cm3)" for lv in flagged)
    return [Paragraph(pdf.units(f"<font color='{pdf.ALERT_COLOR.hexval()}' size='11'><b>Cement augmentation "
                            f"suggested for screw fixation at {lines}, below "
                            f"{result.cement_threshold_mg_cm3:g} mg/cm3.</b></font>"),
                      pdf.STYLES["Normal"]), note]


def _reference_chart(result, age_years: float | None):
    """The patient's mean BMD at ``age_years`` on the ACR bands, with the reference population's
    mean +/- 1 SD when the result has one (QCT PRO's chart, possible without T-scores); a line
    across the chart when the age is unknown."""
    ref = result.reference or {}
    curve = ref.get("curve")
    fig, ax = pdf.subplots(figsize=(6.2, 1.75))
    ages = np.array(curve["age_years"]) if curve else np.array([20.0, 90.0])
    top = max(200.0, 1.15 * result.mean_bmd_mg_cm3,
              *(np.array(curve["mean"]) + np.array(curve["sd"]) if curve else [0.0]))
    for low, high, color, label in ((ACR_NORMAL_ABOVE_MG_CM3, top, "#c8e6c9", "normal"),
                                    (ACR_OSTEOPOROSIS_BELOW_MG_CM3, ACR_NORMAL_ABOVE_MG_CM3,
                                     "#ffe0b2", "low bone mass"),
                                    (0.0, ACR_OSTEOPOROSIS_BELOW_MG_CM3, "#ffcdd2", "osteoporosis")):
        ax.axhspan(low, high, color=color, zorder=0)
        ax.text(ages.min() + 1, (low + high) / 2, label, fontsize=6.5, va="center", color="#444444")
    if curve:
        mean, sd = np.array(curve["mean"]), np.array(curve["sd"])
        ax.fill_between(ages, mean - sd, mean + sd, color="#5b8db8", alpha=0.35,
                        label=f"{ref['used']['name']}: mean \u00b1 1 SD")
        ax.plot(ages, mean, color="#1f4e79", lw=1)
    if age_years is not None:
        ax.plot([age_years], [result.mean_bmd_mg_cm3], "o", color="#000000", ms=5, label="patient")
    else:
        ax.axhline(result.mean_bmd_mg_cm3, color="#000000", lw=1, ls=":",
                   label="patient (age unknown)")
    ax.set_xlim(ages.min(), ages.max())
    ax.set_ylim(0, top)
    ax.set_xlabel("age (years)", fontsize=7)
    ax.set_ylabel(f"BMD (mg/cm\u00b3 {result.calibration.material})", fontsize=7)
    ax.tick_params(labelsize=6.5)
    ax.legend(fontsize=6.5, loc="upper right")
    return fig


def _level_views_figure(result, volume_hu: Volume, roi_labels: Volume):
    """For each measured level: an axial view (perpendicular to the body axis) and a sagittal
    view, the ROI outlined from ``roi_labels``."""
    n = len(result.measured_levels)
    fig, axes = pdf.subplots(2, max(n, 1), figsize=(2.0 * max(n, 1), 4.1), squeeze=False)
    for col, lv in enumerate(result.measured_levels):
        axis = np.asarray(lv.roi_axis_ras, float)
        anterior = np.asarray(lv.roi_anterior_ras, float)
        mask_kji = roi_labels.array_kji == col + 1
        left = np.cross(axis, anterior)  # R x A = S, so S x A = -R: patient left
        # (name, image x direction, image y direction, letters at the left / right / top
        # edges); axial views in radiological convention (patient's right on the image's
        # left), sagittal views as Slicer shows them (anterior on the left)
        views = (("axial", left, anterior, ("R", "L", "A")),
                 ("sagittal", -anterior, axis, ("A", "P", "S")))
        for row, (name, horizontal, up, letters) in enumerate(views):
            image, mask = _plane(volume_hu, mask_kji, np.asarray(lv.roi_center_ras_mm), horizontal, up)
            ax = axes[row][col]
            extent = (-VIEW_HALF_WIDTH_MM, VIEW_HALF_WIDTH_MM, -VIEW_HALF_WIDTH_MM, VIEW_HALF_WIDTH_MM)
            ax.imshow(image, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], origin="lower",
                      extent=extent)
            if (mask >= 0.5).any():
                ax.contour(mask, levels=[0.5], colors="#ff3b30", linewidths=0.8, origin="lower",
                           extent=extent)
            if col == 0:
                pdf.scale_bar(ax, 10.0)
            for x, y, letter in zip((0.03, 0.97, 0.5), (0.5, 0.5, 0.97), letters, strict=True):
                ax.text(x, y, letter, transform=ax.transAxes, color="#ffd60a", fontsize=6,
                        ha="center", va="center")
            title = f"{lv.level} {name}"
            if name == "sagittal" and lv.fracture:
                center = np.asarray(lv.roi_center_ras_mm, float)
                draw_heights(ax, lv.fracture, lambda p, c=center, h=horizontal, u=up: np.column_stack(
                    [(p - c) @ h, (p - c) @ u]))
                title += f"\n{grade_label(lv.fracture)}"
            ax.set_title(title, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig


def _plane(volume_hu: Volume, mask_kji: np.ndarray, center_ras_mm: np.ndarray,
           horizontal_ras: np.ndarray, up_ras: np.ndarray):
    """Sample the CT (linear) and a mask (nearest) on a square plane through ``center_ras_mm``."""
    offsets_mm = np.arange(-VIEW_HALF_WIDTH_MM, VIEW_HALF_WIDTH_MM + 1e-9, VIEW_PIXEL_MM)
    v, u = np.meshgrid(offsets_mm, offsets_mm, indexing="ij")
    points_ras = center_ras_mm + u[..., None] * horizontal_ras + v[..., None] * up_ras
    coords_kji = volume_hu.ras_to_ijk_points(points_ras.reshape(-1, 3))[:, ::-1].T
    # sample from the bounding box of the plane only, not the whole volume
    low = np.clip(np.floor(coords_kji.min(axis=1)).astype(int) - 1, 0, None)
    high = np.minimum(np.ceil(coords_kji.max(axis=1)).astype(int) + 2, mask_kji.shape)
    if np.any(high <= low):
        return np.full(u.shape, -1000.0), np.zeros(u.shape, np.float32)
    box = tuple(slice(lo, hi) for lo, hi in zip(low, high, strict=True))
    local = coords_kji - low[:, None]
    image = ndimage.map_coordinates(volume_hu.array_kji[box].astype(np.float32), local, order=1,
                                    cval=-1000.0)
    # the mask is interpolated too, so its 0.5 contour is a smooth outline, not voxel steps
    mask = ndimage.map_coordinates(mask_kji[box].astype(np.float32), local, order=1, cval=0.0)
    return image.reshape(u.shape), mask.reshape(u.shape)

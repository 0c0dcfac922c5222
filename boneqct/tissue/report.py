"""The one-page tissue report: exam, warnings, the fat areas (and the L3 muscle area) as the
headline, an axial view of the fat compartments, then the reference values and the tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, Spacer, Table, TableStyle
from scipy import ndimage

from boneqct.report import pdf
from boneqct.tissue.result import TissueResult
from boneqct.volume import Volume

#: Soft-tissue window of the view (HU): width 400, level 40.
WINDOW_HU = (-160.0, 240.0)
#: Overlay colours (RGB) and opacity of the fat compartments; outline of the L3 muscle region.
SUBCUTANEOUS_RGB, VISCERAL_RGB, FAT_ALPHA = (1.0, 0.84, 0.04), (1.0, 0.42, 0.0), 0.55
MUSCLE_COLOR = "#ff3b30"
#: Gaussian SD (pixels) a mask is smoothed by before its 0.5 contour is drawn (no voxel steps).
CONTOUR_SMOOTHING_PX = 1.0
#: Margin around the body in the view (mm) and the view's printed width (mm).
VIEW_MARGIN_MM, VIEW_WIDTH_MM = 8.0, 70.0


def _fmt(value, spec=".2f") -> str:
    return "-" if value is None else format(value, spec)


def write_tissue_report(path: str | Path, result: TissueResult, rows: list[list],
                        metadata: dict, anonymize: bool = False,
                        volume_hu: Volume | None = None) -> Path:
    """Write tissue_report.pdf (atomically) for a ``TissueResult`` and its CSV ``rows``
    (``outputs.tissue_rows``); with the CT ``volume_hu`` and a live result (its masks), an
    axial view of the fat compartments on the L3 slice (else the middle analysed slice)."""
    story = [pdf.exam_table(metadata, anonymize), *pdf.warnings_box(result.warnings),
             *_headline(result)]
    if volume_hu is not None and result.masks_kji is not None:
        # the view beside the reference values, its legend under them
        k = (result.skeletal_muscle_l3 or {}).get("k", (result.extent["k_first"]
                                                         + result.extent["k_stop"]) // 2)
        side = Table([[pdf.oriented_figure(view_figure(volume_hu, result, k), VIEW_WIDTH_MM),
                       [pdf.table(_reference_rows(result), [32, 64]), Spacer(1, 2 * mm),
                        Paragraph(_view_note(result, k), pdf.NOTE_STYLE)]]],
                      colWidths=[(VIEW_WIDTH_MM + 12) * mm, 98 * mm], hAlign="LEFT")
        side.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"),
                                  ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
        story.append(side)
    else:
        story.append(pdf.table(_reference_rows(result), [55, 125]))
    story += [Spacer(1, 4),
              pdf.table(_tissue_table(rows), [20, 40, 30, 30, 30]), Spacer(1, 4),
              pdf.table(_summary_table(result), [16, 24, 24, 22, 20, 20, 24, 24]),
              Spacer(1, 4), Paragraph(pdf.units(
                  "Muscle is all lean soft tissue (two-compartment model); mineral masses are in "
                  f"g of {result.reference['calibration']['material']}; areas of a slab are "
                  "mean areas per slice."), pdf.NOTE_STYLE)]
    return pdf.write_report(path, "Tissue analysis: body composition", story)


def _headline(result: TissueResult) -> list:
    """Visceral and subcutaneous fat areas (and the L3 skeletal muscle area), first and
    largest; no verdict colour (no reference ranges are applied)."""
    fat = result.fat_compartments
    visceral, subcutaneous = fat["visceral_fat"]["area_cm2"], fat["subcutaneous_fat"]["area_cm2"]
    parts = [f"visceral fat {visceral:.1f}&nbsp;cm2",
             f"subcutaneous fat {subcutaneous:.1f}&nbsp;cm2"]
    sma = result.skeletal_muscle_l3
    if sma is not None:
        parts.insert(0, f"L3 muscle {sma['area_cm2']:.1f}&nbsp;cm2")
    extent = result.extent
    ratio = f"{visceral / subcutaneous:.2f}" if subcutaneous > 0 else "-"
    note = (f"Fat areas: mean per slice over slices {extent['k_first']}-{extent['k_stop'] - 1} "
            f"({extent['slab_thickness_mm']:.1f} mm); visceral/subcutaneous {ratio}. ")
    if sma is not None:
        note += f"L3 muscle area on slice {sma['k']}. "
    note += ("No reference ranges applied (the L3 muscle index needs the patient's height; "
             "cut-offs differ by sex and population).")
    text = " \u00b7 ".join(parts)
    return pdf.headline(text[0].upper() + text[1:], note)


def _reference_rows(result: TissueResult) -> list[list]:
    ref, extent = result.reference, result.extent
    cal = ref["calibration"]
    rows = [
        ["Calibration", f"{cal['method']}, {cal['material']}: slope "
                        f"{cal['slope_hu_per_mg_cm3']:.4f} HU per mg/cm3, intercept "
                        f"{cal['intercept_hu']:.2f} HU"],
        ["Fat / muscle density", f"{ref['fat_density_g_cm3']} / {ref['muscle_density_g_cm3']} g/cm3"],
        ["Fat / muscle CT value (calibration)", f"{ref['fat_hu']:.1f} / {ref['muscle_hu']:.1f} HU"],
        ["Fat / muscle CT value (measured)",
         f"{_fmt(ref['fat_hu_measured'], '.1f')} / {_fmt(ref['muscle_hu_measured'], '.1f')} HU"],
        ["Thresholds", f"air {ref['air_threshold_hu']:g} HU; fat/muscle "
                       f"{ref['fat_muscle_threshold_hu']:.1f} HU; muscle <= "
                       f"{ref['muscle_upper_hu']:g} HU; cortical {ref['cortical_threshold_mg_cm3']:g} "
                       f"mg/cm3 ({ref['cortical_threshold_hu']:.0f} HU); cancellous: enclosed by cortex"],
        ["Extent", f"slices {extent['k_first']}-{extent['k_stop'] - 1} "
                   f"({extent['slab_thickness_mm']:.1f} mm)"],
    ]
    sma = result.skeletal_muscle_l3
    if sma is not None:
        rows.append(["L3 skeletal muscle", f"slice {sma['k']}, {sma['window_hu'][0]:g} to "
                     f"{sma['window_hu'][1]:g} HU, {sma['mask']}"])
    return [[pdf.units(cell) for cell in row] for row in rows]


def _tissue_table(rows: list[list]) -> list[list]:
    header = [pdf.units(c) for c in ("Region", "Tissue", "Mass (g)", "Area (cm2)", "Volume (cm3)")]
    return [header] + [[r[0], r[1].replace("_", " "), f"{r[2]:.2f}", f"{r[3]:.2f}", f"{r[4]:.2f}"]
                       for r in rows[1:]]


def _summary_table(result: TissueResult) -> list[list]:
    summary = [[pdf.units(c) for c in (
        "Region", "Cortical mg/cm3", "Cancellous mg/cm3", "Integral mg/cm3", "Fat/lean vol",
        "Fat/lean mass", "Bone/muscle vol", "Bone/muscle mass")]]
    for region, f in result.regions.items():
        summary.append([region] + [_fmt(f[k], ".1f") for k in (
            "cortical_bmd_mg_cm3", "cancellous_bmd_mg_cm3", "integral_bmd_mg_cm3")] + [
            _fmt(f[k], ".3f") for k in ("fat_lean_ratio_volume", "fat_lean_ratio_mass",
                                        "bone_muscle_ratio_volume", "bone_muscle_ratio_mass")])
    return summary


def _view_note(result: TissueResult, k: int) -> str:
    muscle = ("; red: the skeletal muscle region of the L3 area (Alberta window applied inside "
              "it)" if result.skeletal_muscle_l3 is not None else "")
    return (f"Axial slice {k}, window {WINDOW_HU[0]:g} to {WINDOW_HU[1]:g} HU (W "
            f"{WINDOW_HU[1] - WINDOW_HU[0]:g} / L {(WINDOW_HU[0] + WINDOW_HU[1]) / 2:g}); "
            "patient's right (R) on the left, anterior (A) at the top, as Slicer shows it. "
            f"Yellow: subcutaneous fat; orange: visceral fat (inside the muscle wall){muscle}.")


def _smooth_contour(ax, mask: np.ndarray, color: str, extent) -> None:
    """The 0.5 contour of a mask smoothed by ``CONTOUR_SMOOTHING_PX`` (a smooth outline)."""
    smooth = ndimage.gaussian_filter(mask.astype(np.float32), CONTOUR_SMOOTHING_PX)
    if smooth.max() > 0.5 > smooth.min():
        ax.contour(smooth, levels=[0.5], colors=color, linewidths=0.7, origin="upper",
                   extent=extent)


def view_figure(volume_hu: Volume, result: TissueResult, k: int):
    """Axial slice ``k`` around the body in the soft-tissue window, the subcutaneous and
    visceral fat filled (and the L3 skeletal muscle region outlined), radiologically oriented
    (``pdf.radiological_axial``), with a 50 mm scale bar; no margins, so the orientation
    letters of ``pdf.oriented_figure`` sit at the image's edges."""
    masks, n = result.masks_kji, k - result.extent["k_first"]
    display, (row_mm, col_mm) = pdf.radiological_axial(volume_hu)
    rows, cols = np.nonzero(display(masks["body"][n]))
    if rows.size:
        margin_rows, margin_cols = int(VIEW_MARGIN_MM / row_mm), int(VIEW_MARGIN_MM / col_mm)
        box = (slice(max(rows.min() - margin_rows, 0), rows.max() + margin_rows + 1),
               slice(max(cols.min() - margin_cols, 0), cols.max() + margin_cols + 1))
    else:
        box = (slice(None), slice(None))

    def view(slice_ji):
        return display(slice_ji)[box]

    image = view(volume_hu.array_kji[k].astype(np.float32))
    extent = (0.0, image.shape[1] * col_mm, image.shape[0] * row_mm, 0.0)
    fat, cavity = view(masks["fat"][n]), view(masks["cavity"][n])
    height_in = 3.2 * image.shape[0] * row_mm / (image.shape[1] * col_mm)
    fig, ax = pdf.subplots(figsize=(3.2, height_in))
    fig.subplots_adjust(0, 0, 1, 1)
    ax.imshow(image, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], extent=extent,
              interpolation="bilinear")
    for fraction, rgb in ((fat * ~cavity, SUBCUTANEOUS_RGB), (fat * cavity, VISCERAL_RGB)):
        overlay = np.zeros((*fraction.shape, 4), np.float32)
        overlay[..., :3] = rgb
        overlay[..., 3] = FAT_ALPHA * np.clip(fraction, 0.0, 1.0)
        ax.imshow(overlay, extent=extent, interpolation="bilinear")
    if result.skeletal_muscle_l3 is not None:
        _smooth_contour(ax, view(masks["skeletal_muscle"][n]), MUSCLE_COLOR, extent)
    ax.set_axis_off()
    pdf.scale_bar(ax, 50.0)
    return fig

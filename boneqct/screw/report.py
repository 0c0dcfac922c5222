"""The screw-trajectory report: exam, calibration, one table row per screw, the segments along
each path, the cement suggestion with its source, and two oblique reformats along each screw
(SimpleITK resampling of the CT on planes holding the screw's axis)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, Spacer

from boneqct.io.images import volume_to_sitk
from boneqct.report import pdf
from boneqct.spine.interpret import CEMENT_NOTE
from boneqct.volume import LPS_TO_RAS, Volume

#: Pixel size (mm) and margin beyond the screw's ends and sides (mm) of the reformats.
VIEW_PIXEL_MM = 0.3
VIEW_MARGIN_MM = 15.0
#: Bone window (HU) of the reformats.
WINDOW_HU = (-250.0, 1000.0)
#: Value (HU) of reformat pixels outside the CT.
OUTSIDE_HU = -1024.0
SCREW_COLOR, SHELL_COLOR = "#ff3b30", "#ffd60a"


def oblique_plane(volume_hu: Volume, entry_ras_mm, tip_ras_mm, across_ras,
                  half_width_mm: float) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The CT resampled (linear, SimpleITK) on the plane through the screw's axis spanned by
    the axis (image x, entry at 0) and ``across_ras`` (image y, made perpendicular to it).

    Returns the image (rows along y, HU) and its extent (x0, x1, y0, y1) in mm."""
    entry = np.asarray(entry_ras_mm, float)
    axis = np.asarray(tip_ras_mm, float) - entry
    length_mm = float(np.linalg.norm(axis))
    axis /= length_mm
    across = np.asarray(across_ras, float) - np.dot(across_ras, axis) * axis
    across /= np.linalg.norm(across)
    normal = np.cross(axis, across)
    x0, x1 = -VIEW_MARGIN_MM, length_mm + VIEW_MARGIN_MM
    nx = int(np.ceil((x1 - x0) / VIEW_PIXEL_MM))
    ny = int(np.ceil(2 * half_width_mm / VIEW_PIXEL_MM))
    origin_ras = entry + x0 * axis - half_width_mm * across
    to_lps = LPS_TO_RAS[:3, :3]
    reference = sitk.Image(nx, ny, 1, sitk.sitkFloat32)
    reference.SetSpacing((VIEW_PIXEL_MM, VIEW_PIXEL_MM, 1.0))
    reference.SetOrigin((to_lps @ origin_ras).tolist())
    reference.SetDirection(np.column_stack([to_lps @ axis, to_lps @ across,
                                            to_lps @ normal]).flatten().tolist())
    ct = sitk.Cast(volume_to_sitk(volume_hu), sitk.sitkFloat32)
    plane = sitk.Resample(ct, reference, sitk.Transform(), sitk.sitkLinear, OUTSIDE_HU)
    image = sitk.GetArrayFromImage(plane)[0]
    return image, (x0, x0 + nx * VIEW_PIXEL_MM, -half_width_mm, -half_width_mm + ny * VIEW_PIXEL_MM)


def view_directions(entry_ras_mm, tip_ras_mm) -> tuple[tuple[str, np.ndarray], ...]:
    """The two planes shown for a screw: "axial-oblique" (holding the axis, across it towards
    the patient's left-right, as pedicle screws are planned on axial slices) and
    "sagittal-oblique" (holding the axis and the direction perpendicular to the first plane)."""
    axis = np.asarray(tip_ras_mm, float) - np.asarray(entry_ras_mm, float)
    axis /= np.linalg.norm(axis)
    superior = np.array([0.0, 0.0, 1.0])
    across = np.cross(superior, axis)
    if np.linalg.norm(across) < 1e-3:  # a screw along S-I: the first plane is coronal
        across = np.array([1.0, 0.0, 0.0])
    across /= np.linalg.norm(across)
    return ("axial-oblique", across), ("sagittal-oblique", np.cross(axis, across))


def _screw_views_figure(result, volume_hu: Volume):
    """Two oblique reformats per measured screw, the cylinder and shell outlined."""
    screws = [s for s in result.screws if s.measured]
    fig, axes = pdf.subplots(len(screws), 2, figsize=(7.0, 2.4 * len(screws)), squeeze=False)
    for row, screw in enumerate(screws):
        radius = screw.diameter_mm / 2.0
        half_width_mm = radius + screw.shell_mm + VIEW_MARGIN_MM
        for col, (name, across) in enumerate(view_directions(screw.entry_ras_mm, screw.tip_ras_mm)):
            image, extent = oblique_plane(volume_hu, screw.entry_ras_mm, screw.tip_ras_mm, across,
                                          half_width_mm)
            ax = axes[row][col]
            ax.imshow(image, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], origin="lower",
                      extent=extent)
            for r, color in ((radius, SCREW_COLOR), (radius + screw.shell_mm, SHELL_COLOR)):
                ax.plot([0, screw.length_mm, screw.length_mm, 0, 0], [-r, -r, r, r, -r],
                        color=color, lw=0.7)
            for segment in screw.segments[1:]:
                ax.plot([segment["start_mm"]] * 2, [-radius, radius], color=SCREW_COLOR, lw=0.5)
            ax.set_title(f"{screw.name} {name} (entry at 0 mm)", fontsize=7)
            ax.tick_params(labelsize=6)
            ax.set_xlabel("mm along the screw", fontsize=6)
    fig.tight_layout()
    return fig


def _value(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _screw_table(result) -> object:
    unit = f"mg/cm3 {result.calibration.material}" if result.calibrated else "HU"
    rows = [["Screw", "Level", "Length / diam. (mm)", f"Cylinder ({unit})", f"Shell ({unit})",
             f"Min. segment ({unit})", "Cortical contact", "Cement"]]
    for s in result.screws:
        size = f"{s.length_mm:.1f} / {s.diameter_mm:g}"
        if not s.measured:
            rows.append([s.name, "-", size, "not measured", "-", "-", "-", "-"])
            continue
        cylinder, shell, low = ((s.bmd_mg_cm3, s.shell_bmd_mg_cm3, s.min_segment_bmd_mg_cm3)
                                if result.calibrated else
                                (s.mean_hu, s.shell_mean_hu, s.min_segment_hu))
        cement = "-" if s.cement_suggested is None else ("YES" if s.cement_suggested else "no")
        rows.append([s.name, s.level or "-", size, _value(cylinder), _value(shell), _value(low),
                     f"{100 * s.cortical_contact_fraction:.0f}%", cement])
    return pdf.table(rows, [18, 12, 25, 26, 24, 27, 21, 17])


def _segment_table(result) -> object:
    rows = [["Screw", "Segment (mm from entry)", "Part", "BMD (mg/cm3)" if result.calibrated
             else "Mean (HU)", "In body"]]
    for s in result.screws:
        for g in s.segments:
            value = g["bmd_mg_cm3"] if result.calibrated else g["mean_hu"]
            low = " (min.)" if g["index"] == s.min_segment_index else ""
            rows.append([s.name, f"{g['start_mm']:.0f}-{g['end_mm']:.0f}", g["part"] or "-",
                         _value(value) + low, "-" if g["in_body_fraction"] is None
                         else f"{100 * g['in_body_fraction']:.0f}%"])
    return pdf.table(rows, [24, 40, 24, 34, 20])


def _cement_lines(result) -> list:
    if not result.calibrated or not result.interpretation["diagnostic"]:
        return []
    flagged = [s for s in result.screws if s.cement_suggested]
    text = (f"Screws whose cylinder BMD is below {result.cement_threshold_mg_cm3:g} mg/cm3: "
            + (", ".join(f"{s.name} ({s.bmd_mg_cm3:.1f})" for s in flagged) if flagged
               else "none") + ".")
    color = pdf.ALERT_COLOR.hexval() if flagged else "#000000"
    return [Paragraph(f"<font color='{color}'><b>{text}</b></font>", pdf.STYLES["Normal"]),
            Paragraph(CEMENT_NOTE, pdf.STYLES["Italic"])]


def write_screw_report(path: str | Path, result, volume_hu: Volume, metadata: dict,
                       anonymize: bool = False) -> Path:
    """Write the screw report PDF (atomically) for a ``ScrewResult``."""
    shell = result.screws[0].shell_mm
    story = [pdf.exam_table(metadata, anonymize), *pdf.warnings_box(result.warnings), Spacer(1, 2 * mm)]
    story += [Paragraph("Planned screws", pdf.STYLES["Heading2"]), _screw_table(result),
              Paragraph(f"Cylinder: the screw's volume; shell: {shell:g} mm around it (the bone "
                        "the thread cuts into); cortical contact: share of the shell above "
                        f"{next((s.cortical_threshold for s in result.screws if s.measured), '-')}"
                        ". Voxels weighted by the share of their volume in each region.",
                        pdf.STYLES["Italic"]), Spacer(1, 1.5 * mm)]
    story += _cement_lines(result)
    story += [Paragraph("Along each path", pdf.STYLES["Heading2"]), _segment_table(result)]
    if any(s.measured for s in result.screws):
        story += [Spacer(1, 2 * mm), pdf.figure_flowable(_screw_views_figure(result, volume_hu), 175)]
    return pdf.write_report(path, "Screw trajectories: bone density along planned screws", story)

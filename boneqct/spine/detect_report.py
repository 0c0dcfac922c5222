"""The page of an automatic vertebra detection: a sagittal and a coronal reformat with the
level names at the detected centres, the table of levels, and the warnings (PDF and PNG).

Orientation as Slicer shows the views: sagittal with anterior on the left, coronal in the
radiological convention (the patient's right on the left), superior up.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from boneqct.io.atomic import atomic_path
from boneqct.report import pdf
from boneqct.spine.detect import DetectionResult, working_grid
from boneqct.volume import Volume, ras_to_lps


def detection_figure(volume_hu: Volume, result: DetectionResult):
    """The two reformats (matplotlib Figure) through the median detected centre, every
    detected level marked and named."""
    grid = working_grid(volume_hu)
    s = grid.spacing_mm
    centres = np.array([(ras_to_lps(np.asarray(lv.centroid_ras_mm)) - grid.origin_lps_mm) / s
                        for lv in result.levels])      # x, y, z index
    x_mid, y_mid = (int(round(v)) for v in np.median(centres[:, :2], axis=0))
    nz, ny, nx = grid.hu.shape
    fig, (sag, cor) = pdf.subplots(1, 2, figsize=(8.0, 5.0))
    extent_sag = (0, ny * s, 0, nz * s)      # y index grows posterior: anterior on the left
    extent_cor = (0, nx * s, 0, nz * s)      # x index grows to the patient's left
    sag.imshow(grid.hu[:, :, np.clip(x_mid, 0, nx - 1)], cmap="gray", vmin=-250, vmax=1000,
               origin="lower", extent=extent_sag)
    cor.imshow(grid.hu[:, np.clip(y_mid, 0, ny - 1), :], cmap="gray", vmin=-250, vmax=1000,
               origin="lower", extent=extent_cor)
    for lv, (x, y, z) in zip(result.levels, centres, strict=True):
        for ax, u in ((sag, y), (cor, x)):
            ax.plot(u * s, z * s, "o", color="#ffb000", markersize=4)
            ax.annotate(lv.level, (u * s, z * s), xytext=(6, 0), textcoords="offset points",
                        color="#ffb000", fontsize=8, va="center")
    sag.set_title("sagittal (anterior left)", fontsize=9)
    cor.set_title("coronal (patient's right on the left)", fontsize=9)
    for ax in (sag, cor):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def write_detection_report(pdf_path: str | Path, png_path: str | Path, result: DetectionResult,
                           volume_hu: Volume, metadata: dict, anonymize: bool = False
                           ) -> tuple[Path, Path]:
    """Write the detection page as a PDF and the reformats alone as a PNG, atomically."""
    fig = detection_figure(volume_hu, result)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    with atomic_path(Path(png_path)) as tmp:
        Path(tmp).write_bytes(buffer.getvalue())
    anchors = ", ".join(f"{a['anchor']} ({a['level']})" for a in result.anchors)
    rows = [["level", "centre R, A, S (mm)", "confidence", "named by"]]
    rows += [[lv.level, ", ".join(f"{v:.1f}" for v in lv.centroid_ras_mm),
              f"{lv.confidence:.2f}", lv.named_by] for lv in result.levels]
    pdf.write_report(pdf_path, "Vertebra detection", [
        pdf.exam_table(metadata, anonymize), *pdf.warnings_box(result.warnings),
        pdf.table([["method", result.method], ["anchors", anchors],
               ["transitional anatomy", result.transitional or "none found"]]),
        pdf.figure_flowable(fig, 170.0), pdf.table(rows)])
    return Path(pdf_path), Path(png_path)

"""Files of a hip analysis, each written atomically: hip.json, hip.csv, the projection (NIfTI,
g/cm2, in the DXA position) and its PNG with the regions drawn, and report.pdf."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from boneqct.calibration.provenance import anonymized_provenance
from boneqct.hip.pipeline import HipResult
from boneqct.hip.rois import ROI_NAMES
from boneqct.io import (
    anonymized_metadata,
    atomic_path,
    write_json_atomic,
    write_text_atomic,
    write_volume,
)
from boneqct.report.pdf import subplots

CSV_COLUMNS = ("roi", "abmd_g_cm2", "vbmd_mg_cm3", "bmc_g", "area_cm2", "volume_cm3", "t_score",
               "z_score")
ROI_COLORS = {1: "#ffd60a", 2: "#30d158", 3: "#0a84ff"}


def hip_csv(result: HipResult) -> str:
    """One row per region, units in the column names."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for name in ROI_NAMES:
        roi = result.rois[name]
        writer.writerow([name, *("" if roi.get(k) is None else f"{roi[k]:.6g}" for k in CSV_COLUMNS[1:])])
    return buffer.getvalue()


def projection_figure(result: HipResult, title: str | None = None):
    """The areal density image with the regions outlined, like a DXA printout."""
    projection = result.projection
    image = projection.areal_density_g_cm2
    rows, cols = image.shape
    extent = (0, cols * projection.pixel_mm, rows * projection.pixel_mm, 0)
    fig, ax = subplots(figsize=(4.0, 4.0 * rows / cols))
    ax.imshow(image, cmap="gray", vmin=0, vmax=max(float(image.max()), 1e-6), extent=extent)
    x_mm = (np.arange(cols) + 0.5) * projection.pixel_mm
    y_mm = (np.arange(rows) + 0.5) * projection.pixel_mm
    for label, color in ROI_COLORS.items():
        region = (result.roi_labels == label) & (projection.volume_cm3 > 0)
        ax.contour(x_mm, y_mm, region.astype(float), levels=[0.5],
                   colors=color, linewidths=0.8)
    ax.set_title(title or f"{result.side} hip, areal BMD (g/cm2)", fontsize=8)
    ax.set_xlabel("mm", fontsize=7)
    ax.tick_params(labelsize=6)
    return fig


def write_hip_outputs(out_dir: str | Path, result: HipResult, metadata: dict,
                      anonymize: bool = False) -> dict[str, Path]:
    """Write every output of a hip analysis into ``out_dir``; return their paths."""
    from boneqct.hip.report import write_hip_report

    out_dir = Path(out_dir)
    shown = anonymized_metadata(metadata) if anonymize else metadata
    paths = {name: out_dir / file for name, file in (
        ("json", "hip.json"), ("csv", "hip.csv"), ("projection", "hip_projection.nii.gz"),
        ("png", "hip_projection.png"), ("report", "report.pdf"))}
    document = {**result.to_dict(), "exam": shown}
    if anonymize:
        document["calibration"]["scan"] = anonymized_provenance(document["calibration"]["scan"])
    write_json_atomic(paths["json"], document)
    write_text_atomic(paths["csv"], hip_csv(result))
    write_volume(result.projection.as_volume(result.frame.dxa_rotation_ras()), paths["projection"])
    fig = projection_figure(result)
    with atomic_path(paths["png"]) as tmp:
        fig.savefig(tmp, format="png", dpi=200, bbox_inches="tight")
    write_hip_report(paths["report"], result, metadata, anonymize)
    return paths


__all__ = ["hip_csv", "projection_figure", "write_hip_outputs"]

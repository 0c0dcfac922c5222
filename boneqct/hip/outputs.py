"""Files of a hip analysis, each written atomically: hip.json, hip.csv, the projection (NIfTI,
g/cm2, in the DXA position) with its region labels (NIfTI) and its PNG with the regions drawn,
and hip_report.pdf."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from boneqct.calibration.provenance import anonymized_provenance
from boneqct.hip.pipeline import HipResult
from boneqct.hip.report import projection_figure, write_hip_report
from boneqct.hip.rois import ROI_NAMES
from boneqct.io import (
    anonymized_metadata,
    atomic_path,
    write_json_atomic,
    write_text_atomic,
    write_volume,
)

CSV_COLUMNS = ("roi", "abmd_g_cm2", "vbmd_mg_cm3", "bmc_g", "area_cm2", "volume_cm3", "t_score",
               "z_score")


def hip_csv(result: HipResult) -> str:
    """One row per CTXA region, then one per volumetric head/neck region (``head_vbmd``,
    ``subcapital_vbmd``, ``neck_vbmd``: vBMD and volume only); units in the column names."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    rows = [(name, result.rois[name]) for name in ROI_NAMES]
    if result.head_neck is not None:
        rows += [(f"{name}_vbmd", region)
                 for name, region in result.head_neck["regions"].items()]
    for name, roi in rows:
        writer.writerow([name, *("" if roi.get(k) is None else f"{roi[k]:.6g}" for k in CSV_COLUMNS[1:])])
    return buffer.getvalue()


def write_hip_outputs(out_dir: str | Path, result: HipResult, metadata: dict,
                      anonymize: bool = False) -> dict[str, Path]:
    """Write every output of a hip analysis into ``out_dir``; return their paths.

    ``metadata`` is the exam's (``Volume.metadata``): the hip outputs draw no CT view, so they
    need no CT. A result read back with ``HipResult.from_dict`` writes the same files when it
    was given its projection image and region labels."""
    fig = projection_figure(result)  # first: refused without the images, before any file
    out_dir = Path(out_dir)
    shown = anonymized_metadata(metadata) if anonymize else metadata
    paths = {name: out_dir / file for name, file in (
        ("json", "hip.json"), ("csv", "hip.csv"), ("projection", "hip_projection.nii.gz"),
        ("regions", "hip_regions.nii.gz"), ("png", "hip_projection.png"),
        ("report", "hip_report.pdf"))}
    document = {**result.to_dict(), "exam": shown}
    if anonymize:
        document["calibration"]["scan"] = anonymized_provenance(document["calibration"]["scan"])
    write_json_atomic(paths["json"], document)
    write_text_atomic(paths["csv"], hip_csv(result))
    write_volume(result.projection_image, paths["projection"])
    write_volume(result.regions_volume(), paths["regions"])
    with atomic_path(paths["png"]) as tmp:
        fig.savefig(tmp, format="png", dpi=200, bbox_inches="tight")
    write_hip_report(paths["report"], result, metadata, anonymize)
    return paths


__all__ = ["hip_csv", "write_hip_outputs"]

"""Files of a spine analysis: spine.json, spine.csv, the ROIs (NIfTI label map and Slicer
markups of their centres) and spine_report.pdf, each written atomically."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from boneqct.calibration.provenance import anonymized_provenance
from boneqct.io import anonymized_metadata, write_json_atomic, write_text_atomic, write_volume
from boneqct.spine.detect import DetectionResult
from boneqct.spine.fracture import grade_cells
from boneqct.spine.levels import LEVEL_NAMES
from boneqct.spine.pipeline import SpineResult, roi_label_map
from boneqct.spine.report import write_spine_report
from boneqct.spine.seeds import write_markups_points
from boneqct.volume import Volume

#: File name of the detected level centres (markups, editable, read back by --seeds).
DETECTED_MARKUPS = "detected_levels.mrk.json"
CSV_COLUMNS = ("level", "measured", "bmd_mg_cm3", "sd_mg_cm3", "median_mg_cm3", "mean_hu", "sd_hu",
               "n_voxels", "roi_volume_mm3", "roi_center_r_mm", "roi_center_a_mm",
               "roi_center_s_mm", "cement_augmentation", "qc_passed", "used", "excluded", "reason",
               "genant_grade", "fracture_type")


def spine_csv(result: SpineResult) -> str:
    """One row per level, units in the column names."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for lv in result.levels:
        r, a, s = lv.roi_center_ras_mm or (None, None, None)
        writer.writerow([lv.level, lv.measured, _num(lv.bmd_mg_cm3), _num(lv.sd_mg_cm3),
                         _num(lv.median_mg_cm3), _num(lv.mean_hu), _num(lv.sd_hu),
                         "" if lv.n_voxels is None else lv.n_voxels, _num(lv.roi_volume_mm3),
                         _num(r), _num(a), _num(s), _cell(lv.cement_augmentation),
                         _cell(lv.qc and lv.qc["passed"]), lv.level in result.levels_used,
                         lv.excluded, lv.reason or "", *grade_cells(lv.fracture)])
    return buffer.getvalue()


def write_spine_outputs(out_dir: str | Path, result: SpineResult, volume_hu: Volume,
                        anonymize: bool = False, roi_labels: Volume | None = None,
                        detection: DetectionResult | None = None) -> dict[str, Path]:
    """Write every output file of a spine analysis into ``out_dir``; return their paths.

    ``roi_labels`` (the ROI label map on the CT grid) is needed for a result read back with
    ``SpineResult.from_dict``, which holds no masks; a live result makes its own. With a
    ``detection`` (levels found without seeds), spine.json gains ``detection`` and the
    detected centres are written as markups (``write_detected_levels``)."""
    out_dir = Path(out_dir)
    metadata = anonymized_metadata(volume_hu.metadata) if anonymize else volume_hu.metadata
    document = result.to_dict()
    document["exam"] = metadata
    detected = {}
    if detection is not None:
        document["detection"] = detection.to_dict()
        detected["detected_levels"] = write_detected_levels(detection, out_dir)
    if anonymize and document["calibration"] is not None:
        document["calibration"]["scan"] = anonymized_provenance(document["calibration"]["scan"])
    paths = {name: out_dir / file for name, file in (
        ("json", "spine.json"), ("csv", "spine.csv"), ("rois", "spine_rois.nii.gz"),
        ("markups", "spine_roi_centers.mrk.json"), ("report", "spine_report.pdf"))}
    write_json_atomic(paths["json"], document)
    write_text_atomic(paths["csv"], spine_csv(result))
    roi_labels = roi_labels if roi_labels is not None else roi_label_map(volume_hu, result)
    write_volume(roi_labels, paths["rois"])
    write_markups_points({lv.level: lv.roi_center_ras_mm for lv in result.measured_levels},
                         paths["markups"], name="ROI centres")
    write_spine_report(paths["report"], result, volume_hu, roi_labels, metadata,
                       anonymize=anonymize)
    return {**paths, **detected}


def write_detected_levels(detection: DetectionResult, out_dir: str | Path,
                          levels=LEVEL_NAMES) -> Path:
    """The detected centres of ``levels`` (default: those spine QCT measures) as a Slicer
    markups point list (``DETECTED_MARKUPS``, LPS, one point labelled by its level each): move
    or rename points in Slicer and rerun with ``--seeds``."""
    return write_markups_points(detection.seeds(levels), Path(out_dir) / DETECTED_MARKUPS,
                                name="Detected levels")


def _cell(value) -> str:
    """A CSV cell of a flag that may be absent."""
    return "" if value is None else str(bool(value))


def _num(value) -> str:
    return "" if value is None else f"{value:.4f}"

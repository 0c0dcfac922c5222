"""Files of a screw-trajectory analysis: screw.json, screw.csv, the screws as Slicer line
markups and screw_report.pdf, each written atomically (the CLI puts them in place as one set
with ``boneqct.io.atomic.write_output_set``)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from boneqct.calibration.provenance import anonymized_provenance
from boneqct.io import anonymized_metadata, write_json_atomic, write_text_atomic
from boneqct.screw.lines import write_markups_lines
from boneqct.screw.pipeline import ScrewResult
from boneqct.screw.report import write_screw_report
from boneqct.screw.trajectory import ScrewLine
from boneqct.volume import Volume

CSV_COLUMNS = ("name", "measured", "level", "length_mm", "diameter_mm", "bmd_mg_cm3", "mean_hu",
               "shell_bmd_mg_cm3", "shell_mean_hu", "min_segment_bmd_mg_cm3", "min_segment_hu",
               "cortical_contact_fraction", "cement_suggested", "entry_r_mm", "entry_a_mm",
               "entry_s_mm", "tip_r_mm", "tip_a_mm", "tip_s_mm", "reason")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def screw_csv(result: ScrewResult) -> str:
    """One row per screw, units in the column names."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in result.screws:
        values = vars(s) | dict(zip(CSV_COLUMNS[13:19], [*s.entry_ras_mm, *s.tip_ras_mm],
                                    strict=True))
        writer.writerow([_cell(values[column]) for column in CSV_COLUMNS])
    return buffer.getvalue()


def write_screw_outputs(out_dir: str | Path, result: ScrewResult, volume_hu: Volume,
                        anonymize: bool = False) -> dict[str, Path]:
    """Write every output file of a screw analysis into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    metadata = anonymized_metadata(volume_hu.metadata) if anonymize else volume_hu.metadata
    document = result.to_dict()
    document["exam"] = metadata
    if anonymize and document["calibration"] is not None:
        document["calibration"]["scan"] = anonymized_provenance(document["calibration"]["scan"])
    paths = {name: out_dir / file for name, file in (
        ("json", "screw.json"), ("csv", "screw.csv"), ("markups", "screw_lines.mrk.json"),
        ("report", "screw_report.pdf"))}
    write_json_atomic(paths["json"], document)
    write_text_atomic(paths["csv"], screw_csv(result))
    write_markups_lines([ScrewLine(s.name, np.asarray(s.entry_ras_mm), np.asarray(s.tip_ras_mm))
                         for s in result.screws], paths["markups"])
    write_screw_report(paths["report"], result, volume_hu, metadata, anonymize=anonymize)
    return paths

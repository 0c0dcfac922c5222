"""The batch summary: one row per case (status, message, key results with their units), written
as ``summary.csv`` and ``summary.parquet``.

Key results are read from each finished case's result document (``spine.json``, ``hip.json``,
``fe.json``, ``tissue.json``, ``vfa.json``), so the summary holds the very numbers of the case's outputs.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from boneqct.io.atomic import atomic_path, write_text_atomic


@dataclass(frozen=True)
class Column:
    """A summary column: its name (with unit), kind (``number``, ``text``, ``flag``), the
    analysis whose document holds it and the path of keys into that document, or the function
    of the document that computes it."""

    name: str
    kind: str
    analysis: str = ""
    keys: tuple[str, ...] = ()
    derive: Callable[[dict], Any] | None = None


def _graded(document: dict) -> list[tuple[str, int]]:
    """(level, Genant grade) of the graded levels of a ``vfa.json``."""
    return [(lv["level"], lv["fracture"]["genant_grade"]) for lv in document.get("levels", [])
            if (lv.get("fracture") or {}).get("genant_grade") is not None]


def _max_grade(document: dict) -> int | None:
    grades = [grade for _, grade in _graded(document)]
    return max(grades) if grades else None


def _fractured(document: dict) -> str:
    return "/".join(level for level, grade in _graded(document) if grade >= 1)


#: Columns every row has.
CASE_COLUMNS = (
    Column("case_id", "text"), Column("analysis", "text"), Column("status", "text"),
    Column("message", "text"), Column("age_years", "number"), Column("sex", "text"),
    Column("n_warnings", "number"), Column("elapsed_s", "number"), Column("worker", "text"),
    Column("options_hash", "text"), Column("output_folder", "text"),
)
#: Key results of each analysis, by the path of keys into its result document.
RESULT_COLUMNS = (
    Column("spine_mean_bmd_mg_cm3", "number", "spine", ("mean_bmd_mg_cm3",)),
    Column("spine_mean_hu", "number", "spine", ("mean_hu",)),
    Column("spine_levels_used", "text", "spine", ("levels_used",)),
    Column("spine_category", "text", "spine", ("category",)),
    Column("spine_material", "text", "spine", ("material",)),
    Column("hip_total_abmd_g_cm2", "number", "hip", ("rois", "total", "abmd_g_cm2")),
    Column("hip_neck_abmd_g_cm2", "number", "hip", ("rois", "neck", "abmd_g_cm2")),
    Column("hip_total_t_score", "number", "hip", ("rois", "total", "t_score")),
    Column("hip_category", "text", "hip", ("interpretation", "category")),
    Column("fe_level", "text", "fe", ("level",)),
    Column("fe_strength_n", "number", "fe", ("strength_n",)),
    Column("fe_stiffness_n_mm", "number", "fe", ("stiffness_n_mm",)),
    Column("fe_fragile", "flag", "fe", ("fragile",)),
    Column("tissue_fat_mass_g", "number", "tissue", ("regions", "image", "fat", "mass_g")),
    Column("tissue_muscle_mass_g", "number", "tissue", ("regions", "image", "muscle", "mass_g")),
    Column("tissue_l3_muscle_area_cm2", "number", "tissue", ("skeletal_muscle_l3", "area_cm2")),
    Column("vfa_levels_graded", "number", "vfa", derive=lambda d: len(_graded(d))),
    Column("vfa_max_genant_grade", "number", "vfa", derive=_max_grade),
    Column("vfa_fractured_levels", "text", "vfa", derive=_fractured),
)


def result_document(case_folder: Path, analysis: str) -> dict | None:
    """The result document of a finished case, or None when it is absent or unreadable."""
    try:
        return json.loads((case_folder / f"{analysis}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _lookup(document, keys: tuple[str, ...]):
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    if isinstance(document, list):
        return "/".join(map(str, document))
    return document


def summary_row(case, record: dict | None, out_dir: Path) -> dict:
    """One summary row: the case's last run-log record and, when it finished, its key results
    and the age and sex it was measured with (the result's, else the manifest's)."""
    record = record or {"status": "not run", "message": "the case has not run yet"}
    row = {"case_id": case.case_id, "analysis": case.analysis, "status": record["status"],
           "message": record.get("message", ""), "elapsed_s": record.get("elapsed_s"),
           "worker": record.get("worker"), "options_hash": record.get("options_hash"),
           "output_folder": case.case_id if record["status"] == "ok" else None}
    inputs = case.settings["inputs"]
    row["age_years"], row["sex"] = inputs.get("age"), inputs.get("sex")
    document = result_document(out_dir / case.case_id, case.analysis) \
        if record["status"] == "ok" else None
    if document is not None:
        row["n_warnings"] = len(document.get("warnings") or [])
        for column in RESULT_COLUMNS:
            if column.analysis == case.analysis:
                row[column.name] = column.derive(document) if column.derive \
                    else _lookup(document, column.keys)
        reference = document.get("reference") if case.analysis == "spine" else None
        if isinstance(reference, dict):
            row["age_years"] = reference.get("age_years", row["age_years"])
            row["sex"] = reference.get("sex") or row["sex"]
        elif case.analysis == "fe":
            row["sex"] = document.get("sex") or row["sex"]
    return row


def summary_columns(rows: list[dict]) -> tuple[Column, ...]:
    """The case columns and the result columns of the analyses present."""
    analyses = {row["analysis"] for row in rows}
    return CASE_COLUMNS + tuple(c for c in RESULT_COLUMNS if c.analysis in analyses)


def write_summary(rows: list[dict], out_dir: Path) -> dict[str, Path]:
    """Write ``summary.csv`` and ``summary.parquet`` (each atomically); returns their paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = summary_columns(rows)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([c.name for c in columns])
    for row in rows:
        writer.writerow(["" if row.get(c.name) is None else _csv_value(row[c.name])
                         for c in columns])
    paths = {"csv": write_text_atomic(out_dir / "summary.csv", text.getvalue())}
    types = {"number": pa.float64(), "text": pa.string(), "flag": pa.bool_()}
    table = pa.table({c.name: pa.array([_typed(row.get(c.name), c.kind) for row in rows],
                                       type=types[c.kind]) for c in columns})
    paths["parquet"] = out_dir / "summary.parquet"
    with atomic_path(paths["parquet"]) as tmp:
        pq.write_table(table, tmp)
    return paths


def _csv_value(value) -> str:
    """A cell: numbers with full precision (repr), so the CSV holds the results' own values."""
    return repr(value) if isinstance(value, float) else str(value)


def _typed(value, kind: str):
    if value is None:
        return None
    if kind == "number":
        return float(value)
    if kind == "flag":
        return bool(value)
    return str(value)

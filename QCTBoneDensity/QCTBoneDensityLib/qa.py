"""QA adapters: an ESP-like QA phantom volume node -> ``boneqct.qa`` -> a table node.

One row per insert (and per calibration rod of a phantom calibration): nominal value,
measured value, deviation, HU statistics, and the drift flags of the insert's control chart
over the whole QA log after this session was appended (``boneqct.qa.control``). Every column
has a unit label and a description.

Only ``slicer.vtkMRML*`` and ``vtk`` are used (no Qt); the core is imported inside the
functions, so this file loads before the core's dependencies are installed.
"""

from __future__ import annotations

import math
from pathlib import Path

import slicer
import vtk

from BoneQCTLib.tables import add_column

ATTRIBUTE_QA_LOG = "BoneQCT.QA.Log"
ATTRIBUTE_QA_SESSION = "BoneQCT.QA.Session"
ATTRIBUTE_QA_PHANTOM = "BoneQCT.QA.PhantomType"
ATTRIBUTE_QA_SESSIONS = "BoneQCT.QA.SessionsInLog"
ATTRIBUTE_QA_FLAGGED = "BoneQCT.QA.Flagged"


def _number(value) -> float:
    return math.nan if value is None else float(value)


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def qa_rows_to_table_node(rows: list[dict], charts: dict, table_node=None, name: str = "BoneQCT QA"):
    """Write ``measure_esp`` rows with their control-chart flags into a table node.

    Args:
        rows: from ``boneqct.qa.measure_esp``.
        charts: insert name -> ``boneqct.qa.ControlLimits`` of the log (inserts without a
            chart get empty flags).
        table_node: table to overwrite (None creates one).
    """
    if table_node is None:
        table_node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", name)
    unit = rows[0]["unit"] if rows else ""
    last = {insert: len(c.values) - 1 for insert, c in charts.items()}

    def flag(row, test):
        chart = charts.get(row["insert"])
        return "" if chart is None else _yes_no(test(chart, last[row["insert"]]))

    columns = (
        ("Insert", vtk.vtkStringArray, "", "Insert (or calibration rod) of the QA phantom",
         lambda r: str(r["insert"])),
        ("Nominal (mg/cm3)", vtk.vtkDoubleArray, "mg/cm3", "Nominal density of the insert",
         lambda r: _number(r["nominal_mg_cm3"])),
        ("Measured", vtk.vtkDoubleArray, unit,
         "Measured value: density in the calibration's material, or mean HU when uncalibrated",
         lambda r: _number(r["value"])),
        ("Deviation (%)", vtk.vtkDoubleArray, "%",
         "Measured minus nominal, percent of nominal (empty for rods and uncalibrated values)",
         lambda r: _number(r["deviation_percent"])),
        ("Mean (HU)", vtk.vtkDoubleArray, "HU", "Mean CT number in the insert's ROI",
         lambda r: _number(r["mean_hu"])),
        ("SD (HU)", vtk.vtkDoubleArray, "HU", "Standard deviation of the CT numbers in the ROI",
         lambda r: _number(r["sd_hu"])),
        ("Voxels", vtk.vtkIntArray, "voxels", "Number of voxels in the ROI",
         lambda r: int(r["n_voxels"])),
        ("Drift", vtk.vtkStringArray, "",
         "Trend rule of the QA log: a significant slope of at least 1% over the sessions",
         lambda r: flag(r, lambda c, i: c.drift)),
        ("Trend (%)", vtk.vtkDoubleArray, "%",
         "Fitted change across the QA log, percent of the baseline centre (empty with few sessions)",
         lambda r: _number(charts[r["insert"]].trend_change_percent) if r["insert"] in charts else math.nan),
        ("Beyond control limits", vtk.vtkStringArray, "",
         "This session lies beyond the baseline centre +/- 3 sigma (Shewhart 1-3s)",
         lambda r: flag(r, lambda c, i: i in c.shewhart_sessions)),
        ("Out of tolerance", vtk.vtkStringArray, "",
         "This session lies outside the tolerance band around the baseline centre",
         lambda r: flag(r, lambda c, i: i in c.out_of_tolerance_sessions)),
    )
    was_modifying = table_node.StartModify()
    table_node.RemoveAllColumns()
    for column_name, array_class, column_unit, description, getter in columns:
        add_column(table_node, column_name, array_class, [getter(row) for row in rows], column_unit,
                   description)
    table_node.EndModify(was_modifying)
    return table_node


def run_qa(ct_node, calibration_table_node=None, *, phantom_type: str = "esp", log_path=None,
           session: str | None = None, table_node=None) -> dict:
    """Measure the QA phantom in ``ct_node``, append the session to the log, flag drift.

    Args:
        ct_node: CT volume node of the ESP-like phantom (HU).
        calibration_table_node: a calibration table (its material must match the nominal
            values'); None records mean HU only.
        phantom_type: nominal values, a bundled name ("esp", "digital-esp") or a JSON file.
        log_path: the QA log CSV to append to (created with its header if absent).
        session: session label (default: now, ISO date and time).
        table_node: table to overwrite (None creates one).

    Returns:
        ``{"rows", "charts" (insert -> ControlLimits), "log" (Path), "table"}``.
    """
    if ct_node is None:
        raise ValueError("Select the CT volume of the QA phantom.")
    if log_path is None or str(log_path) in ("", ".") or Path(log_path).is_dir():
        raise ValueError("Choose the QA log file (CSV) the session is appended to.")
    from datetime import datetime

    from boneqct.qa import append_to_log, control_chart, load_nominal, measure_esp, read_log
    from BoneQCTLib.calibration import calibration_from_table_node
    from BoneQCTLib.volumes import volume_from_node

    nominal = load_nominal(phantom_type)
    calibration = None if calibration_table_node is None else calibration_from_table_node(calibration_table_node)
    volume = volume_from_node(ct_node)
    rows = measure_esp(volume, nominal, calibration)
    session = session or datetime.now().isoformat(timespec="seconds")
    log = append_to_log(log_path, session, volume.metadata, nominal["name"], rows,
                        "none" if calibration is None else calibration.method)
    log_rows = read_log(log)
    charts = {c.insert: c for c in control_chart(log_rows)}
    table = qa_rows_to_table_node(rows, charts, table_node, name=f"{ct_node.GetName()} QA")
    table.SetAttribute(ATTRIBUTE_QA_LOG, str(log))
    table.SetAttribute(ATTRIBUTE_QA_SESSION, session)
    table.SetAttribute(ATTRIBUTE_QA_PHANTOM, nominal["name"])
    table.SetAttribute(ATTRIBUTE_QA_SESSIONS, str(len({r["session"] for r in log_rows})))
    flagged = [c.insert for c in charts.values() if c.drift or c.out_of_control]
    table.SetAttribute(ATTRIBUTE_QA_FLAGGED, ",".join(flagged))
    return {"rows": rows, "charts": charts, "log": Path(log), "table": table}


def qa_summary_text(table_node) -> str:
    """Session, log and the inserts flagged by the drift rules (empty without a QA result)."""
    if table_node is None or table_node.GetAttribute(ATTRIBUTE_QA_LOG) is None:
        return ""
    flagged = table_node.GetAttribute(ATTRIBUTE_QA_FLAGGED)
    return (f"Session {table_node.GetAttribute(ATTRIBUTE_QA_SESSION)} "
            f"({table_node.GetAttribute(ATTRIBUTE_QA_PHANTOM)}) appended to "
            f"{table_node.GetAttribute(ATTRIBUTE_QA_LOG)}, "
            f"{table_node.GetAttribute(ATTRIBUTE_QA_SESSIONS)} session(s) in the log.\n"
            + (f"Flagged (drift or beyond control limits): {flagged}" if flagged
               else "No drift or out-of-control session flagged."))

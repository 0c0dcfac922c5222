"""QA adapters: an ESP-like QA phantom volume node -> ``boneqct.qa`` -> a table node.

One row per insert (and per calibration rod of a phantom calibration): nominal value,
measured value, deviation, HU statistics, and the drift flags of the insert's control chart
over the whole QA log after this session was appended (``boneqct.qa.control``). Every column
has a unit label and a description.

Only ``slicer.vtkMRML*`` and ``vtk`` are used (no Qt); the core is imported inside the
functions, so this file loads before the core's dependencies are installed.
"""

from __future__ import annotations

from pathlib import Path

from BoneQCTLib import tables

ATTRIBUTE_QA_LOG = "BoneQCT.QA.Log"
ATTRIBUTE_QA_SESSION = "BoneQCT.QA.Session"
#: How the session label was chosen: given, study date, or current time (no study date).
ATTRIBUTE_QA_SESSION_SOURCE = "BoneQCT.QA.SessionSource"
#: Document kind of a QA table: ``boneqct.qa.QAResult.to_dict()``.
QA_KIND = "QA"
#: The QAResult document (``BoneQCT.QA.JSON``).
ATTRIBUTE_QA_JSON = tables.document_attribute(QA_KIND)
ATTRIBUTE_QA_PHANTOM = "BoneQCT.QA.PhantomType"
ATTRIBUTE_QA_SESSIONS = "BoneQCT.QA.SessionsInLog"
ATTRIBUTE_QA_FLAGGED = "BoneQCT.QA.Flagged"


def qa_columns(unit: str, charts: dict) -> tuple[tables.Column, ...]:
    """The columns of a QA table over ``measure_esp`` rows (dicts).

    Args:
        unit: unit of the measured values (the rows' ``unit``: the calibration's material, or
            HU when uncalibrated).
        charts: insert name -> ``boneqct.qa.ControlLimits`` of the log; the flags of an
            insert without a chart are empty.
    """
    def flag(test):
        def value(row):
            chart = charts.get(row["insert"])
            return None if chart is None else tables.yes_no(test(chart, len(chart.values) - 1))
        return value

    def trend(row):
        chart = charts.get(row["insert"])
        return None if chart is None else chart.trend_change_percent

    return tables.columns("qa_inserts", {
        "drift": flag(lambda c, i: c.drift), "trend": trend,
        "beyond_control_limits": flag(lambda c, i: i in c.shewhart_sessions),
        "out_of_tolerance": flag(lambda c, i: i in c.out_of_tolerance_sessions)}, unit=unit)


def qa_rows_to_table_node(rows: list[dict], charts: dict, table_node=None, name: str = "BoneQCT QA"):
    """Write ``measure_esp`` rows with their control-chart flags into a table node
    (:func:`qa_columns`; ``table_node`` is overwritten, None creates one)."""
    table_node = tables.table_node_or_new(table_node, name)
    tables.write_table(table_node, qa_columns(rows[0]["unit"] if rows else "", charts), rows)
    return table_node


def run_qa(ct_node, calibration_table_node=None, options=None, *, log_path=None,
           table_node=None) -> dict:
    """Measure the QA phantom in ``ct_node``, append the session to the log, flag drift
    (``boneqct.qa.analyze_qa``).

    Args:
        ct_node: CT volume node of the ESP-like phantom (HU).
        calibration_table_node: a calibration table (its material must match the nominal
            values'); None records mean HU only.
        options: a ``boneqct.qa.QAOptions`` (phantom type, session label - empty: the study
            date, else the current time -, chart baseline and tolerance); None: the defaults.
        log_path: the QA log CSV to append to (created with its header if absent).
        table_node: table to overwrite (None creates one).

    Returns:
        ``{"result" (QAResult), "rows", "charts" (insert -> ControlLimits), "log" (Path),
        "table"}``; the table holds the result's document (``BoneQCT.QA.JSON``).
    """
    if ct_node is None:
        raise ValueError("Select the CT volume of the QA phantom.")
    if log_path is None or str(log_path) in ("", ".") or Path(log_path).is_dir():
        raise ValueError("Choose the QA log file (CSV) the session is appended to.")
    from boneqct.qa import analyze_qa
    from BoneQCTLib.calibration import calibration_from_table_node
    from BoneQCTLib.volumes import volume_from_node

    calibration = None if calibration_table_node is None else calibration_from_table_node(calibration_table_node)
    volume = volume_from_node(ct_node)
    result = analyze_qa(volume, calibration, options, log_path=log_path)
    charts = {c.insert: c for c in result.charts}
    table = qa_rows_to_table_node(result.rows, charts, table_node, name=f"{ct_node.GetName()} QA")
    tables.store_document(table, QA_KIND, result.to_dict())
    table.SetAttribute(ATTRIBUTE_QA_LOG, result.log_path)
    table.SetAttribute(ATTRIBUTE_QA_SESSION, result.session)
    table.SetAttribute(ATTRIBUTE_QA_SESSION_SOURCE, result.session_source)
    table.SetAttribute(ATTRIBUTE_QA_PHANTOM, result.phantom_type)
    table.SetAttribute(ATTRIBUTE_QA_SESSIONS, str(len({s for c in result.charts for s in c.sessions})))
    table.SetAttribute(ATTRIBUTE_QA_FLAGGED, ",".join(result.flagged))
    return {"result": result, "rows": result.rows, "charts": charts, "log": Path(result.log_path),
            "table": table}


def qa_result_from_table_node(table_node):
    """The ``boneqct.qa.QAResult`` stored on a QA table."""
    if not tables.has_document(table_node, QA_KIND):
        raise ValueError("The selected table holds no QA result: measure the QA phantom first.")
    from boneqct.qa import QAResult

    return QAResult.from_dict(tables.read_document(table_node, QA_KIND))


def qa_summary_text(table_node) -> str:
    """Session, log and the inserts flagged by the drift rules (empty without a QA result)."""
    if table_node is None or table_node.GetAttribute(ATTRIBUTE_QA_LOG) is None:
        return ""
    flagged = table_node.GetAttribute(ATTRIBUTE_QA_FLAGGED)
    return (f"Session {table_node.GetAttribute(ATTRIBUTE_QA_SESSION)} "
            f"({table_node.GetAttribute(ATTRIBUTE_QA_SESSION_SOURCE) or 'given'}, "
            f"{table_node.GetAttribute(ATTRIBUTE_QA_PHANTOM)}) appended to "
            f"{table_node.GetAttribute(ATTRIBUTE_QA_LOG)}, "
            f"{table_node.GetAttribute(ATTRIBUTE_QA_SESSIONS)} session(s) in the log.\n"
            + (f"Flagged (drift or beyond control limits): {flagged}" if flagged
               else "No drift or out-of-control session flagged."))

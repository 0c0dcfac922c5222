"""The QA log: one CSV per scanner, one row per insert and session, appended atomically."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from boneqct.io.atomic import write_text_atomic
from boneqct.qa.esp import QAError

LOG_COLUMNS = ("session", "scanner", "kvp", "phantom_type", "insert", "nominal_mg_cm3", "value",
               "unit", "deviation_percent", "mean_hu", "sd_hu", "n_voxels", "calibration")


def scanner_id(metadata: dict) -> str:
    """A file-name-safe scanner identifier: manufacturer, model, and the station name or device
    serial number where the DICOM header gives them (two scanners of one model stay apart)."""
    parts = [str(metadata.get(key) or "") for key in
             ("manufacturer", "model", "station_name", "device_serial_number")]
    text = "_".join(p for p in parts if p) or "unknown-scanner"
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-")


def log_path_for(log_dir: str | Path, metadata: dict) -> Path:
    """The scanner's QA log file in ``log_dir``: ``qa_<scanner>.csv``."""
    return Path(log_dir) / f"qa_{scanner_id(metadata)}.csv"


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def append_to_log(path: str | Path, session: str, metadata: dict, phantom_type: str,
                  rows: list[dict], calibration_method: str) -> Path:
    """Append one session's insert rows to the log (created with a header if absent).

    The whole file is rewritten through a temporary file and renamed, so a crash never
    leaves a half-written log.
    """
    path = Path(path)
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    if existing and not existing.startswith(",".join(LOG_COLUMNS)):
        raise QAError(f"The QA log '{path.name}' does not start with the expected header; "
                      "give a log written by `boneqct qa` or a new file name.")
    if existing.strip() not in ("", ",".join(LOG_COLUMNS)):  # a header alone: no session
        _refuse_mixing(path, session, phantom_type)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if not existing:
        writer.writerow(LOG_COLUMNS)
    for row in rows:
        record = {**row, "session": session, "scanner": scanner_id(metadata),
                  "kvp": metadata.get("kvp"), "phantom_type": phantom_type,
                  "calibration": calibration_method}
        writer.writerow([_format(record.get(c)) for c in LOG_COLUMNS])
    return write_text_atomic(path, existing + buffer.getvalue())


def _refuse_mixing(path: Path, session: str, phantom_type: str) -> None:
    """Refuse (QAError) a session the log holds already, or another phantom than its own: a
    scan logged twice under one date, and two phantom types in one series, made a control
    chart of two sessions read "no drift" (new-user review)."""
    rows = read_log(path)
    if any(row["session"] == session for row in rows):
        raise QAError(f"The QA log '{path.name}' holds session '{session}' already. Give "
                      "--session LABEL to log another scan of that day (the same scan is "
                      "logged once).")
    types = sorted({row["phantom_type"] for row in rows})
    if types and types != [phantom_type]:
        raise QAError(f"The QA log '{path.name}' holds sessions of the {', '.join(types)} "
                      f"phantom; this one is {phantom_type}. Log each phantom in a folder of "
                      "its own (--log-dir).")


def read_log(path: str | Path) -> list[dict]:
    """Rows of a QA log, numbers as floats (None where empty)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != LOG_COLUMNS:
                raise QAError(f"'{path.name}' is not a QA log written by `boneqct qa` (its header "
                              f"differs from {','.join(LOG_COLUMNS)}).")
            rows = list(reader)
    except OSError:
        raise QAError(f"Cannot read the QA log '{path.name}'; check the path.") from None
    for row in rows:
        for key in ("nominal_mg_cm3", "value", "deviation_percent", "mean_hu", "sd_hu", "kvp"):
            row[key] = float(row[key]) if row[key] not in ("", None) else None
    if not rows:
        raise QAError(f"The QA log '{path.name}' holds no sessions yet.")
    return rows

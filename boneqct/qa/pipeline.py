"""The QA entry point: ``analyze_qa`` measures a QA phantom scan, labels the session, appends
it to the scanner's log and charts the log; the CLI and the Slicer module call it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from boneqct.options import options_from_dict, options_to_dict
from boneqct.qa.control import ControlLimits, control_chart
from boneqct.qa.esp import load_nominal, measure_esp
from boneqct.qa.log import append_to_log, read_log
from boneqct.qa.options import QAOptions
from boneqct.volume import Volume

#: How a session label was chosen (``QAResult.session_source``).
SESSION_GIVEN, SESSION_STUDY_DATE, SESSION_NOW = "given", "study date", "current time"


def session_label(metadata: dict, given: str = "", now: datetime | None = None
                  ) -> tuple[str, str]:
    """The label of a QA session and how it was chosen: the ``given`` label, else the scan's
    study date (ISO; DICOM's YYYYMMDD is converted), else the current time (ISO, seconds)
    when the scan has no date."""
    if given:
        return given, SESSION_GIVEN
    date = str(metadata.get("study_date") or "").strip()
    if len(date) == 8 and date.isdigit():
        date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    if date:
        return date, SESSION_STUDY_DATE
    return (now or datetime.now()).isoformat(timespec="seconds"), SESSION_NOW


@dataclass
class QAResult:
    """One QA session and the control charts of its log after it was appended.

    Attributes:
        session, session_source: the label and how it was chosen (``session_label``).
        phantom_type: name of the nominal values; calibration_method: "none" for HU only.
        rows: ``measure_esp`` rows (inserts, then the calibration rods of a phantom fit).
        log_path: the QA log the session was appended to.
        charts: one ``ControlLimits`` per insert of the whole log.
        warnings: notes for the user (a session labelled with the current time).
        options: the options measured with.
    """

    session: str
    session_source: str
    phantom_type: str
    calibration_method: str
    rows: list[dict]
    log_path: str
    charts: list[ControlLimits]
    warnings: list[str] = field(default_factory=list)
    options: QAOptions = field(default_factory=QAOptions)

    @property
    def flagged(self) -> list[str]:
        """Inserts with drift or a session beyond the control limits."""
        return [c.insert for c in self.charts if c.drift or c.out_of_control]

    def to_dict(self) -> dict:
        """JSON-serialisable document of the session."""
        document = asdict(self)
        document["options"] = options_to_dict(self.options)
        return document

    @classmethod
    def from_dict(cls, document: dict) -> QAResult:
        """Inverse of :meth:`to_dict`."""
        values = dict(document)
        values["charts"] = [ControlLimits(**c) for c in document["charts"]]
        values["options"] = options_from_dict(QAOptions, document["options"])
        return cls(**values)


def analyze_qa(volume: Volume, calibration, options: QAOptions | None = None, *,
               log_path: str | Path, now: datetime | None = None) -> QAResult:
    """Measure the QA phantom in ``volume`` (HU), append the session to ``log_path`` (created
    with its header if absent) and chart the whole log.

    Args:
        volume: CT of the ESP-like phantom.
        calibration: a ``Calibration`` in the nominal values' material, or None (HU only).
        options: phantom type, session label, chart baseline and tolerance.
        log_path: the scanner's QA log (CSV).
        now: the time a session is labelled with when neither a label nor a study date is
            given (default the current time).

    Raises:
        QAError: unknown phantom type, inserts not found, material mismatch, or a log that
            is not a QA log.
    """
    options = options or QAOptions()
    nominal = load_nominal(options.phantom_type)
    rows = measure_esp(volume, nominal, calibration)
    session, source = session_label(volume.metadata, options.session, now)
    method = "none" if calibration is None else calibration.method
    log = append_to_log(log_path, session, volume.metadata, nominal["name"], rows, method)
    charts = control_chart(read_log(log), options.baseline_sessions, options.tolerance_percent)
    warnings = [] if source != SESSION_NOW else [
        f"The scan has no study date: the session is labelled with the current time {session}."]
    return QAResult(session, source, nominal["name"], method, rows, str(log), charts, warnings,
                    options)

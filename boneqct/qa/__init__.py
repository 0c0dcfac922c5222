"""Scanner quality assurance with an ESP-like spine phantom: measure its inserts, keep a log
per scanner, draw control charts and flag drift.

``analyze_qa`` is the entry point (a ``QAResult``): ``measure_esp`` finds the three
trabecular inserts and measures them (and the calibration phantom's rods when a phantom
calibration is given); ``session_label`` names the session (its study date, else the current
time); ``append_to_log`` adds it to the scanner's QA log (CSV, atomic); ``control_chart``
applies the drift rules of ``boneqct.qa.control`` and ``write_qa_report`` draws the chart
(PNG and PDF).
"""

from boneqct.qa.control import ControlLimits, control_chart
from boneqct.qa.esp import QAError, load_nominal, measure_esp
from boneqct.qa.log import append_to_log, log_path_for, read_log
from boneqct.qa.options import QAOptions
from boneqct.qa.pipeline import QAResult, analyze_qa, session_label
from boneqct.qa.report import write_qa_report

__all__ = [
    "ControlLimits",
    "QAError",
    "QAOptions",
    "QAResult",
    "analyze_qa",
    "append_to_log",
    "control_chart",
    "load_nominal",
    "log_path_for",
    "measure_esp",
    "read_log",
    "session_label",
    "write_qa_report",
]

"""Scanner quality assurance with an ESP-like spine phantom: measure its inserts, keep a log
per scanner, draw control charts and flag drift.

``analyze_qa`` is the entry point (a ``QAResult``): ``measure_esp`` finds the three
trabecular inserts and measures them (and the calibration phantom's rods when a phantom
calibration is given); ``session_label`` names the session (its study date, else the current
time); ``append_to_log`` adds it to the scanner's QA log (CSV, atomic); ``control_chart``
applies the drift rules of ``boneqct.qa.control`` and ``write_qa_report`` draws the chart
(PNG and PDF).
"""

from boneqct.lazy_exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "control": ("ControlLimits", "control_chart"),
    "esp": ("QAError", "load_nominal", "measure_esp"),
    "log": ("append_to_log", "log_path_for", "read_log"),
    "options": ("QAOptions",),
    "pipeline": ("QAResult", "analyze_qa", "session_label"),
    "report": ("write_qa_report",),
})

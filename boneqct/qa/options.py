"""Options of the QA measurement and of its control chart: the one place for their defaults,
ranges and help (``boneqct.options``); ``boneqct qa``, ``boneqct qa-report``, the Slicer module
and ``analyze_qa`` use it."""

from __future__ import annotations

from dataclasses import dataclass

from boneqct.options import check_options, option

#: Sessions whose mean sets the chart's centre line (a project default).
BASELINE_SESSIONS = 5
#: Half-width of the tolerance band, % of the centre (a project default).
TOLERANCE_PERCENT = 3.0


@dataclass(frozen=True)
class QAOptions:
    """How a QA session is measured and charted (see each field's help)."""

    phantom_type: str = option(
        "esp", "nominal values: esp (Kalender 1995, mg HA/cm3), digital-esp, or a JSON file")
    session: str = option("", "session label (default: the study date; the current time when "
                          "the scan has no date)")
    baseline_sessions: int = option(
        BASELINE_SESSIONS, "sessions that set the centre line", low=2, high=10000, integer=True,
        flag="--baseline", metavar="BASELINE")
    tolerance_percent: float = option(
        TOLERANCE_PERCENT, "half-width of the tolerance band, % of the centre", unit="%",
        low=0.01, high=100.0, metavar="TOLERANCE_PERCENT")

    def __post_init__(self):
        check_options(self)

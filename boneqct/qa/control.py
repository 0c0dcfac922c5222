"""Control-chart rules for a QA log: a Shewhart individuals chart and a trend rule for drift.

Per insert, in session order:

* centre line: mean of the first ``baseline_sessions`` sessions (the scanner's reference
  level; a scanner's values differ from the nominal by a stable offset, e.g. 212.6 for 200
  mg HA/cm3 in J Clin Densitom 2002;5:259, so the chart is centred on the baseline);
* sigma: mean moving range / 1.128 (d2 for ranges of two; Montgomery, Introduction to
  Statistical Quality Control, 6th ed. 2009, section 6.4), which a slow drift barely inflates;
* Shewhart rule 1-3s: a session after the baseline beyond centre +/- 3 sigma *
  sqrt(1 + 1/baseline) (the limits widened for the centre's own estimation error) -> out of
  control (a sudden change: a step, a bad scan);
* trend rule: the least-squares slope over all sessions (at least ``MIN_TREND_SESSIONS``) is
  significant (two-sided t test, p < 0.01) and the fitted change across the log is at least
  1% of the centre -> drift. A slow drift (e.g. 3% over 20 sessions) stays inside the 3-sigma
  limits for long; a trend test finds it with a false-alarm rate of at most 1% per insert on
  a stable log, where run rules (Western Electric) or a CUSUM about a centre estimated from
  five sessions raised false alarms on 35-60% of simulated stable 20-session, 3-insert logs;
* tolerance band: centre +/- ``tolerance_percent`` of the centre; a session outside it is
  out of tolerance (reported, not by itself called drift).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy

from boneqct.qa.options import BASELINE_SESSIONS, TOLERANCE_PERCENT

#: d2 constant of the mean moving range of two consecutive values (Montgomery 2009, App. VI).
D2_MOVING_RANGE = 1.128
SHEWHART_LIMIT_SIGMA = 3.0
MIN_TREND_SESSIONS = 8
TREND_P_VALUE = 0.01
TREND_MIN_CHANGE_PERCENT = 1.0


@dataclass
class ControlLimits:
    """The chart of one insert (values in the log's unit).

    Attributes:
        insert: insert name; unit: value unit; nominal: nominal value (or None).
        sessions, values: the series in log order.
        center, sigma: centre line and sigma estimate.
        lower_limit, upper_limit: the Shewhart control limits.
        tolerance_low, tolerance_high: the tolerance band.
        shewhart_sessions, out_of_tolerance_sessions: indices (into ``sessions``) of the
            sessions beyond the control limits and outside the tolerance band.
        trend: the trend rule fired; trend_change_percent: fitted change across the log (%
            of the centre); trend_p_value: its p value (None with too few sessions).
        baseline_sessions: sessions that set the centre line and sigma.
    """

    insert: str
    unit: str
    nominal: float | None
    sessions: list[str]
    values: list[float]
    center: float
    sigma: float
    lower_limit: float
    upper_limit: float
    tolerance_low: float
    tolerance_high: float
    shewhart_sessions: list[int] = field(default_factory=list)
    out_of_tolerance_sessions: list[int] = field(default_factory=list)
    trend: bool = False
    trend_change_percent: float | None = None
    trend_p_value: float | None = None
    baseline_sessions: int = BASELINE_SESSIONS

    @property
    def not_judged(self) -> str | None:
        """None when the log holds sessions enough for both rules, else what it lacks (a log
        of two sessions read "no drift, 0 sessions beyond the control limits": new-user
        review)."""
        n = len(self.values)
        if n <= self.baseline_sessions:
            return (f"{n} session(s), none after the {self.baseline_sessions} that set the "
                    "control limits")
        if n < MIN_TREND_SESSIONS:
            return f"{n} sessions, the drift rule needs {MIN_TREND_SESSIONS}"
        return None

    @property
    def drift(self) -> bool:
        """True when the trend rule fired."""
        return self.trend

    @property
    def out_of_control(self) -> bool:
        """True when a session after the baseline lies beyond the control limits."""
        return bool(self.shewhart_sessions)


def insert_chart(insert: str, sessions: list[str], values, unit: str = "",
                 nominal: float | None = None,
                 baseline_sessions: int = BASELINE_SESSIONS,
                 tolerance_percent: float = TOLERANCE_PERCENT) -> ControlLimits:
    """Apply the rules of this module to one insert's series."""
    x = np.asarray(values, dtype=float)
    n_base = max(1, min(baseline_sessions, len(x)))
    center = float(x[:n_base].mean())
    sigma = float(np.abs(np.diff(x)).mean() / D2_MOVING_RANGE) if len(x) > 1 else 0.0
    half_width = SHEWHART_LIMIT_SIGMA * sigma * np.sqrt(1.0 + 1.0 / n_base)
    tol = abs(center) * tolerance_percent / 100.0
    chart = ControlLimits(insert, unit, nominal, list(sessions), x.tolist(), center, sigma,
                          center - half_width, center + half_width, center - tol, center + tol,
                          baseline_sessions=baseline_sessions)
    chart.out_of_tolerance_sessions = [int(i) for i in np.flatnonzero(np.abs(x - center) > tol)]
    if sigma > 0.0:
        beyond = np.flatnonzero(np.abs(x - center) > half_width)
        chart.shewhart_sessions = [int(i) for i in beyond if i >= n_base]
    if len(x) >= MIN_TREND_SESSIONS and np.ptp(x) > 0 and center != 0:
        fit = scipy.stats.linregress(np.arange(len(x)), x)
        chart.trend_change_percent = float(100.0 * fit.slope * (len(x) - 1) / abs(center))
        chart.trend_p_value = float(fit.pvalue)
        chart.trend = bool(fit.pvalue < TREND_P_VALUE
                           and abs(chart.trend_change_percent) >= TREND_MIN_CHANGE_PERCENT)
    return chart


def control_chart(rows: list[dict], baseline_sessions: int = BASELINE_SESSIONS,
                  tolerance_percent: float = TOLERANCE_PERCENT) -> list[ControlLimits]:
    """One chart per insert of a QA log (rows from ``read_log``), in first-seen order."""
    inserts = list(dict.fromkeys(r["insert"] for r in rows))
    charts = []
    for name in inserts:
        own = [r for r in rows if r["insert"] == name]
        charts.append(insert_chart(name, [r["session"] for r in own], [r["value"] for r in own],
                                   own[0]["unit"], own[0]["nominal_mg_cm3"], baseline_sessions,
                                   tolerance_percent))
    return charts

"""QA control chart as PNG and a PDF report: the verdict first (PASS, CHECK or FAIL), each
insert's checks with their thresholds, and the values over sessions with the centre, tolerance
band, 3-sigma limits and the sessions where a rule fired."""

from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import MaxNLocator
from reportlab.platypus import Paragraph, Spacer, TableStyle

from boneqct.qa.control import (
    MIN_TREND_SESSIONS,
    SHEWHART_LIMIT_SIGMA,
    TREND_MIN_CHANGE_PERCENT,
    TREND_P_VALUE,
    ControlLimits,
)
from boneqct.report import pdf

FIGURE_WIDTH_IN, PANEL_HEIGHT_IN = 7.5, 1.9


def chart_figure(charts: list[ControlLimits]):
    """A matplotlib figure with one panel per insert."""
    fig, axes = pdf.subplots(len(charts), 1, figsize=(FIGURE_WIDTH_IN,
                                                      PANEL_HEIGHT_IN * len(charts)),
                             squeeze=False)
    for ax, c in zip(axes[:, 0], charts, strict=True):
        n = list(range(1, len(c.values) + 1))
        ax.fill_between([0.5, len(n) + 0.5], c.tolerance_low, c.tolerance_high, color="#dfe9f5",
                        label="tolerance band")
        ax.axhline(c.center, color="#335", lw=1, label="baseline centre")
        for limit, label in ((c.lower_limit, None), (c.upper_limit, "control limits")):
            ax.axhline(limit, color="#b00020", lw=0.7, ls="--", label=label)
        if c.nominal is not None:
            ax.axhline(c.nominal, color="grey", lw=0.7, ls=":", label="nominal")
        ax.plot(n, c.values, "o-", color="black", ms=3, lw=0.8)
        ax.plot([n[i] for i in c.shewhart_sessions], [c.values[i] for i in c.shewhart_sessions],
                "o", color="#b00020", ms=6, mfc="none", label="beyond control limits")
        trend = ("" if c.trend_change_percent is None else
                 f"; trend {c.trend_change_percent:+.1f}% (p = {c.trend_p_value:.2g})")
        state = ("DRIFT" if c.drift else "OUT OF CONTROL" if c.out_of_control
                 else "baseline incomplete" if len(c.values) <= c.baseline_sessions
                 else "in control")
        ax.set_title(f"{c.insert}: {state}{trend}", fontsize=9)
        ax.set_ylabel(pdf.units(c.unit), fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("session", fontsize=8)
    for ax in axes[:, 0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].legend(fontsize=6, loc="upper left", ncol=3)
    fig.tight_layout()
    return fig


#: Verdict words of a check and the headline colour of each (``pdf.VERDICT_COLORS``).
PASS, FAIL, CHECK, NOT_TESTED = "PASS", "FAIL", "CHECK", "not tested"
VERDICT_KIND = {PASS: "normal", FAIL: "alert", CHECK: "low", NOT_TESTED: "none"}


def tolerance_percent(chart: ControlLimits) -> float:
    """The tolerance band's half-width as % of the centre (the option it was drawn with)."""
    return 100.0 * (chart.tolerance_high - chart.center) / abs(chart.center) if chart.center else 0.0


def insert_checks(chart: ControlLimits) -> list[list[str]]:
    """One row per check of an insert: check, threshold, result, verdict. Control limits and
    trend FAIL (the rules ``qa-report`` exits 1 on); the tolerance band asks for a CHECK."""
    unit = chart.unit
    beyond, outside = len(chart.shewhart_sessions), len(chart.out_of_tolerance_sessions)
    after = len(chart.values) - chart.baseline_sessions
    rows = [["control limits (Shewhart 1-3s)",
             f"{chart.lower_limit:.1f} to {chart.upper_limit:.1f} {unit}",
             f"{beyond} of {len(chart.values)} sessions beyond" if after > 0 else
             f"no session after the {chart.baseline_sessions} of the baseline",
             FAIL if beyond else PASS if after > 0 else NOT_TESTED]]
    if chart.trend_p_value is None:
        rows.append(["trend (drift)", f"p < {TREND_P_VALUE:g} and |change| >= "
                     f"{TREND_MIN_CHANGE_PERCENT:g} %", f"fewer than {MIN_TREND_SESSIONS} sessions",
                     NOT_TESTED])
    else:
        rows.append(["trend (drift)", f"p < {TREND_P_VALUE:g} and |change| >= "
                     f"{TREND_MIN_CHANGE_PERCENT:g} %", f"{chart.trend_change_percent:+.2f} % "
                     f"(p = {chart.trend_p_value:.3g})", FAIL if chart.drift else PASS])
    rows.append([f"tolerance band (\u00b1 {tolerance_percent(chart):g} %)",
                 f"{chart.tolerance_low:.1f} to {chart.tolerance_high:.1f} {unit}",
                 f"{outside} of {len(chart.values)} sessions outside", CHECK if outside else PASS])
    return rows


def verdict_headline(charts: list[ControlLimits]) -> list:
    """FAIL (drift or a session beyond the control limits), CHECK (only the tolerance band),
    not judged yet (a log too short for a rule: ``ControlLimits.not_judged``) or PASS, first
    and largest, naming the inserts."""
    n_sessions = max((len(c.values) for c in charts), default=0)
    latest = next((c.sessions[-1] for c in charts if c.sessions), "-")
    basis = (f"{len(charts)} insert{'s' * (len(charts) != 1)}, {n_sessions} sessions, latest "
             f"{latest}. Centre and sigma from the baseline sessions; see the checks below.")
    failed = [f"{c.insert} " + " and ".join(
        ([f"drift {c.trend_change_percent:+.1f} %"] if c.drift else [])
        + ([f"{len(c.shewhart_sessions)} beyond limits"] if c.out_of_control else []))
        for c in charts if c.drift or c.out_of_control]
    if failed:
        return pdf.headline(f"QA FAIL: {'; '.join(failed)}", basis, VERDICT_KIND[FAIL])
    not_judged = next((c.not_judged for c in charts if c.not_judged), None)
    outside = [c.insert for c in charts if c.out_of_tolerance_sessions]
    if outside:
        return pdf.headline(f"QA CHECK: {', '.join(outside)} outside the tolerance band",
                            (f"Not judged yet for control and drift ({not_judged}); "
                             if not_judged else "In control and no drift; ") + basis,
                            VERDICT_KIND[CHECK])
    if not_judged:
        return pdf.headline(f"QA: not judged yet ({not_judged})", basis, VERDICT_KIND[NOT_TESTED])
    return pdf.headline("QA PASS: every insert in control, no drift, within tolerance", basis,
                        VERDICT_KIND[PASS])


def _checks_table(charts: list[ControlLimits]):
    rows = [["Insert", "Check", "Threshold", "Result", "Verdict"]]
    style = list(pdf.TABLE_STYLE.getCommands())
    for c in charts:
        for check in insert_checks(c):
            rows.append([c.insert, *check])
            color = pdf.VERDICT_COLORS[VERDICT_KIND[check[-1]]]
            style += [("TEXTCOLOR", (4, len(rows) - 1), (4, len(rows) - 1), color),
                      ("FONTNAME", (4, len(rows) - 1), (4, len(rows) - 1), "Helvetica-Bold")]
    return pdf.table([[pdf.units(cell) for cell in row] for row in rows], [18, 46, 46, 50, 20],
                     TableStyle(style))


def write_qa_report(out_dir: str | Path, charts: list[ControlLimits], log_name: str) -> dict:
    """Write qa_chart.png and qa_report.pdf (atomically) into ``out_dir``: the verdict, the
    checks of each insert with their thresholds, the rules and the chart."""
    from boneqct.io.atomic import atomic_path

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "qa_chart.png"
    fig = chart_figure(charts)
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=150)
    rule = (f"Rules: centre = mean of the baseline sessions; sigma = mean moving range / 1.128 "
            f"(Montgomery 2009); out of control when a later session lies beyond centre +/- "
            f"{SHEWHART_LIMIT_SIGMA:g} sigma x sqrt(1 + 1/baseline) (Shewhart 1-3s); drift when "
            f"the least-squares trend over the log is significant (p < {TREND_P_VALUE:g}) and "
            f"changes the value by at least {TREND_MIN_CHANGE_PERCENT:g} % of the centre; a "
            "session outside the tolerance band asks for a check (not by itself drift).")
    report = pdf.write_report(out_dir / "qa_report.pdf", f"QA control chart - {log_name}", [
        *verdict_headline(charts), _checks_table(charts), Spacer(1, 3),
        Paragraph(rule, pdf.NOTE_STYLE), Spacer(1, 3),
        pdf.figure_flowable(fig, min(180.0, 200.0 * FIGURE_WIDTH_IN
                                     / (PANEL_HEIGHT_IN * len(charts))))])
    return {"png": png, "pdf": report}

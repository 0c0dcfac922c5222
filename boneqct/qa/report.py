"""QA control chart as PNG and a PDF report: values over sessions, centre, tolerance band,
3-sigma limits and the sessions where a drift rule fired."""

from __future__ import annotations

from pathlib import Path

from boneqct.qa.control import (
    SHEWHART_LIMIT_SIGMA,
    TREND_MIN_CHANGE_PERCENT,
    TREND_P_VALUE,
    ControlLimits,
)
from boneqct.report.pdf import subplots

FIGURE_WIDTH_IN, PANEL_HEIGHT_IN = 7.5, 1.9


def chart_figure(charts: list[ControlLimits]):
    """A matplotlib figure with one panel per insert."""
    fig, axes = subplots(len(charts), 1, figsize=(FIGURE_WIDTH_IN,
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
        state = "DRIFT" if c.drift else "OUT OF CONTROL" if c.out_of_control else "in control"
        ax.set_title(f"{c.insert}: {state}{trend}", fontsize=9)
        ax.set_ylabel(c.unit, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("session", fontsize=8)
    axes[0, 0].legend(fontsize=6, loc="upper left", ncol=3)
    fig.tight_layout()
    return fig


def write_qa_report(out_dir: str | Path, charts: list[ControlLimits], log_name: str) -> dict:
    """Write qa_chart.png and qa_report.pdf (atomically) into ``out_dir``."""
    from boneqct.io.atomic import atomic_path
    from boneqct.report.pdf import STYLES, figure_flowable, table, write_report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "qa_chart.png"
    fig = chart_figure(charts)
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=150)
    from reportlab.platypus import Paragraph, Spacer

    rows = [["Insert", "Sessions", "Centre", "Sigma", "Tolerance band", "Trend %", "Drift",
             "Beyond limits", "Out of tol."]]
    for c in charts:
        trend = "-" if c.trend_change_percent is None else f"{c.trend_change_percent:+.2f}"
        rows.append([c.insert, len(c.values), f"{c.center:.2f}", f"{c.sigma:.2f}",
                     f"{c.tolerance_low:.1f} - {c.tolerance_high:.1f}", trend,
                     "YES" if c.drift else "no", len(c.shewhart_sessions),
                     len(c.out_of_tolerance_sessions)])
    rule = (f"Rules: centre = mean of the baseline sessions; sigma = mean moving range / 1.128 "
            f"(Montgomery 2009); out of control when a later session lies beyond centre +/- "
            f"{SHEWHART_LIMIT_SIGMA:g} sigma x sqrt(1 + 1/baseline) (Shewhart 1-3s); drift when "
            f"the least-squares trend over the log is significant (p < {TREND_P_VALUE:g}) and "
            f"changes the value by at least {TREND_MIN_CHANGE_PERCENT:g}% of the centre.")
    pdf = write_report(out_dir / "qa_report.pdf", f"QA control chart - {log_name}", [
        table(rows), Spacer(1, 3), Paragraph(rule, STYLES["BodyText"]),
        figure_flowable(chart_figure(charts), min(180.0, 200.0 * FIGURE_WIDTH_IN
                                                  / (PANEL_HEIGHT_IN * len(charts))))])
    return {"png": png, "pdf": pdf}

"""The cohort report of a batch (PDF, and its figure as PNG): spine BMD against age by sex with
the ACR bands, the distribution of categories, and the failures by reason."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, Spacer

from boneqct.io.atomic import atomic_path
from boneqct.report.pdf import STYLES, figure_flowable, subplots, table, warnings_box, write_report
from boneqct.spine.interpret import (
    ACR_MATERIALS,
    ACR_NORMAL_ABOVE_MG_CM3,
    ACR_OSTEOPOROSIS_BELOW_MG_CM3,
    CATEGORY_LOW,
    CATEGORY_NORMAL,
    CATEGORY_OSTEOPOROSIS,
)

STATUSES = ("ok", "failed", "timeout", "not run")
SEX_STYLE = {"F": ("tab:red", "o", "female"), "M": ("tab:blue", "s", "male"),
             None: ("tab:gray", "^", "sex not known")}
ACR_BANDS = ((0.0, ACR_OSTEOPOROSIS_BELOW_MG_CM3, "#f4c7c3", CATEGORY_OSTEOPOROSIS),
             (ACR_OSTEOPOROSIS_BELOW_MG_CM3, ACR_NORMAL_ABOVE_MG_CM3, "#fde9c4", CATEGORY_LOW),
             (ACR_NORMAL_ABOVE_MG_CM3, None, "#d5ecd4", CATEGORY_NORMAL))
#: Order of the categories on the chart: healthy first.
CATEGORY_ORDER = (CATEGORY_NORMAL, CATEGORY_LOW, "osteopenia", CATEGORY_OSTEOPOROSIS)
#: Characters of a failure message kept as its reason (the first sentence, shortened).
REASON_CHARS = 70


def failure_reason(row: dict) -> str:
    """The reason a case did not finish, for grouping: ``timeout``, else the first sentence of
    its message, shortened."""
    if row["status"] == "timeout":
        return "timeout"
    # file names quoted in a message differ from case to case: left out, so reasons group
    first = re.sub(r"'[^']*'", "'...'", (row.get("message") or "no message").split(". ")[0])
    return first if len(first) <= REASON_CHARS else first[:REASON_CHARS - 3] + "..."


def _spine_points(rows: list[dict]) -> tuple[list[dict], list[str]]:
    """Spine cases plotted against the ACR bands, and why others are left out."""
    spine = [r for r in rows if r["analysis"] == "spine" and r["status"] == "ok"]
    points = [r for r in spine if r.get("spine_mean_bmd_mg_cm3") is not None
              and r.get("age_years") is not None and r.get("spine_material") in ACR_MATERIALS]
    notes = []
    if len(points) < len(spine):
        notes.append(f"{len(spine) - len(points)} finished spine case(s) are not plotted: no "
                     f"{'/'.join(ACR_MATERIALS)} mean BMD (HU only, HA, or too few levels) or "
                     "no age.")
    return points, notes


def cohort_figure(rows: list[dict]):
    """The three panels: BMD vs age by sex with ACR bands, categories, failures by reason."""
    fig, (bmd, categories, failures) = subplots(1, 3, figsize=(13.5, 4.2),
                                                 gridspec_kw={"width_ratios": [1.3, 1, 1.2]})
    points, _ = _spine_points(rows)
    top = max([ACR_NORMAL_ABOVE_MG_CM3 * 1.6, *(1.1 * r["spine_mean_bmd_mg_cm3"]
                                                  for r in points)])
    for low, high, colour, name in ACR_BANDS:
        bmd.axhspan(low, top if high is None else high, color=colour, zorder=0, label=name)
    for sex, (colour, marker, name) in SEX_STYLE.items():
        mine = [r for r in points if (r.get("sex") if r.get("sex") in ("F", "M") else None) == sex]
        if mine:
            bmd.scatter([r["age_years"] for r in mine], [r["spine_mean_bmd_mg_cm3"] for r in mine],
                        color=colour, marker=marker, edgecolor="black", linewidth=0.5,
                        label=f"{name} (n={len(mine)})", zorder=3)
    bmd.set(ylim=(0, top), xlabel="age, years", ylabel="mean trabecular BMD, mg/cm3 (K2HPO4)",
            title="Spine BMD by age (ACR bands 80/120 mg/cm3)")
    bmd.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)
    if not points:
        bmd.text(0.5, 0.5, "no spine BMD to plot", transform=bmd.transAxes, ha="center")

    counts = Counter(r.get("spine_category") or r.get("hip_category") or "no category"
                     for r in rows if r["status"] == "ok")
    names = sorted(counts, key=lambda n: (CATEGORY_ORDER.index(n) if n in CATEGORY_ORDER
                                          else len(CATEGORY_ORDER), n))
    categories.barh(names, [counts[n] for n in names], height=0.6, color="tab:blue")
    categories.set(xlabel="cases", title="Categories of finished cases (ACR spine, WHO hip)")
    categories.invert_yaxis()
    categories.tick_params(axis="y", labelsize=7)

    reasons = Counter(failure_reason(r) for r in rows if r["status"] in ("failed", "timeout"))
    if reasons:
        names = sorted(reasons, key=lambda n: (-reasons[n], n))
        failures.barh([_wrap(n) for n in names], [reasons[n] for n in names], height=0.6,
                      color="tab:red")
        failures.invert_yaxis()
        failures.tick_params(axis="y", labelsize=6)
    else:
        failures.text(0.5, 0.5, "no failure", transform=failures.transAxes, ha="center")
    failures.set(xlabel="cases", title="Failures by reason")
    for axes in (categories, failures):
        axes.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return fig


def _wrap(text: str, width: int = 28) -> str:
    words, lines = text.split(), [""]
    for word in words:
        if lines[-1] and len(lines[-1]) + len(word) + 1 > width:
            lines.append("")
        lines[-1] = f"{lines[-1]} {word}".strip()
    return "\n".join(lines)


def write_cohort_report(rows: list[dict], out_dir: Path) -> dict[str, Path]:
    """Write ``cohort_report.pdf`` and its figure ``cohort_report.png`` (each atomically)."""
    fig = cohort_figure(rows)
    png = out_dir / "cohort_report.png"
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=110)
    counts = Counter(r["status"] for r in rows)
    analyses = sorted({r["analysis"] for r in rows})
    count_rows = [["analysis", *STATUSES, "cases"]]
    for analysis in analyses:
        mine = Counter(r["status"] for r in rows if r["analysis"] == analysis)
        count_rows.append([analysis, *(mine[s] for s in STATUSES), sum(mine.values())])
    count_rows.append(["all", *(counts[s] for s in STATUSES), len(rows)])
    _, notes = _spine_points(rows)
    unfinished = [[r["case_id"], r["status"], r.get("message") or ""]
                  for r in rows if r["status"] != "ok"]
    flowables = [table(count_rows), *warnings_box(notes), Spacer(1, 2 * mm),
                 figure_flowable(fig, 182)]
    if unfinished:
        flowables += [Paragraph("Cases without a result", STYLES["Heading3"]),
                      table([["case", "status", "message"], *unfinished], [30, 18, 134])]
    pdf = write_report(out_dir / "cohort_report.pdf", "BoneQCT cohort batch", flowables)
    return {"pdf": pdf, "png": png}

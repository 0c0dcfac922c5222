"""Vertebral fracture assessment on its own (``boneqct vfa``): every level given by seeds or
present in a vertebra label map is delineated and graded (``boneqct.spine.fracture``), with a
one-page sagittal overview of the imaged spine - the view in which fractures are found.

``analyze_vfa`` returns a :class:`VFAResult` whose ``to_dict`` is ``vfa.json``;
``write_vfa_outputs`` writes ``vfa.json``, ``vfa.csv`` (one row per level) and
``vfa_overview.pdf`` (the CLI puts them in place as one output set,
``boneqct.io.atomic.write_output_set``).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from reportlab.lib.units import mm
from reportlab.platypus import KeepInFrame, KeepTogether, Paragraph, Spacer

from boneqct.errors import SpineError
from boneqct.io import anonymized_metadata, write_json_atomic, write_text_atomic
from boneqct.options import options_to_dict
from boneqct.report import pdf
from boneqct.spine.detect import DetectionResult
from boneqct.spine.fracture import (
    MILD_REDUCTION,
    MODERATE_REDUCTION,
    SEVERE_REDUCTION,
    FractureOptions,
    assess_fractures,
    fracture_note,
    grade_cells,
    grade_levels,
    height_cells,
    measured_heights,
    sample_volume,
)
from boneqct.spine.levels import LEVEL_NAMES, VFA_LABEL_SCHEMES, VFA_LEVEL_NAMES
from boneqct.spine.outputs import write_detected_levels
from boneqct.spine.pipeline import body_finders, check_level_order
from boneqct.spine.report import (
    FRACTURE_LEGEND,
    WINDOW_HU,
    draw_heights,
    grade_label,
)
from boneqct.volume import Volume

#: Margins (mm) of the overview around the bodies' centres: above and below, in front, behind
#: (the canal and the spinous processes), and its pixel size (mm).
OVERVIEW_MARGIN_S_MM = 30.0
OVERVIEW_MARGIN_ANTERIOR_MM = 60.0
OVERVIEW_MARGIN_POSTERIOR_MM = 75.0
OVERVIEW_PIXEL_MM = 0.5
#: Most height (mm) the warnings take on the overview's page (a longer list is set smaller).
WARNINGS_MAX_HEIGHT_MM = 70.0
#: The Genant grading as recorded in vfa.json.
GRADING = {
    "method": "Genant semi-quantitative, from measured heights (Genant 1993, J Bone Miner Res "
              "8:1137; thresholds as in Wang 2019, Quant Imaging Med Surg 9:1151; the primary "
              "paper was not read)",
    "mild_reduction": MILD_REDUCTION, "moderate_reduction": MODERATE_REDUCTION,
    "severe_reduction": SEVERE_REDUCTION,
    "types": "wedge: Ha/Hp; biconcave: Hm/Hp; crush: Hp / mean Hp of the adjacent levels",
}


@dataclass
class VFAResult:
    """The fracture assessment of each level (cranial first).

    Each level is a dict: ``level``, ``measured``, ``reason`` (why not measured),
    ``body_center_ras_mm``, ``body_axis_ras``, ``body_anterior_ras`` and ``fracture``
    (``boneqct.spine.fracture.grade_levels``).
    """

    levels: list[dict]
    warnings: list[str] = field(default_factory=list)
    options: dict | None = None

    def to_dict(self) -> dict:
        """The ``vfa.json`` document."""
        return {"levels": self.levels, "grading": GRADING, "warnings": self.warnings,
                "options": self.options}

    @classmethod
    def from_dict(cls, document: dict) -> VFAResult:
        """The result a ``vfa.json`` document (``to_dict``) describes."""
        return cls(levels=list(document["levels"]), warnings=list(document.get("warnings") or []),
                   options=document.get("options"))


def analyze_vfa(volume_hu: Volume, options: FractureOptions | None = None, *,
                seeds: dict | None = None, labels: Volume | None = None,
                label_scheme: str = "totalsegmentator") -> VFAResult:
    """Delineate and grade every level (T4-L5, ``VFA_LEVEL_NAMES``) given by ``seeds``
    (level -> RAS mm inside the body) or present in ``labels`` (numbered in ``label_scheme``).

    A level whose body cannot be delineated is kept as not measured with its reason; only
    when no level is measured is SpineError raised.
    """
    options = options or FractureOptions()
    if (seeds is None) == (labels is None):
        raise SpineError("Give either seed points (one per level) or a vertebra label map.")
    finders = body_finders(volume_hu, seeds=seeds, labels=labels, scheme=label_scheme,
                           levels=VFA_LEVEL_NAMES)
    bodies, failed, warnings = [], {}, []
    for level in sorted(finders, key=VFA_LEVEL_NAMES.index):
        try:
            body = finders[level]()
        except SpineError as exc:
            failed[level] = str(exc)
            warnings.append(f"{level} not measured: {str(exc).removeprefix(level + ': ')}")
            continue
        bodies.append(body)
        warnings += [w if w.startswith(level) else f"{level}: {w}" for w in body.warnings]
    if not bodies:
        raise SpineError("No level could be measured: " + " ".join(failed.values()))
    check_level_order(bodies)  # the crush ratio compares each level with its neighbours
    fractures = assess_fractures(volume_hu, bodies, options)
    by_level = {body.level: body for body in bodies}
    levels = []
    for level in sorted(finders, key=VFA_LEVEL_NAMES.index):
        body = by_level.get(level)
        if body is None:
            levels.append({"level": level, "measured": False, "reason": failed[level],
                           "body_center_ras_mm": None, "body_axis_ras": None,
                           "body_anterior_ras": None, "fracture": None})
            continue
        levels.append({"level": level, "measured": True, "reason": None,
                       "body_center_ras_mm": body.center_ras_mm.tolist(),
                       "body_axis_ras": body.axis_ras.tolist(),
                       "body_anterior_ras": body.anterior_ras.tolist(),
                       "fracture": fractures[level]})
        note = fracture_note(level, fractures[level], None)
        if note:
            warnings.append(note)
    return VFAResult(levels=levels, warnings=warnings,
                     options={**options_to_dict(options), "label_scheme": label_scheme})


def measure_thoracic_levels(volume_hu: Volume, *, seeds: dict | None = None, labels=None,
                            label_scheme: str = "totalsegmentator") -> VFAResult | None:
    """The fracture assessment (``analyze_vfa``) of the thoracic levels T4-T10 among ``seeds``
    (level -> RAS mm) or ``labels`` (a vertebra label map in ``label_scheme`` numbering), which
    the spine measurement leaves out (its BMD levels are T11-L5,
    ``boneqct.spine.levels.LEVEL_NAMES``), graded among themselves: their heights are the
    spine measurement's ``fracture_neighbours``, and ``grade_thoracic_levels`` grades them
    again beside its levels.

    Returns a ``VFAResult`` (no level when none could be measured, with the reason), or None
    when the input names no level T4-T10.
    """
    if seeds is not None:
        seeds = {level: point for level, point in seeds.items() if level not in LEVEL_NAMES}
        if not seeds:
            return None
    else:
        thoracic = [value for value, level in VFA_LABEL_SCHEMES[label_scheme].items()
                    if level not in LEVEL_NAMES]
        kept = np.isin(labels.array_kji, thoracic)
        if not kept.any():
            return None
        labels = labels.with_array(np.where(kept, labels.array_kji, 0).astype(labels.array_kji.dtype))
    try:
        return analyze_vfa(volume_hu, seeds=seeds, labels=labels, label_scheme=label_scheme)
    except SpineError as exc:
        return VFAResult(levels=[], warnings=[f"Thoracic levels not assessed: {exc}"])


def thoracic_heights(thoracic: VFAResult | None) -> dict:
    """Level -> measured heights (``fracture.measured_heights``) of the thoracic levels, for
    ``analyze_spine``'s ``fracture_neighbours``."""
    return {lv["level"]: measured_heights(lv["fracture"])
            for lv in (thoracic.levels if thoracic else []) if lv["fracture"]}


def grade_thoracic_levels(thoracic: VFAResult, spine_fractures: dict) -> VFAResult:
    """The thoracic levels (``measure_thoracic_levels``) graded against their measured
    neighbours, the spine measurement's levels included (``spine_fractures``: level -> its
    assessment), so T10's crush ratio sees T11 as T11's saw T10 (``fracture_neighbours``):
    every level is graded as ``boneqct vfa`` and the reader's recompute from the unmoved
    lines grade it. Its warnings: levels not measured or not graded, deformities."""
    measured = {lv["level"]: lv["fracture"] for lv in thoracic.levels if lv["fracture"]}
    together = {**measured, **{level: f for level, f in spine_fractures.items() if f}}
    graded = grade_levels({level: measured_heights(f) for level, f in together.items()})
    graded_alone = {fracture_note(level, f, None) for level, f in measured.items()}
    warnings = [w for w in thoracic.warnings if w not in graded_alone]
    warnings += [note for level in measured if (note := fracture_note(level, graded[level], None))]
    levels = [{**lv, "fracture": graded[lv["level"]] if lv["fracture"] else None}
              for lv in thoracic.levels]
    return VFAResult(levels=levels, warnings=warnings, options=thoracic.options)


def write_vfa_outputs(out_dir: str | Path, result: VFAResult, volume_hu: Volume,
                      anonymize: bool = False,
                      detection: DetectionResult | None = None) -> dict[str, Path]:
    """Write ``vfa.json`` (with the exam), ``vfa.csv`` and ``vfa_overview.pdf`` into
    ``out_dir``. With a ``detection`` (levels found without seeds), vfa.json gains
    ``detection`` and the detected T4-L5 centres are written as markups
    (``detected_levels.mrk.json``) to edit and rerun with ``--seeds``."""
    out_dir = Path(out_dir)
    metadata = anonymized_metadata(volume_hu.metadata) if anonymize else volume_hu.metadata
    paths = {"json": out_dir / "vfa.json", "csv": out_dir / "vfa.csv",
             "report": out_dir / "vfa_overview.pdf"}
    document = {**result.to_dict(), "exam": metadata}
    if detection is not None:
        document["detection"] = detection.to_dict()
        paths["detected_levels"] = write_detected_levels(detection, out_dir, VFA_LEVEL_NAMES)
    write_json_atomic(paths["json"], document)
    write_text_atomic(paths["csv"], vfa_csv(result.levels))
    # the overview - every level's name and grade on the sagittal view - stands on the first
    # page: the warnings above it shrink into at most WARNINGS_MAX_HEIGHT_MM, the view into
    # the rest of the page; the table follows (on a second page when the view fills the first)
    story = [pdf.exam_table(metadata, anonymize),
             KeepInFrame(0, WARNINGS_MAX_HEIGHT_MM * mm, pdf.warnings_box(result.warnings),
                         mode="shrink"),
             KeepInFrame(0, 0, [pdf.figure_flowable(overview_figure(volume_hu, result.levels),
                                                    110)], mode="shrink"),
             Spacer(1, 2 * mm),
             KeepTogether([fracture_table(result.levels), Paragraph(
                 "Heights and grades: " + FRACTURE_LEGEND.replace(
                     "; grade 2 or more leaves the mean", ""), pdf.STYLES["Italic"])])]
    pdf.write_report(paths["report"], "Vertebral fracture assessment: sagittal overview", story)
    return paths


#: Columns of vfa.csv, units in the names (ratios are dimensionless).
CSV_COLUMNS = ("level", "measured", "height_anterior_mm", "height_middle_mm",
               "height_posterior_mm", "ratio_anterior_posterior", "ratio_middle_posterior",
               "ratio_posterior_adjacent", "genant_grade", "fracture_type", "reason")


def vfa_csv(levels: list[dict]) -> str:
    """One row per level (``VFAResult.levels``): heights, ratios, Genant grade and type, and
    why a level was not measured or not graded."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for level in levels:
        fracture = level["fracture"] or {}
        heights = fracture.get("heights_mm") or {}
        ratios = fracture.get("height_ratios") or {}
        writer.writerow([
            level["level"], level["measured"],
            *(_num(heights.get(k)) for k in ("anterior", "middle", "posterior")),
            *(_num(ratios.get(k)) for k in ("anterior_posterior", "middle_posterior",
                                            "posterior_adjacent")),
            *grade_cells(fracture), level["reason"] or fracture.get("reason") or ""])
    return buffer.getvalue()


def _num(value) -> str:
    return "" if value is None else f"{value:.4f}"


def fracture_table(levels: list[dict]) -> object:
    """Heights, ratios, grade and type of each level (``VFAResult.levels``)."""
    rows = [["Level", "Ha (mm)", "Hm (mm)", "Hp (mm)", "Ha/Hp", "Hm/Hp", "Hp/adjacent",
             "Grade", "Type"]]
    for level in levels:
        fracture = level["fracture"]
        if not fracture or not fracture.get("heights_mm"):
            rows.append([level["level"], "-", "-", "-", "-", "-", "-", "-", "-"])
            continue
        ratios = fracture["height_ratios"] or {}
        grade = fracture["genant_grade"]
        heights, passed = height_cells(fracture)
        rows.append([level["level"], *(h if passed else f"({h})" for h in heights),
                     *("-" if ratios.get(k) is None else f"{ratios[k]:.2f}" for k in (
                         "anterior_posterior", "middle_posterior", "posterior_adjacent")),
                     "not graded" if grade is None else f"{grade} {fracture['grade_name']}",
                     fracture["type"] or "-"])
    return pdf.table(rows, [14, 18, 18, 18, 16, 16, 22, 28, 24])


def overview_figure(volume_hu: Volume, levels: list[dict]):
    """A sagittal reformat of the imaged spine (anterior on the left, as Slicer shows it),
    through the bodies' centres - curved left-right with the spine, flat otherwise - with each
    level's height lines, name and grade."""
    measured = sorted((lv for lv in levels if lv["measured"]),
                      key=lambda lv: lv["body_center_ras_mm"][2])
    centers = np.array([lv["body_center_ras_mm"] for lv in measured], float)
    s_mm = np.arange(centers[:, 2].min() - OVERVIEW_MARGIN_S_MM,
                     centers[:, 2].max() + OVERVIEW_MARGIN_S_MM + 1e-9, OVERVIEW_PIXEL_MM)
    a_mm = np.arange(centers[:, 1].min() - OVERVIEW_MARGIN_POSTERIOR_MM,
                     centers[:, 1].max() + OVERVIEW_MARGIN_ANTERIOR_MM + 1e-9, OVERVIEW_PIXEL_MM)
    r_mm = np.interp(s_mm, centers[:, 2], centers[:, 0])
    ss, aa = np.meshgrid(s_mm, a_mm, indexing="ij")
    image = sample_volume(volume_hu, np.stack([np.broadcast_to(r_mm[:, None], ss.shape), aa, ss],
                                              axis=-1))
    height_in = 7.0 * (np.ptp(s_mm) / max(np.ptp(a_mm), 1.0)) ** 0.5
    fig, ax = pdf.subplots(figsize=(4.2, min(max(height_in, 3.0), 7.5)))
    ax.imshow(image, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], origin="lower",
              extent=(a_mm[0], a_mm[-1], s_mm[0], s_mm[-1]))
    ax.set_xlim(a_mm[-1], a_mm[0])  # anterior (larger A) on the left

    def to_view(points_ras):
        return points_ras[:, [1, 2]]

    for lv in measured:
        draw_heights(ax, lv["fracture"], to_view)
        center = lv["body_center_ras_mm"]
        # in front of its own body: a kyphotic thoracic spine curves away from a common column
        ax.text(center[1] + 22.0, center[2], f"{lv['level']} {grade_label(lv['fracture'])}",
                color="#ffd60a", fontsize=6, ha="right", va="center")
    for x, y, letter in ((0.03, 0.5, "A"), (0.97, 0.5, "P"), (0.5, 0.98, "S")):
        ax.text(x, y, letter, transform=ax.transAxes, color="#ffd60a", fontsize=7,
                ha="center", va="center")
    ax.set_xlabel("A (mm RAS)", fontsize=7)
    ax.set_ylabel("S (mm RAS)", fontsize=7)
    ax.tick_params(labelsize=6)
    fig.tight_layout()
    return fig
